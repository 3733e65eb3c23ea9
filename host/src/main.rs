//! The `tollgate` binary: parse arguments, hand off to the library.

/// musl's allocator serialises every allocation on one lock and cost the
/// server half its throughput; the static image uses mimalloc instead.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tollgate::cli::run()
}

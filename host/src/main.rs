//! The `tollgate` binary: parse arguments, hand off to the library.

fn main() -> std::process::ExitCode {
    tollgate::cli::run()
}

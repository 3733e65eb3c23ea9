//! Returning freed memory to the operating system.
//!
//! A hostile plugin can make the host lift a large answer (a 100 MB reason
//! under a 128 MiB cap) that is refused and freed at once. glibc's malloc
//! raises its mmap threshold after such a free, so later large buffers come
//! from the heap and stay mapped after they are freed: a server's RSS grew
//! from 17 MiB to about 450 MiB and stayed there. [`bound_retention`] pins
//! the threshold, so buffers of a MiB or more are always mapped on their own
//! and unmapped on free, and [`trim`] hands back what the heap still holds.

/// Buffers this large or larger get their own mapping.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Pins malloc's mmap threshold (glibc only; elsewhere a no-op).
pub fn bound_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[expect(
            unsafe_code,
            reason = "mallopt is glibc's only interface to this setting"
        )]
        // SAFETY: mallopt takes two integers and only changes allocator
        // tuning; it is safe to call at any time from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// Returns free heap memory to the OS (glibc only; elsewhere a no-op).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[expect(unsafe_code, reason = "malloc_trim is glibc's only interface to this")]
        // SAFETY: malloc_trim only releases free memory held by the
        // allocator; it is thread-safe and touches no live allocation.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

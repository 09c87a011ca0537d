//! How the daemon's memory goes back to the system. glibc's malloc keeps what a program
//! frees for its next allocations: after start-up, a reload or a listing of every
//! connection, the freed megabytes stay resident, spread over one arena per thread that
//! ever contended. `tune` bounds that before any thread starts; `give_back` returns free
//! pages after such one-off work. Elsewhere (musl, other systems) both do nothing.

// The two calls below are the only foreign calls of the crate. mallopt and malloc_trim
// take plain integers, touch only the allocator's own state and are safe to call at any
// time from any thread.
#![allow(unsafe_code)]

/// At most this many malloc arenas: the daemon's threads mostly wait, so more arenas buy
/// little speed and each keeps its own free memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 2;

/// Allocations from this size up are mapped on their own and unmapped when freed. glibc
/// raises this bound each time such a block is freed (up to 32 MiB), after which a large
/// freed buffer, a response body say, stays in the heap; a fixed bound stops that.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Sets the allocator's bounds. Called first thing in `main`, before the runtime's threads.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; the values are in range.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        // Setting the threshold fixes the trim bound too; keep glibc's default of twice it.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD);
    }
}

/// Returns whole free pages of every arena to the kernel. A few milliseconds at most;
/// called after start-up, a reload and a listing of every connection, not on hot paths.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

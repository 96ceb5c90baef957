//! Giving memory back after a burst: glibc malloc keeps what a burst of connections
//! freed in its arenas until it is asked to return it.
//!
//! Held request bodies need nothing here (one allocation each, above glibc's mmap
//! threshold, so freeing one unmaps it); what stays behind is the many small blocks of
//! the connections themselves (buffers, tasks): 7 MiB after a burst of 64 posts.
//! Measured with the hook_load bench's burst: fixing the mmap threshold or limiting
//! the arenas (`M_MMAP_THRESHOLD`, `M_ARENA_MAX`) changed nothing; a trim when the
//! burst is over did.

/// Returns the free pages of malloc's arenas to the system.
pub(crate) fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of malloc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

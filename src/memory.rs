//! Handing freed heap memory back to the operating system. glibc keeps the blocks a program
//! frees in its arenas for reuse; after a pass that allocates and frees a small value per
//! object (a neighbour list decoded, an id copied), a million objects leave a few hundred MB
//! resident that nothing uses. Imports nothing of the crate: every layer may call it.

/// Returns the allocator's free pages to the system (glibc's `malloc_trim`; a no-op elsewhere).
/// Costs a walk over the arenas: call it after a pass over every object, not per request.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointer; it locks each arena in turn and only gives back
    // (madvise) pages that hold no allocated block, so it is sound from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! Handing freed heap memory back to the operating system, and CPU time to the threads that
//! answer. glibc keeps the blocks a program frees in its arenas for reuse; after a pass that
//! allocates and frees a small value per object (a neighbour list decoded, an id copied), a
//! million objects leave a few hundred MB resident that nothing uses. Imports nothing of the
//! crate: every layer may call it.

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

/// The nice value of [`yield_cpu`]'s threads: the scheduler gives a thread at nice 10 about a
/// tenth of the share of one at 0, and wakes a query's thread ahead of it.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`] (Linux, where the nice
/// value is per thread; a no-op elsewhere), for work whose result may wait: a query or a
/// batch that shares the cores with it then runs as if it were not there. Returns whether
/// the thread now runs at that priority or a lower one.
pub fn yield_cpu() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` and `setpriority` take no pointer and change only the scheduling
        // weight of the calling thread (its own id), which no memory safety depends on.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            // Never raised: a thread already nicer (a niced process) stays so.
            libc::getpriority(libc::PRIO_PROCESS, tid) >= BACKGROUND_NICE
                || libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_yielding_thread_runs_at_the_background_nice_value_and_the_others_do_not() {
        let before = std::thread::spawn(|| {
            // SAFETY: reads the calling thread's own nice value; no pointer.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        })
        .join()
        .unwrap();
        let after = std::thread::spawn(|| {
            assert!(yield_cpu());
            // SAFETY: as above.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        })
        .join()
        .unwrap();
        assert_eq!(after, BACKGROUND_NICE.max(before));
        // SAFETY: as above.
        let here = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        assert_eq!(here, before, "only the yielding thread changed");
    }
}

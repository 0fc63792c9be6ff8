//! Handing freed heap memory back to the operating system, and CPU time to the threads that
//! answer. An allocator keeps the blocks a program frees for reuse; after a pass that
//! allocates and frees a small value per object (a neighbour list decoded, an id copied), a
//! million objects leave a few hundred MB resident that nothing uses. Imports nothing of the
//! crate: every layer may call it.

/// Returns the allocator's free pages to the system. The process's `malloc` is mimalloc (the
/// `override` build of `libmimalloc-sys`, linked into every binary of the crate): this asks it
/// to free what its threads' heaps and abandoned segments no longer use. Costs a walk over the
/// heap: call it after a pass over every object, not per request.
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointer; it only frees (or decommits) pages that hold no
    // live block, so it is sound from any thread at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// The allocator under every allocation of the process, and its version: "mimalloc 3.3.2".
pub fn allocator() -> String {
    // SAFETY: `mi_version` takes no argument and reads a constant.
    let v = unsafe { libmimalloc_sys::mi_version() };
    format!("mimalloc {}.{}.{}", v / 10_000, v / 100 % 100, v % 100)
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

/// A thread pool of one thread per core of the global pool, each at [`BACKGROUND_NICE`]
/// ([`yield_cpu`]), named `name-N`: parallel work that fills the cores the foreground leaves
/// idle. `None` (with a warning) where the threads could not start.
pub fn background_pool(name: &'static str) -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(|_| {
            yield_cpu();
        })
        .build()
        .map_err(|e| tracing::warn!("no {name} threads at background priority: {e}"))
        .ok()
}

/// The anonymous, writable memory of this process: the address ranges of `/proc/self/maps`
/// that no file backs (the heap, and what allocators map for themselves, as USearch does for
/// its vectors and links). Empty where there is no such file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnonymousMemory(Vec<std::ops::Range<usize>>);

/// The size of a transparent huge page on x86-64 and aarch64 with 4 KiB pages.
const HUGE_PAGE: usize = 2 << 20;

impl AnonymousMemory {
    /// The ranges mapped now.
    pub fn now() -> AnonymousMemory {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        AnonymousMemory(maps.lines().filter_map(anonymous_range).collect())
    }

    /// The ranges mapped now (`self`) that were not in `before`: what was allocated between
    /// the two readings, by this thread or another.
    pub fn added_since(&self, before: &AnonymousMemory) -> Vec<std::ops::Range<usize>> {
        let mut added = Vec::new();
        for range in &self.0 {
            let mut start = range.start;
            // Both lists are in address order, as the kernel writes them.
            for old in before
                .0
                .iter()
                .filter(|o| o.start < range.end && o.end > range.start)
            {
                if old.start > start {
                    added.push(start..old.start);
                }
                start = start.max(old.end);
            }
            if start < range.end {
                added.push(start..range.end);
            }
        }
        added
    }
}

/// One line of `/proc/self/maps` (`start-end perms offset dev inode [path]`) as a range, if it
/// is writable memory that no file backs.
fn anonymous_range(line: &str) -> Option<std::ops::Range<usize>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let writable = fields.next()?.starts_with("rw");
    // offset, device, inode, then a path for mapped files, `[heap]` or `[stack]`.
    let path = fields.nth(3);
    if !writable || path.is_some_and(|p| p != "[heap]") {
        return None;
    }
    Some(usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?)
}

/// What [`back_with_huge_pages`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HugePages {
    /// Bytes advised (whole 2 MiB pages inside the ranges): their later page faults get huge
    /// pages.
    pub advised: usize,
    /// Bytes moved onto huge pages now.
    pub collapsed: usize,
}

/// Asks Linux to back `ranges` with 2 MiB pages instead of 4 KiB ones (`MADV_HUGEPAGE`, then
/// `MADV_COLLAPSE` for the pages already there). A graph search reads a few hundred vectors
/// and link lists scattered over hundreds of MB; with 4 KiB pages nearly each one also misses
/// the TLB (BENCHMARKS.md, "Huge pages"). Only whole huge pages inside a range are touched, and
/// one with no page present is left alone, so memory that was never used stays unused. A
/// no-op, returning zeros, off Linux with glibc or where the kernel has no transparent huge
/// pages (`MADV_COLLAPSE` needs Linux 6.1; older kernels refuse it and only the advice stays).
/// Copies what it collapses (~0.3 s a GB): call it beside the work, not in its way.
pub fn back_with_huge_pages(ranges: &[std::ops::Range<usize>]) -> HugePages {
    let mut done = HugePages::default();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for range in ranges {
        let start = range.start.next_multiple_of(HUGE_PAGE);
        let end = range.end - range.end % HUGE_PAGE;
        if end <= start {
            continue;
        }
        // SAFETY: both advices change how the kernel backs the pages, never their contents
        // (a collapse copies each page into a huge one and remaps it atomically); over an
        // address that is no longer mapped madvise fails with ENOMEM and does nothing.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) }
            != 0
        {
            continue;
        }
        done.advised += end - start;
        for page in (start..end).step_by(HUGE_PAGE) {
            // SAFETY: as above, one huge page at a time (a range that fails, such as one with
            // no page present, is skipped).
            let collapsed =
                unsafe { libc::madvise(page as *mut libc::c_void, HUGE_PAGE, libc::MADV_COLLAPSE) };
            if collapsed == 0 {
                done.collapsed += HUGE_PAGE;
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = ranges;
    done
}

/// Whether `ASTERISM_HUGE_PAGES` leaves huge pages on (anything but `off`, or unset).
fn huge_pages_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var("ASTERISM_HUGE_PAGES").map_or(true, |v| v != "off"))
}

/// [`back_with_huge_pages`] on a thread of its own at background priority, so that whoever
/// allocated the memory goes on at once; nothing when the environment sets
/// `ASTERISM_HUGE_PAGES=off` (for a kernel or an operator that wants no transparent huge
/// pages: they can hold more memory than small pages would).
pub fn back_with_huge_pages_beside(ranges: Vec<std::ops::Range<usize>>) {
    if ranges.is_empty() || !huge_pages_wanted() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("huge-pages".into())
        .spawn(move || {
            yield_cpu();
            let done = back_with_huge_pages(&ranges);
            tracing::debug!(
                advised_mb = done.advised >> 20,
                collapsed_mb = done.collapsed >> 20,
                "huge pages"
            );
        });
    if let Err(e) = spawned {
        tracing::warn!("no thread for huge pages: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rusts_allocations_and_cs_are_mimallocs() {
        assert!(allocator().starts_with("mimalloc 3."), "{}", allocator());
        // Rust's global allocator (`System`, i.e. `malloc`) and C's `malloc` (RocksDB's C++
        // `new` calls it) both land in mimalloc's heap: the override is linked.
        let rust = vec![7u8; 100_000];
        // SAFETY: a plain allocation, checked, then freed once below.
        let c = unsafe { libc::malloc(100_000) };
        assert!(!c.is_null());
        // SAFETY: `mi_is_in_heap_region` only compares an address with mimalloc's regions.
        let (rust_in, c_in) = unsafe {
            (
                libmimalloc_sys::mi_is_in_heap_region(rust.as_ptr().cast()),
                libmimalloc_sys::mi_is_in_heap_region(c),
            )
        };
        // SAFETY: `c` came from `malloc` above and is freed once.
        unsafe { libc::free(c) };
        assert!(
            rust_in && c_in,
            "Rust's in mimalloc: {rust_in}, C's: {c_in}"
        );
        let on_the_stack = [0u8; 64];
        // SAFETY: as above; an address that no allocator gave is not in the heap.
        assert!(!unsafe { libmimalloc_sys::mi_is_in_heap_region(on_the_stack.as_ptr().cast()) });
        release_free_memory();
    }

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
    #[test]
    fn anonymous_memory_is_read_from_the_maps_and_what_was_added_is_the_difference() {
        let maps = "7f00-7f80 rw-p 00000000 00:00 0 \n\
                    7f80-7f90 r--p 00000000 08:01 42 /usr/lib/libc.so.6\n\
                    8000-9000 rw-p 00000000 00:00 0 [heap]\n\
                    9000-9100 rw-p 00000000 00:00 0 [stack]\n";
        let parsed: Vec<_> = maps.lines().filter_map(anonymous_range).collect();
        assert_eq!(parsed, vec![0x7f00..0x7f80, 0x8000..0x9000]);

        let before = AnonymousMemory(vec![0x1000..0x2000, 0x3000..0x4000]);
        // One region grew at both ends and swallowed the gap; one is new; one went away.
        let after = AnonymousMemory(vec![0x0800..0x4800, 0x9000..0xa000]);
        assert_eq!(
            after.added_since(&before),
            vec![
                0x0800..0x1000,
                0x2000..0x3000,
                0x4000..0x4800,
                0x9000..0xa000
            ]
        );
        assert!(after.added_since(&after).is_empty());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn memory_allocated_between_two_readings_is_found_and_advised_without_changing_it() {
        let before = AnonymousMemory::now();
        // A mapping of its own, as USearch maps its vectors and links (mimalloc serves even a
        // 40 MB `Vec` from an arena it reserved before).
        let n = 40 << 20;
        // SAFETY: a new private anonymous mapping, unmapped once at the end of the test and
        // used in between only as the `n` bytes it maps.
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                n,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(mapped, libc::MAP_FAILED);
        // SAFETY: `mapped` is `n` writable bytes that nothing else refers to.
        let block = unsafe { std::slice::from_raw_parts_mut(mapped.cast::<u8>(), n) };
        block
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8);
        let added = AnonymousMemory::now().added_since(&before);
        let start = block.as_ptr() as usize;
        assert!(
            added.iter().any(|r| r.start <= start && start + n <= r.end),
            "the 40 MB block lies in what was added: {added:x?}"
        );
        let done = back_with_huge_pages(&added);
        // Whole 2 MiB pages inside the block at least, where the kernel has transparent huge
        // pages (collapsing them depends on its free memory).
        if std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            assert!(done.advised >= n - 2 * HUGE_PAGE, "{done:?}");
        }
        assert!(done.collapsed <= done.advised);
        assert!(block.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        // SAFETY: the mapping made above, not used after this.
        assert_eq!(unsafe { libc::munmap(mapped, n) }, 0);
    }
}

//! A global allocator that counts live Rust heap bytes, so a bench can tell the memory of one
//! part of the engine from the rest (C++ allocations, USearch's and RocksDB's, are not seen).
//! A bench that wants it declares `#[global_allocator] static ALLOCATOR: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The counting allocator (forwards to [`System`]).
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Live Rust heap bytes (0 unless the bench declared [`Counting`] its global allocator).
pub fn heap() -> usize {
    LIVE.load(Ordering::Relaxed)
}

// SAFETY: every method forwards to the system allocator with the caller's own arguments, and
// only adds bookkeeping of the sizes; the contracts of GlobalAlloc are those of `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout as given to us; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through `alloc`/`realloc`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`/`layout` come from this allocator; the caller upholds `realloc`'s rules.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

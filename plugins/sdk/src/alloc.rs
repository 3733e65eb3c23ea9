//! The allocator every plugin built with the SDK uses in its Wasm build.
//!
//! A plugin instance serves the calls of one evaluation and is then
//! discarded, so memory never needs to be returned (the host judges a call
//! that fails on a shared instance again on a fresh one, so memory earlier
//! calls kept cannot fail a later one): allocation is a pointer bump, and only
//! the most recent allocation is freed or grown in place (which is what a
//! growing `Vec` or `String` needs). Memory grows in 1 MiB steps, far fewer
//! times than a general-purpose allocator grows it, and each growth is a
//! host round trip that changes page protections.

#![expect(
    unsafe_code,
    reason = "a global allocator hands out raw memory; each block says why it holds"
)]

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;

const PAGE: usize = 65_536;
/// Pages added at a time when the heap runs out.
const STEP_PAGES: usize = 16;

unsafe extern "C" {
    /// End of static data: where the heap starts (set by the linker).
    static __heap_base: u8;
}

struct State {
    next: usize,
    end: usize,
    last: usize,
}

/// A bump allocator over linear memory for single-call instances.
pub struct Bump(UnsafeCell<State>);

// SAFETY: wasm32 plugins are single-threaded; there is no concurrent access.
unsafe impl Sync for Bump {}

impl Bump {
    /// An allocator that starts at the linker's heap base on first use.
    pub const fn new() -> Self {
        Self(UnsafeCell::new(State {
            next: 0,
            end: 0,
            last: 0,
        }))
    }
}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// Grows memory so that `needed_end` is addressable; false when it cannot.
fn grow_to(s: &mut State, needed_end: usize) -> bool {
    let current_end = wasm32::memory_size(0) * PAGE;
    if needed_end <= current_end {
        s.end = current_end;
        return true;
    }
    let pages = (needed_end - current_end).div_ceil(PAGE).max(STEP_PAGES);
    if wasm32::memory_grow(0, pages) == usize::MAX {
        // Retry with exactly what is needed before giving up.
        let exact = (needed_end - current_end).div_ceil(PAGE);
        if exact == pages || wasm32::memory_grow(0, exact) == usize::MAX {
            return false;
        }
    }
    s.end = wasm32::memory_size(0) * PAGE;
    true
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see `Sync`), and no reference escapes.
        let s = unsafe { &mut *self.0.get() };
        if s.next == 0 {
            s.next = core::ptr::addr_of!(__heap_base) as usize;
            s.end = wasm32::memory_size(0) * PAGE;
        }
        let start = align_up(s.next, layout.align().max(1));
        let Some(end) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if end > s.end && !grow_to(s, end) {
            return core::ptr::null_mut();
        }
        s.next = end;
        s.last = start;
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        let s = unsafe { &mut *self.0.get() };
        if ptr as usize == s.last && s.last + layout.size() == s.next {
            s.next = s.last;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let s = unsafe { &mut *self.0.get() };
        let addr = ptr as usize;
        if addr == s.last && addr + layout.size() == s.next {
            if let Some(end) = addr.checked_add(new_size)
                && (end <= s.end || grow_to(s, end))
            {
                s.next = end;
                return ptr;
            }
            return core::ptr::null_mut();
        }
        // SAFETY: `new_size` and `layout.align()` form a valid layout, as the
        // `GlobalAlloc::realloc` contract guarantees.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: forwarded `GlobalAlloc` contract.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both regions are valid for the copied length and do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Bump = Bump::new();

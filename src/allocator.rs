//! The process's allocator: mimalloc, asked for a plain block whenever a plain block already has
//! the alignment a layout needs.
//!
//! Why not `mimalloc::MiMalloc` as it is: it passes every allocation to `mi_malloc_aligned`, even
//! those whose alignment every mimalloc block has anyway. There, a block over 1 KiB whose rounded
//! size is not a power of two takes the over-allocating path: `size + align - 1` bytes, and a page
//! marked as holding interior pointers, which every later free of that page pays for. The request
//! path makes several such blocks per request (header maps, body buffers). Measured with callgrind
//! on the `ai-proxy` route: README "Performance", session 13.
//!
//! The rule for a plain block is the one Rust's own `System` allocator uses with `malloc`:
//! alignment at most 16 (`MI_MAX_ALIGN_SIZE`, x86-64's and aarch64's `max_align_t`) and no larger
//! than the size. mimalloc, standing in for `malloc`, keeps to it: a block of 16 bytes or more is
//! 16-aligned, and a smaller one (an 8-byte size class) 8-aligned. Any other layout goes to
//! `MiMalloc`, unchanged.
#![allow(unsafe_code, reason = "a global allocator is an unsafe trait; this is the crate's only unsafe code")]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use mimalloc::MiMalloc;

/// The largest alignment every `mi_malloc` block of at least that size has: `MI_MAX_ALIGN_SIZE`.
const PLAIN_ALIGN: usize = 16;

/// The global allocator of the `switchyard` binary.
pub struct Allocator;

/// Whether a plain `mi_malloc` block of `size` bytes is aligned to `align`.
#[inline]
fn plain_block_fits(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every method hands the request to mimalloc, whose blocks meet the layout's alignment:
// plain blocks only where `plain_block_fits` holds (see the module docs), `MiMalloc` (the
// aligned functions) everywhere else. mimalloc frees and resizes a block whichever function made
// it, so `mi_free` and the choice made anew in `realloc` are sound.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain_block_fits(layout.align(), layout.size()) {
            // SAFETY: `GlobalAlloc::alloc`'s contract (a non-zero size) is the caller's.
            unsafe { libmimalloc_sys::mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: as above.
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain_block_fits(layout.align(), layout.size()) {
            // SAFETY: as in `alloc`.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: as in `alloc`.
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The alignment stays the layout's; only the size changes.
        if plain_block_fits(layout.align(), new_size) {
            // SAFETY: `ptr` came from this allocator (mimalloc); `new_size` is non-zero by contract.
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast::<c_void>(), new_size).cast() }
        } else {
            // SAFETY: as above.
            unsafe { MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size from 1 byte to past the small-block limit (and some larger), at every alignment
    /// up to 4 KiB: each block is aligned as asked, writable over its whole size, keeps its
    /// contents and its alignment when it grows, and a zeroed one is zeroed.
    #[test]
    fn every_block_has_the_alignment_its_layout_asks_for() {
        let sizes = (1..=2100).chain([4095, 4096, 4097, 65_536, 1 << 20]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap_or_else(|_| panic!("{size}/{align}"));
                // SAFETY: a non-zero size; the block is freed with its layout below.
                let block = unsafe { Allocator.alloc(layout) };
                assert!(!block.is_null());
                assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                // SAFETY: the block holds `size` bytes.
                unsafe { block.write_bytes(0xA5, size) };
                let grown = size * 3 / 2 + 1;
                // SAFETY: `block` came from `Allocator` with `layout`; `grown` is non-zero.
                let moved = unsafe { Allocator.realloc(block, layout, grown) };
                assert_eq!(moved as usize % align, 0, "grown from {size}, align {align}");
                // SAFETY: the first `size` bytes were kept by the reallocation.
                assert!(unsafe { std::slice::from_raw_parts(moved, size) }.iter().all(|b| *b == 0xA5));
                let grown_layout = Layout::from_size_align(grown, align).unwrap_or_else(|_| panic!("{grown}/{align}"));
                // SAFETY: `moved` came from `Allocator` with `grown_layout`.
                unsafe { Allocator.dealloc(moved, grown_layout) };

                // SAFETY: a non-zero size; freed below.
                let zeroed = unsafe { Allocator.alloc_zeroed(layout) };
                assert_eq!(zeroed as usize % align, 0, "zeroed, size {size}, align {align}");
                // SAFETY: the block holds `size` bytes.
                assert!(unsafe { std::slice::from_raw_parts(zeroed, size) }.iter().all(|b| *b == 0));
                // SAFETY: `zeroed` came from `Allocator` with `layout`.
                unsafe { Allocator.dealloc(zeroed, layout) };
            }
        }
    }
}

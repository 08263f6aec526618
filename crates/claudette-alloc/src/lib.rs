//! The global allocator of the `claudette` binary (and of the gateway benchmark, so that its
//! figures are the shipped binary's): mimalloc.
//!
//! Why not `mimalloc::MiMalloc`: it passes every Rust allocation to `mi_malloc_aligned`, and
//! mimalloc 3 takes that call's fast path only when the free block it finds happens to meet
//! the alignment and the size is at most 1 KiB. Everything else (every buffer over 1 KiB, even
//! with alignment 1) goes to the generic path, which over-allocates to align by hand: about 150
//! instructions instead of about 20. In the gateway that was 7 of the ~59 allocations of a
//! request (hyper's 8 KiB read buffer, the boxed upstream call, the response header map).
//!
//! Every mimalloc block is a multiple of the word size (8 bytes) and every page's first block
//! is 16-byte aligned, so any block meets an alignment of 8 or less: such requests (almost all
//! of Rust's) go to `mi_malloc`, `mi_zalloc` and `mi_realloc`. Larger alignments keep the
//! aligned calls.
//!
//! This crate is the workspace's one use of `unsafe` outside the plugin loader: a global
//! allocator can only be written with it.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Alignment every mimalloc block has: its block sizes are whole words.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc as a Rust global allocator:
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: claudette_alloc::Allocator = claudette_alloc::Allocator;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

// SAFETY: each method passes the layout's size (and alignment, when a plain block might not
// meet it) to the mimalloc call of the same contract: a pointer to at least `size` bytes at
// the alignment, or null on failure. mimalloc's free and realloc take any pointer it returned,
// aligned or not.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps its alignment.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

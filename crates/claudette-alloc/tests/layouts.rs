//! The allocator installed as this test binary's global allocator: every layout Rust code asks
//! for comes back at its alignment, usable, zeroed when asked, and keeps its bytes when it grows.

use claudette_alloc::Allocator;

#[global_allocator]
static GLOBAL: Allocator = Allocator;

fn aligned<T>(p: *const T, align: usize) -> bool {
    (p as usize) % align == 0
}

#[repr(align(16))]
struct A16([u8; 16]);
#[repr(align(32))]
struct A32([u8; 24]);
#[repr(align(64))]
struct A64([u8; 8]);
#[repr(align(128))]
struct A128([u8; 200]);
#[repr(align(4096))]
struct A4096([u8; 10]);

#[test]
fn small_alignments_hold_for_every_size_up_to_past_the_small_and_medium_pages() {
    // Sizes around every bin boundary mimalloc has up to 128 KiB, at alignments 1, 2, 4 and 8.
    let mut keep = Vec::new();
    for size in (1..2048).chain((2048..140_000).step_by(61)) {
        let bytes: Vec<u8> = Vec::with_capacity(size);
        assert!(aligned(bytes.as_ptr(), 1));
        let words: Vec<u64> = Vec::with_capacity(size.div_ceil(8));
        assert!(aligned(words.as_ptr(), 8), "u64 x {} at {:p}", size.div_ceil(8), words.as_ptr());
        let halves: Vec<u16> = Vec::with_capacity(size.div_ceil(2));
        assert!(aligned(halves.as_ptr(), 2));
        let quads: Vec<u32> = Vec::with_capacity(size.div_ceil(4));
        assert!(aligned(quads.as_ptr(), 4));
        // Kept alive, so later blocks come from fuller pages as well as fresh ones.
        if size % 7 == 0 {
            keep.push((bytes, words, halves, quads));
        }
    }
    assert!(!keep.is_empty());
}

#[test]
fn large_alignments_hold() {
    for n in [1usize, 2, 3, 5, 17, 100] {
        let v: Vec<A16> = (0..n).map(|_| A16([1; 16])).collect();
        assert!(aligned(v.as_ptr(), 16) && v.iter().all(|a| a.0 == [1; 16]));
        let v: Vec<A32> = (0..n).map(|_| A32([2; 24])).collect();
        assert!(aligned(v.as_ptr(), 32) && v.iter().all(|a| a.0 == [2; 24]));
        let v: Vec<A64> = (0..n).map(|_| A64([3; 8])).collect();
        assert!(aligned(v.as_ptr(), 64) && v.iter().all(|a| a.0 == [3; 8]));
        let v: Vec<A128> = (0..n).map(|_| A128([4; 200])).collect();
        assert!(aligned(v.as_ptr(), 128) && v.iter().all(|a| a.0 == [4; 200]));
        let b = Box::new(A4096([5; 10]));
        assert!(aligned(&*b, 4096));
        assert_eq!(b.0, [5; 10]);
    }
}

#[test]
fn zeroed_allocations_are_zero_and_growth_keeps_contents() {
    for size in [1usize, 7, 8, 100, 1024, 1025, 8192, 70_000, 3 << 20] {
        // `vec![0; n]` asks for a zeroed allocation.
        let z = vec![0u8; size];
        assert!(z.iter().all(|&b| b == 0));
        let z = vec![0u64; size / 8 + 1];
        assert!(z.iter().all(|&b| b == 0));
        assert!(aligned(z.as_ptr(), 8));
    }
    // Reallocation through every size class, small alignment and large.
    let mut bytes: Vec<u8> = Vec::new();
    let mut wide: Vec<A64> = Vec::new();
    for i in 0..200_000u32 {
        bytes.push((i % 251) as u8);
        if i % 64 == 0 {
            wide.push(A64([(i % 256) as u8; 8]));
            assert!(aligned(wide.as_ptr(), 64));
        }
    }
    assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert!(wide.iter().enumerate().all(|(i, a)| a.0 == [((i * 64) % 256) as u8; 8]));
    bytes.truncate(10);
    bytes.shrink_to_fit();
    assert_eq!(bytes, (0..10).collect::<Vec<u8>>());
}

#[test]
fn threads_free_what_others_allocated() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || (0..10_000).map(|i| vec![t as u8; i % 3000 + 1]).collect::<Vec<_>>())
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        let vs = h.join().unwrap_or_default();
        assert_eq!(vs.len(), 10_000);
        assert!(vs.iter().all(|v| v.iter().all(|&b| b == t as u8)));
    }
}

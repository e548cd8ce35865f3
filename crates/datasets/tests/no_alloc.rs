//! The batch iterator allocates nothing per batch or per epoch once built
//! (counted by a global allocator). Only the test's own thread is counted:
//! the iterator runs on the caller's thread, and the test harness's main
//! thread allocates on its own schedule while it waits (on a loaded machine
//! CI saw 4 such allocations land inside the window and fail the test).

use convnet_datasets::{BatchIter, Dataset};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the test's thread only; a const initialiser with no destructor,
    /// so reading it from inside the allocator never allocates.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_allocates_nothing() {
    let n = 1000;
    let ds =
        Dataset::from_vecs(28, 28, (0..n * 784).map(|i| i as u8).collect(), (0..n).map(|i| (i % 10) as u8).collect())
            .unwrap();
    COUNTED.with(|c| c.set(true));
    let start = ALLOCS.load(Ordering::Relaxed);
    let mut it = BatchIter::new(&ds, 64, Some(3)).unwrap();
    let before = ALLOCS.load(Ordering::Relaxed);
    assert!(before > start, "the counter sees the iterator's buffers being allocated");
    let mut batches = 0;
    let mut checksum = 0.0f32;
    for epoch in 0..3 {
        it.epoch(epoch);
        while let Some(b) = it.next_batch() {
            batches += 1;
            checksum += b.images.data()[100] + b.labels_onehot.data()[b.labels[0] as usize];
        }
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(batches, 3 * 16);
    assert!(checksum > 0.0);
    assert_eq!(after - before, 0, "{} allocations over 3 epochs", after - before);
}

//! Infrastructure shared by the fast kernels: the one vector layer every
//! SIMD kernel is written against ([`vector`]: instruction-set tokens and
//! vectors), the dispatch from a level to a proven instruction set
//! ([`dispatch`]: [`Token`] and `multiversion!`), the flush-to-zero guard,
//! growth-only thread-local scratch buffers, and a `Send` raw pointer for
//! writing disjoint parts of one output from several rayon tasks.
//!
//! # Denormals
//!
//! Every rayon task that runs kernel code, and every kernel entry point,
//! holds an [`FtzGuard`]: it sets flush-to-zero and denormals-are-zero in
//! MXCSR for its lifetime and restores the caller's MXCSR on drop. A
//! denormal operand or result costs over a hundred cycles on many x86 cores
//! (a microcode assist), and gradients late in training do reach the
//! denormal range; with FTZ/DAZ they become zero instead, which changes
//! results only below 1.2e-38 in magnitude. The reference oracle is not
//! guarded, and the tests compare with tolerances far above that range.

// AVX-512 intrinsics are stable since Rust 1.89, the workspace's rust-version.
pub(crate) mod cache;
pub(crate) mod dispatch;
pub(crate) mod par;
pub(crate) mod vector;

pub(crate) use dispatch::{multiversion, Token};
pub(crate) use vector::{prefetch, store_fence, Isa, Portable, Scalar, VOps, Vf32};
#[cfg(target_arch = "x86_64")]
pub(crate) use vector::{Avx2, Avx512};

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Sets FTZ and DAZ in MXCSR while alive; restores the previous MXCSR on drop.
pub(crate) struct FtzGuard {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl FtzGuard {
    /// MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero).
    #[cfg(target_arch = "x86_64")]
    const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

    /// Enables FTZ/DAZ on the current thread.
    #[inline]
    pub(crate) fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: reading and writing MXCSR only changes this thread's
            // floating-point environment; SSE is part of the x86-64 baseline.
            // FTZ/DAZ are valid MXCSR bits on every x86-64 CPU.
            #[allow(deprecated)]
            let saved = unsafe {
                let saved = core::arch::x86_64::_mm_getcsr();
                core::arch::x86_64::_mm_setcsr(saved | Self::FTZ_DAZ);
                saved
            };
            FtzGuard { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FtzGuard {}
    }
}

impl Drop for FtzGuard {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: restores the value read in `new` on the same thread.
        #[allow(deprecated)]
        unsafe {
            core::arch::x86_64::_mm_setcsr(self.saved)
        }
    }
}

/// A raw pointer that may cross threads. Users promise (and say in a
/// `SAFETY` comment) that concurrent tasks touch disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

// SAFETY: the pointer is only dereferenced by tasks writing disjoint ranges,
// which every user states at the point of use.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Independent scratch slots, so one thread can hold several buffers at once.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    /// im2col column tiles, per task.
    Column = 0,
    /// Packed filters, per call (on the calling thread).
    Filter = 1,
    /// Index tables and other per-call tables.
    Table = 2,
    /// Backward-filter partial sums, per call.
    Partial = 3,
    /// GEMM: packed panel of A, per GEMM call.
    GemmA = 4,
    /// GEMM: packed panel of B, per GEMM call.
    GemmB = 5,
    /// Winograd: transformed tiles (`V`, `M` or `dM`) of one block, per task.
    Tiles = 6,
}

/// Number of [`Slot`]s.
const SLOTS: usize = 7;

thread_local! {
    static F32_POOL: [Cell<Vec<f32>>; SLOTS] = const { [const { Cell::new(Vec::new()) }; SLOTS] };
    static ISIZE_POOL: [Cell<Vec<isize>>; SLOTS] = const { [const { Cell::new(Vec::new()) }; SLOTS] };
}

/// Per slot, the largest length any thread has asked for (f32 and isize
/// pools apart): a thread that must grow a slot grows it to this at once.
static F32_HIGH_WATER: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static ISIZE_HIGH_WATER: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

/// A growth-only thread-local buffer, lent out for one kernel call and given
/// back on drop: after the first call with a given size, repeated calls do
/// not touch the heap. Contents are NOT cleared between uses.
pub(crate) struct Scratch<T: 'static + Copy + Default> {
    buf: Vec<T>,
    len: usize,
    slot: Slot,
    pool: &'static std::thread::LocalKey<[Cell<Vec<T>>; SLOTS]>,
}

impl<T: 'static + Copy + Default> Scratch<T> {
    /// Lends `len` elements. A buffer shorter than `len`, or than the
    /// slot's process-wide high-water mark, grows to the larger of `grow_to`
    /// and that mark: which worker runs which task of which call depends on
    /// work stealing, so a worker that so far ran only small tasks would
    /// otherwise allocate in a later, steady-state step when it first steals
    /// a large one. With the mark, any use of the slot on a thread after the
    /// largest call has run once leaves that thread at the final size.
    fn take(
        pool: &'static std::thread::LocalKey<[Cell<Vec<T>>; SLOTS]>,
        high_water: &'static [AtomicUsize; SLOTS],
        slot: Slot,
        len: usize,
        grow_to: usize,
    ) -> Self {
        let want = len.max(grow_to);
        let mark = &high_water[slot as usize];
        let mut hw = mark.load(Ordering::Relaxed);
        if want > hw {
            hw = mark.fetch_max(want, Ordering::Relaxed).max(want);
        }
        // A nested user of the same slot (not expected) gets an empty vector
        // and allocates; correctness never depends on reuse.
        let mut buf = pool.with(|p| p[slot as usize].take());
        if buf.len() < hw {
            buf.resize(hw, T::default());
        }
        Scratch { buf, len, slot, pool }
    }
}

impl<T: 'static + Copy + Default> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[..self.len]
    }
}

impl<T: 'static + Copy + Default> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[..self.len]
    }
}

impl<T: 'static + Copy + Default> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let slot = self.slot as usize;
        // `try_with`: during thread teardown the pool may be gone; then the
        // buffer is simply freed.
        let _ = self.pool.try_with(|p| p[slot].set(buf));
    }
}

/// `len` f32 of thread-local scratch from `slot` (contents unspecified).
pub(crate) fn scratch_f32(slot: Slot, len: usize) -> Scratch<f32> {
    Scratch::take(&F32_POOL, &F32_HIGH_WATER, slot, len, len)
}

/// `len` isize of thread-local scratch from `slot` (contents unspecified).
pub(crate) fn scratch_isize(slot: Slot, len: usize) -> Scratch<isize> {
    Scratch::take(&ISIZE_POOL, &ISIZE_HIGH_WATER, slot, len, len)
}

/// `len` f32 of thread-local scratch from `slot` for one task of a parallel
/// call whose largest task needs `call_max`: if the buffer must grow, it
/// grows to `call_max` at once. Tasks of one call need different sizes (a
/// short last tile, a border class with fewer taps), and which worker runs
/// which task depends on work stealing; sizing to the call's largest task
/// on first touch means a worker that first ran only small tasks does not
/// allocate again, in a later steady-state step, when it steals a large one.
pub(crate) fn scratch_f32_task(slot: Slot, len: usize, call_max: usize) -> Scratch<f32> {
    debug_assert!(len <= call_max);
    Scratch::take(&F32_POOL, &F32_HIGH_WATER, slot, len, call_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The pool's own slots and marks are shared with every kernel test running
    // in parallel; these tests use private ones so that nothing else moves
    // their high-water marks.
    thread_local! {
        static TEST_POOL: [Cell<Vec<f32>>; SLOTS] = const { [const { Cell::new(Vec::new()) }; SLOTS] };
    }

    fn take(hw: &'static [AtomicUsize; SLOTS], len: usize, grow_to: usize) -> Scratch<f32> {
        Scratch::take(&TEST_POOL, hw, Slot::Column, len, grow_to)
    }

    #[test]
    fn scratch_is_reused_without_reallocating() {
        static HW: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
        let p1 = take(&HW, 100, 100).as_ptr();
        let s = take(&HW, 50, 50);
        assert_eq!(s.as_ptr(), p1);
        assert_eq!(s.len(), 50);
        // The public entry points lend exactly what is asked for.
        assert_eq!(scratch_f32(Slot::Column, 7).len(), 7);
        assert_eq!(scratch_f32_task(Slot::Column, 3, 9).len(), 3);
    }

    #[test]
    fn task_scratch_grows_to_the_calls_largest_task_at_once() {
        static HW: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
        let p1 = {
            let s = take(&HW, 10, 300);
            assert_eq!(s.len(), 10);
            s.as_ptr()
        };
        // The largest task of the same call, later: no reallocation.
        let s = take(&HW, 300, 300);
        assert_eq!(s.as_ptr(), p1);
        assert_eq!(s.len(), 300);
    }

    #[test]
    fn a_thread_grows_to_the_high_water_mark_on_first_touch() {
        static HW: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
        // Another thread ran a large call: the mark is 1000.
        std::thread::spawn(|| drop(take(&HW, 1000, 1000))).join().unwrap();
        // This thread's first task is small, but it grows to the mark at once,
        // so a large task later does not reallocate.
        let p1 = take(&HW, 4, 4).as_ptr();
        let s = take(&HW, 1000, 1000);
        assert_eq!(s.as_ptr(), p1);
        assert_eq!(s.len(), 1000);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn ftz_guard_flushes_and_restores() {
        #[allow(deprecated)]
        // SAFETY: reading MXCSR has no precondition on x86-64 (SSE is baseline).
        let before = unsafe { core::arch::x86_64::_mm_getcsr() };
        {
            let _g = FtzGuard::new();
            let tiny = std::hint::black_box(1e-30f32);
            let scale = std::hint::black_box(1e-10f32);
            assert_eq!(tiny * scale, 0.0, "FTZ should flush the denormal product");
        }
        #[allow(deprecated)]
        // SAFETY: as above.
        let after = unsafe { core::arch::x86_64::_mm_getcsr() };
        assert_eq!(before, after);
    }
}

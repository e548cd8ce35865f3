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
pub(crate) mod dispatch;
pub(crate) mod vector;

pub(crate) use dispatch::{multiversion, Token};
pub(crate) use vector::{prefetch, Isa, Portable, Scalar, VOps, Vf32};
#[cfg(target_arch = "x86_64")]
pub(crate) use vector::{Avx2, Avx512};

use std::cell::Cell;

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
    fn take(pool: &'static std::thread::LocalKey<[Cell<Vec<T>>; SLOTS]>, slot: Slot, len: usize) -> Self {
        // A nested user of the same slot (not expected) gets an empty vector
        // and allocates; correctness never depends on reuse.
        let mut buf = pool.with(|p| p[slot as usize].take());
        if buf.len() < len {
            buf.resize(len, T::default());
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
    Scratch::take(&F32_POOL, slot, len)
}

/// `len` isize of thread-local scratch from `slot` (contents unspecified).
pub(crate) fn scratch_isize(slot: Slot, len: usize) -> Scratch<isize> {
    Scratch::take(&ISIZE_POOL, slot, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_reused_without_reallocating() {
        let p1 = {
            let s = scratch_f32(Slot::Column, 100);
            s.as_ptr()
        };
        let s = scratch_f32(Slot::Column, 50);
        assert_eq!(s.as_ptr(), p1);
        assert_eq!(s.len(), 50);
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

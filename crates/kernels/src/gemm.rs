//! Single-precision GEMM over slices, on `matrixmultiply`.
//!
//! [`sgemm`] is the safe public entry point; the conv kernels call the
//! crate-internal [`sgemm_strided`], which takes raw strided pointers so a
//! task can multiply into a sub-block of a larger matrix.

use crate::{Error, Result};

/// A row-major matrix operand: `rows x cols` with a row stride (`ld`, in
/// elements, >= cols), optionally read transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatLayout {
    /// Rows as stored.
    pub rows: usize,
    /// Columns as stored.
    pub cols: usize,
    /// Distance between rows, in elements.
    pub ld: usize,
}

impl MatLayout {
    /// A dense row-major `rows x cols` matrix.
    pub fn dense(rows: usize, cols: usize) -> Self {
        MatLayout { rows, cols, ld: cols }
    }

    fn needed(&self) -> Option<usize> {
        if self.rows == 0 || self.cols == 0 {
            return Some(0);
        }
        (self.rows - 1).checked_mul(self.ld)?.checked_add(self.cols)
    }
}

/// `c = alpha * op(a) * op(b) + beta * c`, where `op` transposes when asked.
///
/// `a` is stored as `a_layout`, `b` as `b_layout`, `c` is dense row-major
/// `m x n` with `m = rows of op(a)`, `n = cols of op(b)`. With `beta == 0`,
/// `c` is not read (it may hold NaN).
///
/// ```
/// use convnet_kernels::gemm::{sgemm, MatLayout};
/// let a = [1.0, 2.0, 3.0, 4.0]; // 2x2
/// let b = [1.0, 0.0, 0.0, 1.0]; // identity
/// let mut c = [f32::NAN; 4];
/// sgemm(1.0, &a, MatLayout::dense(2, 2), false, &b, MatLayout::dense(2, 2), false, 0.0, &mut c)?;
/// assert_eq!(c, a);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    alpha: f32,
    a: &[f32],
    a_layout: MatLayout,
    transpose_a: bool,
    b: &[f32],
    b_layout: MatLayout,
    transpose_b: bool,
    beta: f32,
    c: &mut [f32],
) -> Result<()> {
    let (m, k) = if transpose_a { (a_layout.cols, a_layout.rows) } else { (a_layout.rows, a_layout.cols) };
    let (k2, n) = if transpose_b { (b_layout.cols, b_layout.rows) } else { (b_layout.rows, b_layout.cols) };
    let bad = |what: &str| Error::InvalidShape {
        shape: format!("gemm a {a_layout:?} t={transpose_a}, b {b_layout:?} t={transpose_b}"),
        reason: what.to_string(),
    };
    if k != k2 {
        return Err(bad("inner dimensions differ"));
    }
    if a_layout.ld < a_layout.cols || b_layout.ld < b_layout.cols {
        return Err(bad("leading dimension smaller than the column count"));
    }
    if a_layout.needed().is_none_or(|need| a.len() < need) {
        return Err(bad("a is too short for its layout"));
    }
    if b_layout.needed().is_none_or(|need| b.len() < need) {
        return Err(bad("b is too short for its layout"));
    }
    if m.checked_mul(n).is_none_or(|need| c.len() != need) {
        return Err(bad("c does not hold m*n elements"));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.iter_mut().for_each(|x| *x *= beta);
        }
        return Ok(());
    }
    let (rsa, csa) = if transpose_a { (1, a_layout.ld) } else { (a_layout.ld, 1) };
    let (rsb, csb) = if transpose_b { (1, b_layout.ld) } else { (b_layout.ld, 1) };
    // SAFETY: the checks above prove every index matrixmultiply forms lies in
    // bounds: op(a) is m x k with strides (rsa, csa) inside `a` (its last
    // element is at (rows-1)*ld + cols-1 < a.len()), likewise op(b) inside `b`,
    // and c is dense m x n with strides (n, 1) and exactly m*n elements.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    Ok(())
}

/// `c = alpha * a * b + beta * c` on raw strided operands (`a` is `m x k`
/// with strides `(rsa, csa)`, `b` is `k x n`, `c` is `m x n`); with
/// `beta == 0`, `c` is not read.
///
/// # Safety
///
/// Every element the strides address must be in bounds of its allocation,
/// `c` must be valid for writes, and no other thread may access the part of
/// `c` this call writes while it runs.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) unsafe fn sgemm_strided(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    rsb: usize,
    csb: usize,
    beta: f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
) {
    debug_assert!(m > 0 && n > 0 && k > 0);
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a,
            rsa as isize,
            csa as isize,
            b,
            rsb as isize,
            csb as isize,
            beta,
            c,
            rsc as isize,
            csc as isize,
        )
    }
}

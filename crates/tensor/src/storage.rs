//! 64-byte aligned f32 storage, without `unsafe`: the buffer is a `Vec` of
//! cache-line sized blocks and is viewed as `[f32]` through `bytemuck`.

use bytemuck::{Pod, Zeroable};

/// Sixteen f32: one cache line, one AVX-512 register.
#[repr(C, align(64))]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Line([f32; LANES]);

const LANES: usize = 16;

/// A growable-once f32 buffer whose first element sits on a 64-byte boundary.
///
/// ```
/// use convnet_tensor::AlignedBuf;
/// let b = AlignedBuf::zeros(10);
/// assert_eq!(b.as_slice().len(), 10);
/// assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
/// ```
#[derive(Clone)]
pub struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        AlignedBuf { lines: vec![Line([0.0; LANES]); len.div_ceil(LANES)], len }
    }

    /// `len` copies of `value`.
    pub fn filled(len: usize, value: f32) -> Self {
        let mut b = Self::zeros(len);
        b.as_mut_slice().fill(value);
        b
    }

    /// A copy of `data`, aligned.
    pub fn from_slice(data: &[f32]) -> Self {
        let mut b = Self::zeros(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    /// The elements.
    pub fn as_slice(&self) -> &[f32] {
        &bytemuck::cast_slice::<Line, f32>(&self.lines)[..self.len]
    }

    /// The elements, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut bytemuck::cast_slice_mut::<Line, f32>(&mut self.lines)[..self.len]
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Changes the length to `len`, zeroing new elements; reuses the allocation
    /// when it is large enough, so a buffer resized to sizes it has held before
    /// never allocates again.
    pub fn resize(&mut self, len: usize) {
        let old = self.len;
        let lines = len.div_ceil(LANES);
        if lines > self.lines.len() {
            self.lines.resize(lines, Line([0.0; LANES]));
        }
        self.len = len;
        if len > old {
            self.as_mut_slice()[old..].fill(0.0);
        }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice().iter()).finish()
    }
}

impl PartialEq for AlignedBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

//! The tape's buffer pool (buffers keyed by exact length; not pooling layers): the tape takes its values,
//! gradients and masks from here and gives them back on reset, so a step that
//! repeats the sizes of the previous one allocates nothing.

use convnet_tensor::AlignedBuf;

/// Idle buffers beyond this many are freed instead of kept (bounds the
/// memory held when batch sizes keep changing).
const MAX_IDLE: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct Buffers {
    f32s: Vec<AlignedBuf>,
    u32s: Vec<Vec<u32>>,
}

impl Buffers {
    /// A buffer of exactly `len` elements; its contents are unspecified.
    pub fn take(&mut self, len: usize) -> AlignedBuf {
        match self.f32s.iter().rposition(|b| b.len() == len) {
            Some(i) => self.f32s.swap_remove(i),
            None => AlignedBuf::zeros(len),
        }
    }

    pub fn give(&mut self, b: AlignedBuf) {
        if !b.is_empty() && self.f32s.len() < MAX_IDLE {
            self.f32s.push(b);
        }
    }

    pub fn take_u32(&mut self, len: usize) -> Vec<u32> {
        match self.u32s.iter().rposition(|b| b.len() == len) {
            Some(i) => self.u32s.swap_remove(i),
            None => vec![0; len],
        }
    }

    pub fn give_u32(&mut self, v: Vec<u32>) {
        if !v.is_empty() && self.u32s.len() < MAX_IDLE {
            self.u32s.push(v);
        }
    }

    pub fn bytes(&self) -> usize {
        4 * (self.f32s.iter().map(|b| b.len()).sum::<usize>() + self.u32s.iter().map(|b| b.len()).sum::<usize>())
    }
}

//! Element-wise activations and bias add, forward and backward.

use crate::error::check_len;
use crate::Result;

/// An activation fused into a kernel's epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies the activation to every element of `data`, in place.
    pub fn apply_inplace(self, data: &mut [f32]) {
        if self == Activation::Relu {
            relu_inplace(data);
        }
    }
}

/// `data = max(data, 0)`, in place.
pub fn relu_inplace(data: &mut [f32]) {
    for x in data {
        *x = x.max(0.0);
    }
}

/// `y = max(x, 0)`.
pub fn relu_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_len("y", y.len(), x.len(), &"relu")?;
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x.max(0.0);
    }
    Ok(())
}

/// `grad_x = grad_y` where the relu's output `y > 0`, else 0 (overwrites).
pub fn relu_backward(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_len("grad_y", grad_y.len(), y.len(), &"relu_backward")?;
    check_len("grad_x", grad_x.len(), y.len(), &"relu_backward")?;
    for ((gx, &gy), &y) in grad_x.iter_mut().zip(grad_y).zip(y) {
        *gx = if y > 0.0 { gy } else { 0.0 };
    }
    Ok(())
}

/// In place, `grad *= (y > 0)`: relu backward folded into an existing gradient.
pub fn relu_backward_inplace(y: &[f32], grad: &mut [f32]) -> Result<()> {
    check_len("grad", grad.len(), y.len(), &"relu_backward_inplace")?;
    for (g, &y) in grad.iter_mut().zip(y) {
        if y <= 0.0 {
            *g = 0.0;
        }
    }
    Ok(())
}

/// Adds `bias` (length `c`) to every row of `data` (`[rows, c]`), in place.
pub fn bias_add(data: &mut [f32], bias: &[f32]) -> Result<()> {
    if bias.is_empty() || data.len() % bias.len() != 0 {
        return Err(crate::Error::LengthMismatch {
            what: "data",
            expected: bias.len(),
            actual: data.len(),
            shape: "rows x bias.len()".into(),
        });
    }
    for row in data.chunks_exact_mut(bias.len()) {
        for (x, &b) in row.iter_mut().zip(bias) {
            *x += b;
        }
    }
    Ok(())
}

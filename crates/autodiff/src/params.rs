//! [`Params`]: the persistent, named parameters of a model, each with a
//! gradient buffer of the same shape.

use crate::{Error, Result};
use convnet_tensor::{Shape, Tensor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT_OWNER: AtomicU32 = AtomicU32::new(1);

/// A handle to one parameter of a [`Params`]; `Copy`, cheap, and checked:
/// using it with another `Params` is an [`Error::UnknownParam`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId {
    owner: u32,
    index: u32,
}

impl ParamId {
    /// The parameter's position in its [`Params`] (0, 1, 2, ... in the order
    /// they were added). Optimizers key their per-parameter state by it.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

#[derive(Clone, Debug)]
struct Param {
    name: String,
    value: Tensor,
    grad: Tensor,
    /// True when `grad` holds zeros that nothing has written since
    /// [`Params::zero_grad`]: the first gradient written may then overwrite
    /// instead of adding (no read, no scratch buffer).
    fresh: bool,
}

/// The trainable parameters of a model: a value and a gradient per parameter,
/// in insertion order.
///
/// Gradients **accumulate**: [`Tape::backward`](crate::Tape::backward) adds
/// into them (like PyTorch's `.grad`), and [`Params::zero_grad`] resets them.
/// (Internally the first write after `zero_grad` overwrites, which is the
/// same thing without reading the zeros.)
///
/// ```
/// use convnet_autodiff::Params;
/// use convnet_tensor::{Shape, Tensor};
/// let mut params = Params::new();
/// let w = params.add("dense/kernel", Tensor::ones(Shape::matrix(3, 2)))?;
/// assert_eq!(params.value(w)?.shape(), Shape::matrix(3, 2));
/// assert_eq!(params.grad(w)?.sum(), 0.0);
/// assert_eq!(params.name(w)?, "dense/kernel");
/// assert_eq!(params.find("dense/kernel"), Some(w));
/// assert_eq!(params.num_elements(), 6);
/// # Ok::<(), convnet_autodiff::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Params {
    owner: u32,
    entries: Vec<Param>,
    /// Name -> index, so `add` and `find` take constant time (a model of
    /// 100,000 layers builds in linear time, not quadratic).
    by_name: HashMap<String, u32>,
}

impl Default for Params {
    fn default() -> Self {
        Self::new()
    }
}

impl Params {
    /// An empty parameter set.
    pub fn new() -> Self {
        Params { owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed), entries: Vec::new(), by_name: HashMap::new() }
    }

    /// Adds a parameter with its initial value; its gradient starts at zero.
    /// Names must be unique ([`Error::DuplicateParam`]).
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> Result<ParamId> {
        let name = name.into();
        if self.by_name.contains_key(&name) {
            return Err(Error::DuplicateParam(name));
        }
        if self.entries.len() >= u32::MAX as usize {
            return Err(Error::BadArgument { op: "Params::add", detail: "too many parameters".into() });
        }
        let index = self.entries.len() as u32;
        let grad = Tensor::zeros(value.shape());
        self.by_name.insert(name.clone(), index);
        self.entries.push(Param { name, value, grad, fresh: true });
        Ok(ParamId { owner: self.owner, index })
    }

    /// Number of parameters (tensors, not elements).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of scalar elements over all parameters.
    pub fn num_elements(&self) -> usize {
        self.entries.iter().map(|p| p.value.len()).sum()
    }

    /// The ids, in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        (0..self.entries.len()).map(|i| ParamId { owner: self.owner, index: i as u32 })
    }

    /// The id of the parameter called `name`.
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).map(|&index| ParamId { owner: self.owner, index })
    }

    fn entry(&self, id: ParamId) -> Result<&Param> {
        if id.owner != self.owner {
            return Err(Error::UnknownParam { index: id.index() });
        }
        self.entries.get(id.index()).ok_or(Error::UnknownParam { index: id.index() })
    }

    pub(crate) fn entry_mut(&mut self, id: ParamId) -> Result<(&mut Tensor, &mut Tensor, &mut bool)> {
        if id.owner != self.owner {
            return Err(Error::UnknownParam { index: id.index() });
        }
        let p = self.entries.get_mut(id.index()).ok_or(Error::UnknownParam { index: id.index() })?;
        Ok((&mut p.value, &mut p.grad, &mut p.fresh))
    }

    /// The parameter's name.
    pub fn name(&self, id: ParamId) -> Result<&str> {
        Ok(&self.entry(id)?.name)
    }

    /// The parameter's value.
    pub fn value(&self, id: ParamId) -> Result<&Tensor> {
        Ok(&self.entry(id)?.value)
    }

    /// The parameter's value, mutable (its shape must not change: a tape
    /// checks it and reports [`Error::Shape`]).
    pub fn value_mut(&mut self, id: ParamId) -> Result<&mut Tensor> {
        Ok(self.entry_mut(id)?.0)
    }

    /// Replaces the value with `value` of the same shape (loading weights).
    pub fn set_value(&mut self, id: ParamId, value: &[f32]) -> Result<()> {
        let v = self.entry_mut(id)?.0;
        if v.len() != value.len() {
            return Err(crate::error::shape_err(
                "Params::set_value",
                format!("parameter has shape {} ({} elements), got {} values", v.shape(), v.len(), value.len()),
            ));
        }
        v.data_mut().copy_from_slice(value);
        Ok(())
    }

    /// The parameter's shape.
    pub fn shape(&self, id: ParamId) -> Result<Shape> {
        Ok(self.entry(id)?.value.shape())
    }

    /// The accumulated gradient.
    pub fn grad(&self, id: ParamId) -> Result<&Tensor> {
        Ok(&self.entry(id)?.grad)
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        for p in &mut self.entries {
            if !p.fresh {
                p.grad.fill(0.0);
                p.fresh = true;
            }
        }
    }

    /// `(id, name, value, grad)` for every parameter, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &Tensor, &Tensor)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, p)| (ParamId { owner: self.owner, index: i as u32 }, p.name.as_str(), &p.value, &p.grad))
    }

    /// Calls `f(index, value, grad)` for every parameter in insertion order,
    /// with the value mutable: the hook an optimizer updates through, with no
    /// allocation. Stops at the first error.
    ///
    /// ```
    /// use convnet_autodiff::Params;
    /// use convnet_tensor::{Shape, Tensor};
    /// let mut params = Params::new();
    /// params.add("w", Tensor::ones(Shape::vector(2)))?;
    /// params.update_with(|_, value, grad| {
    ///     for (v, g) in value.iter_mut().zip(grad) { *v -= 0.1 * g; }
    ///     Ok::<(), convnet_autodiff::Error>(())
    /// })?;
    /// # Ok::<(), convnet_autodiff::Error>(())
    /// ```
    pub fn update_with<E>(
        &mut self,
        mut f: impl FnMut(usize, &mut [f32], &[f32]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        for (i, p) in self.entries.iter_mut().enumerate() {
            f(i, p.value.data_mut(), p.grad.data())?;
        }
        Ok(())
    }

    /// True when every gradient element is finite.
    pub fn grads_finite(&self) -> bool {
        self.entries.iter().all(|p| p.grad.data().iter().all(|g| g.is_finite()))
    }

    /// The global L2 norm of all gradients (accumulated in f64).
    pub fn grad_norm(&self) -> f32 {
        self.entries.iter().flat_map(|p| p.grad.data()).map(|&g| g as f64 * g as f64).sum::<f64>().sqrt() as f32
    }
}

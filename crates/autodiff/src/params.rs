//! [`Params`]: the persistent, named parameters of a model, each with a
//! gradient buffer of the same shape, allocated when the first gradient is
//! written (a frozen parameter never gets one).
//!
//! Values are held behind an [`Arc`], so a tape can record a parameter as a
//! constant leaf without copying it ([`Tape::constant`](crate::Tape::constant)):
//! fine-tuning VGG16 with blocks 1-4 frozen records 30 MB of weights per step
//! that way, and Grad-CAM differentiates through fc1's 103 M weights with no
//! copy. Writing a value that a tape still shares copies it first
//! (copy-on-write), so the tape keeps what it recorded.

use crate::{Error, Result};
use convnet_tensor::{Shape, Tensor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

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
    /// Shared with the tapes that recorded it as a constant (no copy).
    value: Arc<Tensor>,
    /// `None` until the first gradient is written: a parameter that is never
    /// differentiated (a frozen layer's) costs no gradient memory.
    grad: Option<Tensor>,
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
/// same thing without reading the zeros.) A gradient buffer is allocated by
/// the first `backward` that reaches its parameter; until then the
/// parameter has no gradient, as in PyTorch (`p.grad is None`): [`Params::grad`]
/// is an [`Error::NoGrad`] for it and [`Params::update_with`] skips it, so an
/// optimizer keeps no state for it either.
///
/// ```
/// use convnet_autodiff::Params;
/// use convnet_tensor::{Shape, Tensor};
/// let mut params = Params::new();
/// let w = params.add("dense/kernel", Tensor::ones(Shape::matrix(3, 2)))?;
/// assert_eq!(params.value(w)?.shape(), Shape::matrix(3, 2));
/// assert!(params.grad(w).is_err()); // no backward has reached it yet
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

    /// Adds a parameter with its initial value. It has no gradient until a
    /// `backward` writes one (see [`Params`]).
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> Result<ParamId> {
        let name = name.into();
        if self.by_name.contains_key(&name) {
            return Err(Error::DuplicateParam(name));
        }
        if self.entries.len() >= u32::MAX as usize {
            return Err(Error::BadArgument { op: "Params::add", detail: "too many parameters".into() });
        }
        let index = self.entries.len() as u32;
        self.by_name.insert(name.clone(), index);
        self.entries.push(Param { name, value: Arc::new(value), grad: None, fresh: true });
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

    fn entry_mut(&mut self, id: ParamId) -> Result<&mut Param> {
        if id.owner != self.owner {
            return Err(Error::UnknownParam { index: id.index() });
        }
        self.entries.get_mut(id.index()).ok_or(Error::UnknownParam { index: id.index() })
    }

    /// The gradient buffer of `id` (allocated, as zeros, on the first call)
    /// and its "holds zeros nothing has written" flag: where `backward`
    /// writes.
    pub(crate) fn grad_slot(&mut self, id: ParamId) -> Result<(&mut Tensor, &mut bool)> {
        let p = self.entry_mut(id)?;
        if p.grad.is_none() {
            p.fresh = true;
        }
        let shape = p.value.shape();
        Ok((p.grad.get_or_insert_with(|| Tensor::zeros(shape)), &mut p.fresh))
    }

    /// The value of `id`, shared (no copy): what a tape records for a constant.
    pub(crate) fn shared_value(&self, id: ParamId) -> Result<Arc<Tensor>> {
        Ok(Arc::clone(&self.entry(id)?.value))
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
    /// checks it and reports [`Error::Shape`]). When a tape still shares the
    /// value ([`Tape::constant`](crate::Tape::constant), not yet reset), it
    /// is copied first, so the tape keeps the value it recorded.
    pub fn value_mut(&mut self, id: ParamId) -> Result<&mut Tensor> {
        Ok(Arc::make_mut(&mut self.entry_mut(id)?.value))
    }

    /// Replaces the value with `value` of the same shape (loading weights).
    pub fn set_value(&mut self, id: ParamId, value: &[f32]) -> Result<()> {
        let v = self.value_mut(id)?;
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

    /// The accumulated gradient; [`Error::NoGrad`] when no `backward` has
    /// written one since the parameter was added or its gradient released
    /// (a frozen parameter, or one the loss never depended on).
    pub fn grad(&self, id: ParamId) -> Result<&Tensor> {
        let p = self.entry(id)?;
        p.grad.as_ref().ok_or_else(|| {
            Error::NoGrad(format!(
                "parameter {:?} has no gradient: no backward has reached it (frozen, or unused by the loss)",
                p.name
            ))
        })
    }

    /// True when `id` has a gradient buffer (see [`Params::grad`]).
    pub fn has_grad(&self, id: ParamId) -> Result<bool> {
        Ok(self.entry(id)?.grad.is_some())
    }

    /// Gives `id` a gradient buffer (zeros) if it has none, so that
    /// [`Params::update_with`] visits it from now on even in a step whose
    /// loss did not reach it: what a training loop does for its trainable
    /// parameters (Keras applies the optimizer to every trainable weight).
    ///
    /// ```
    /// use convnet_autodiff::Params;
    /// use convnet_tensor::{Shape, Tensor};
    /// let mut params = Params::new();
    /// let w = params.add("w", Tensor::ones(Shape::vector(2)))?;
    /// params.ensure_grad(w)?;
    /// assert_eq!(params.grad(w)?.data(), &[0.0, 0.0]);
    /// # Ok::<(), convnet_autodiff::Error>(())
    /// ```
    pub fn ensure_grad(&mut self, id: ParamId) -> Result<()> {
        self.grad_slot(id).map(|_| ())
    }

    /// Frees the gradient buffer of `id` (a layer being frozen): until a
    /// `backward` writes a new one, it has no gradient, and
    /// [`Params::update_with`] skips it.
    ///
    /// ```
    /// use convnet_autodiff::{Params, Tape};
    /// use convnet_tensor::{Shape, Tensor};
    /// let mut params = Params::new();
    /// let w = params.add("w", Tensor::ones(Shape::vector(3)))?;
    /// assert!(!params.has_grad(w)?); // nothing has differentiated it yet
    /// let mut tape = Tape::new();
    /// let v = tape.param(&params, w)?;
    /// let loss = tape.sum(v)?;
    /// tape.backward(loss, &mut params)?;
    /// assert_eq!(params.grad(w)?.data(), &[1.0, 1.0, 1.0]);
    /// params.release_grad(w)?;
    /// assert!(params.grad(w).is_err());
    /// # Ok::<(), convnet_autodiff::Error>(())
    /// ```
    pub fn release_grad(&mut self, id: ParamId) -> Result<()> {
        let p = self.entry_mut(id)?;
        p.grad = None;
        p.fresh = true;
        Ok(())
    }

    /// Sets every gradient to zero (those that exist: none is allocated).
    pub fn zero_grad(&mut self) {
        for p in &mut self.entries {
            if let (Some(g), false) = (p.grad.as_mut(), p.fresh) {
                g.fill(0.0);
                p.fresh = true;
            }
        }
    }

    /// `(id, name, value, grad)` for every parameter, in insertion order;
    /// `grad` is `None` for a parameter without a gradient buffer.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &Tensor, Option<&Tensor>)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, p)| (ParamId { owner: self.owner, index: i as u32 }, p.name.as_str(), &*p.value, p.grad.as_ref()))
    }

    /// Calls `f(index, value, grad)` for every parameter that has a gradient
    /// (see [`Params::grad`]), in insertion order, with the value mutable:
    /// the hook an optimizer updates through, with no allocation as long as
    /// no tape still shares the values it updates (reset the tape first).
    /// Parameters without a gradient (frozen ones) are skipped, as Keras and
    /// PyTorch optimizers skip them. Stops at the first error.
    ///
    /// ```
    /// use convnet_autodiff::{Params, Tape};
    /// use convnet_tensor::{Shape, Tensor};
    /// let mut params = Params::new();
    /// let w = params.add("w", Tensor::ones(Shape::vector(2)))?;
    /// let mut tape = Tape::new();
    /// let v = tape.param(&params, w)?;
    /// let loss = tape.sum(v)?;
    /// tape.backward(loss, &mut params)?;
    /// params.update_with(|_, value, grad| {
    ///     for (v, g) in value.iter_mut().zip(grad) { *v -= 0.1 * g; }
    ///     Ok::<(), convnet_autodiff::Error>(())
    /// })?;
    /// assert_eq!(params.value(w)?.data(), &[0.9, 0.9]);
    /// # Ok::<(), convnet_autodiff::Error>(())
    /// ```
    pub fn update_with<E>(
        &mut self,
        mut f: impl FnMut(usize, &mut [f32], &[f32]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        for (i, p) in self.entries.iter_mut().enumerate() {
            if let Some(grad) = &p.grad {
                f(i, Arc::make_mut(&mut p.value).data_mut(), grad.data())?;
            }
        }
        Ok(())
    }

    /// True when every gradient element is finite.
    pub fn grads_finite(&self) -> bool {
        self.entries.iter().filter_map(|p| p.grad.as_ref()).all(|g| convnet_tensor::all_finite(g.data()))
    }

    /// The global L2 norm of all gradients (accumulated in f64).
    pub fn grad_norm(&self) -> f32 {
        self.entries
            .iter()
            .filter_map(|p| p.grad.as_ref())
            .flat_map(|g| g.data())
            .map(|&g| g as f64 * g as f64)
            .sum::<f64>()
            .sqrt() as f32
    }
}

/// Where a backward pass writes parameter gradients: a [`Params`] or a
/// [`Gradients`] set of it (crate-private).
pub(crate) trait GradSink {
    /// The shape of parameter `id` (`Err` for an id of another set).
    fn shape_of(&self, id: ParamId) -> Result<Shape>;
    /// The gradient buffer of `id` and its "holds nothing written" flag: the
    /// first write overwrites (no read), later ones add.
    fn slot(&mut self, id: ParamId) -> Result<(&mut Tensor, &mut bool)>;
}

impl GradSink for Params {
    fn shape_of(&self, id: ParamId) -> Result<Shape> {
        self.shape(id)
    }
    fn slot(&mut self, id: ParamId) -> Result<(&mut Tensor, &mut bool)> {
        self.grad_slot(id)
    }
}

/// Gradient buffers for the parameters of one [`Params`], kept apart from
/// it: what one shard of a batch differentiates into when a training step is
/// split by examples ([`Tape::backward_into`](crate::Tape::backward_into)),
/// several shards at once on several threads, while the [`Params`] they
/// record from is only read. [`Params::set_grads_to_sum`] then adds the
/// shards' gradients, in shard order, into the parameters' own.
///
/// A buffer is allocated by the first backward that reaches its parameter
/// and kept; [`Gradients::clear`] marks every buffer as holding nothing
/// (no fill: the next backward overwrites it), so a training loop that
/// clears and differentiates into the same set every step allocates nothing
/// after its first step.
///
/// ```
/// use convnet_autodiff::{Params, Tape};
/// use convnet_tensor::{Shape, Tensor};
/// let mut params = Params::new();
/// let w = params.add("w", Tensor::ones(Shape::vector(2)))?;
/// params.ensure_grad(w)?;
/// let mut shards = [params.gradients(), params.gradients()];
/// for (k, grads) in shards.iter_mut().enumerate() {
///     let mut tape = Tape::new();
///     let x = tape.param_shared(&params, w)?;
///     let s = tape.input(Tensor::full(Shape::vector(2), k as f32 + 1.0).view())?;
///     let y = tape.mul(x, s)?;
///     let loss = tape.sum(y)?;
///     tape.backward_into(loss, grads)?;
/// }
/// assert_eq!(shards[1].grad(w)?.unwrap().data(), &[2.0, 2.0]);
/// params.set_grads_to_sum(&shards, &[0.5, 0.5])?; // 0.5 * 1 + 0.5 * 2
/// assert_eq!(params.grad(w)?.data(), &[1.5, 1.5]);
/// # Ok::<(), convnet_autodiff::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Gradients {
    owner: u32,
    shapes: Vec<Shape>,
    grads: Vec<Option<Tensor>>,
    /// Per parameter: nothing written since the last clear.
    fresh: Vec<bool>,
}

impl Params {
    /// An empty [`Gradients`] set for these parameters (no buffer yet).
    pub fn gradients(&self) -> Gradients {
        Gradients {
            owner: self.owner,
            shapes: self.entries.iter().map(|p| p.value.shape()).collect(),
            grads: vec![None; self.entries.len()],
            fresh: vec![true; self.entries.len()],
        }
    }

    /// Sets the gradient of every parameter that has a gradient buffer (see
    /// [`Params::grad`]) to the sum over `k` of `scales[k]` times `parts[k]`'s
    /// gradient, added in the order of `parts`:
    /// `((s0 * g0 + s1 * g1) + s2 * g2) + ...`, the same bits whatever thread
    /// computed each part. A part that holds nothing for a parameter since
    /// its last [`Gradients::clear`] adds zero. Parameters without a buffer
    /// (frozen ones) are left without one.
    ///
    /// Errors: `parts` of another [`Params`] ([`Error::UnknownParam`]), or
    /// `parts` and `scales` of different lengths.
    pub fn set_grads_to_sum(&mut self, parts: &[Gradients], scales: &[f32]) -> Result<()> {
        if parts.len() != scales.len() {
            return Err(Error::BadArgument {
                op: "Params::set_grads_to_sum",
                detail: format!("{} gradient sets but {} scales", parts.len(), scales.len()),
            });
        }
        for part in parts {
            if part.owner != self.owner || part.grads.len() != self.entries.len() {
                return Err(Error::UnknownParam { index: part.grads.len() });
            }
        }
        for (i, p) in self.entries.iter_mut().enumerate() {
            let Some(grad) = p.grad.as_mut() else { continue };
            let dst = grad.data_mut();
            let mut first = true;
            for (part, &s) in parts.iter().zip(scales) {
                let Some(g) = part.written(i) else { continue };
                if g.len() != dst.len() {
                    return Err(crate::error::shape_err(
                        "Params::set_grads_to_sum",
                        format!("parameter {i} has {} elements, a part's gradient {}", dst.len(), g.len()),
                    ));
                }
                if first {
                    dst.iter_mut().zip(g).for_each(|(d, &g)| *d = g * s);
                    first = false;
                } else {
                    dst.iter_mut().zip(g).for_each(|(d, &g)| *d += g * s);
                }
            }
            if first {
                dst.fill(0.0);
            }
            p.fresh = false;
        }
        Ok(())
    }
}

impl Gradients {
    /// Marks every buffer as holding nothing, without touching its memory:
    /// the next backward overwrites what it reaches, and [`Gradients::grad`]
    /// is `None` for what it does not.
    pub fn clear(&mut self) {
        self.fresh.fill(true);
    }

    /// The gradient written into parameter `id` since the last
    /// [`Gradients::clear`], `None` when nothing was; `Err` for an id of
    /// another [`Params`].
    pub fn grad(&self, id: ParamId) -> Result<Option<&Tensor>> {
        if id.owner != self.owner || id.index() >= self.grads.len() {
            return Err(Error::UnknownParam { index: id.index() });
        }
        Ok(self.written(id.index()).map(|_| self.grads[id.index()].as_ref().expect("a written buffer")))
    }

    fn written(&self, i: usize) -> Option<&[f32]> {
        match (&self.grads[i], self.fresh[i]) {
            (Some(g), false) => Some(g.data()),
            _ => None,
        }
    }
}

impl GradSink for Gradients {
    fn shape_of(&self, id: ParamId) -> Result<Shape> {
        if id.owner != self.owner {
            return Err(Error::UnknownParam { index: id.index() });
        }
        self.shapes.get(id.index()).copied().ok_or(Error::UnknownParam { index: id.index() })
    }
    fn slot(&mut self, id: ParamId) -> Result<(&mut Tensor, &mut bool)> {
        let shape = self.shape_of(id)?;
        let i = id.index();
        Ok((self.grads[i].get_or_insert_with(|| Tensor::zeros(shape)), &mut self.fresh[i]))
    }
}

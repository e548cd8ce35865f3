//! Stochastic gradient descent with optional (Nesterov) momentum, as Keras 3
//! computes it.

use crate::core::{common_methods, decay, Core};
use crate::lanes::{run, Lane, Rule};
use crate::{Error, LearningRate, Optimizer, Result};

/// SGD with Keras 3 semantics (`keras/src/optimizers/sgd.py`):
///
/// ```text
/// momentum == 0:  w -= lr * g
/// momentum > 0:   m = momentum * m - lr * g
///                 w += m                              (classic)
///                 w += momentum * m - lr * g          (nesterov)
/// ```
///
/// `weight_decay` is decoupled, as in every Keras 3 optimizer: `w -= lr *
/// weight_decay * w` before the update. (PyTorch's `SGD(weight_decay=..)`
/// adds `weight_decay * w` to the gradient instead, and keeps its momentum
/// buffer as `b = momentum * b + g; w -= lr * b`, which equals Keras's for a
/// constant learning rate.)
///
/// ```
/// use convnet_optim::{Optimizer, Sgd};
/// let mut opt = Sgd::new(0.1);
/// let (mut w, g) = (vec![1.0f32], vec![0.5f32]);
/// opt.step(&mut [(&mut w[..], &g[..])])?;
/// assert!((w[0] - 0.95).abs() < 1e-7);
/// # Ok::<(), convnet_optim::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Learning rate or schedule (Keras default 0.01).
    pub learning_rate: LearningRate,
    /// Momentum in `[0, 1]` (default 0).
    pub momentum: f32,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Decoupled weight decay (default 0).
    pub weight_decay: f32,
    core: Core,
}

impl Default for Sgd {
    fn default() -> Self {
        Self::new(0.01)
    }
}

impl Sgd {
    /// Plain SGD at `learning_rate`.
    pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
        Sgd {
            learning_rate: learning_rate.into(),
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            core: Core::new(),
        }
    }

    /// Sets the momentum.
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Turns Nesterov momentum on or off.
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// Sets the decoupled weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::BadHyperParameter(format!("SGD momentum must be in [0, 1], got {}", self.momentum)));
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            return Err(Error::BadHyperParameter(format!("weight_decay {}", self.weight_decay)));
        }
        Ok(())
    }
}

struct Plain {
    lr: f32,
}
impl Rule<0> for Plain {
    #[inline(always)]
    fn apply<L: Lane>(&self, w: &mut L, g: L, _: &mut [L; 0]) {
        *w = *w - L::splat(self.lr) * g;
    }
}

struct Momentum<const NESTEROV: bool> {
    lr: f32,
    momentum: f32,
}
impl<const NESTEROV: bool> Rule<1> for Momentum<NESTEROV> {
    #[inline(always)]
    fn apply<L: Lane>(&self, w: &mut L, g: L, s: &mut [L; 1]) {
        let (mu, lr_g) = (L::splat(self.momentum), L::splat(self.lr) * g);
        s[0] = mu * s[0] - lr_g;
        *w = if NESTEROV { *w + (mu * s[0] - lr_g) } else { *w + s[0] };
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn slot_names(&self) -> &'static [&'static str] {
        if self.momentum != 0.0 {
            &["momentum"]
        } else {
            &[]
        }
    }

    fn update(&mut self, index: usize, value: &mut [f32], grad: &[f32]) -> Result<()> {
        let k = self.slot_names().len();
        let lr = self.core.lr;
        let slots = self.core.slots(index, value, grad, k)?;
        decay(value, lr, self.weight_decay);
        match (k, self.nesterov) {
            (0, _) => run(&Plain { lr }, value, grad, slots),
            (_, false) => run(&Momentum::<false> { lr, momentum: self.momentum }, value, grad, slots),
            (_, true) => run(&Momentum::<true> { lr, momentum: self.momentum }, value, grad, slots),
        }
        Ok(())
    }

    common_methods!();
}

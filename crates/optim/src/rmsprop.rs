//! RMSprop (Hinton, 2012, lecture 6e) exactly as Keras 3 computes it.

use crate::core::{common_methods, decay, Core};
use crate::lanes::{run, Lane, Rule};
use crate::{Error, LearningRate, Optimizer, Result};

/// RMSprop with Keras 3 semantics and defaults
/// (`keras/src/optimizers/rmsprop.py`): learning rate 0.001, `rho` 0.9,
/// `momentum` 0, `epsilon` 1e-7, `centered` false. Per element:
///
/// ```text
/// v = rho * v + (1 - rho) * g^2
/// centered:  a = rho * a + (1 - rho) * g;  denom = v - a^2 + epsilon
/// otherwise:                               denom = v + epsilon
/// inc = lr * g / sqrt(denom)
/// momentum > 0:  m = momentum * m + inc;  w -= m
/// otherwise:                              w -= inc
/// ```
///
/// Where epsilon goes differs between frameworks: Keras 3 adds it **inside**
/// the square root (`sqrt(v + eps)`, eps 1e-7, as above); PyTorch's
/// `torch.optim.RMSprop` adds it **outside** (`sqrt(v) + eps`) with eps 1e-8
/// and `alpha` (= rho) 0.99 by default. With `v` near zero that is a 1e-3.5
/// versus 1e-8 floor on the denominator, so early steps of the two differ.
/// `weight_decay` is Keras's decoupled decay (`w -= lr * wd * w` first).
///
/// ```
/// use convnet_optim::{Optimizer, RMSprop};
/// let mut opt = RMSprop::new(0.001);
/// let (mut w, g) = (vec![1.0f32], vec![2.0f32]);
/// opt.step(&mut [(&mut w[..], &g[..])])?;
/// // v = 0.1 * 4 = 0.4; w = 1 - 0.001 * 2 / sqrt(0.4 + 1e-7)
/// assert!((w[0] - (1.0 - 0.002 / (0.4f64 + 1e-7).sqrt()) as f32).abs() < 1e-7);
/// # Ok::<(), convnet_optim::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RMSprop {
    /// Learning rate or schedule (default 0.001).
    pub learning_rate: LearningRate,
    /// Discount of the squared-gradient average (default 0.9).
    pub rho: f32,
    /// Momentum (default 0).
    pub momentum: f32,
    /// Added to the squared-gradient average inside the square root (default 1e-7).
    pub epsilon: f32,
    /// Divide by the estimated variance instead of the second moment (default false).
    pub centered: bool,
    /// Decoupled weight decay (default 0).
    pub weight_decay: f32,
    core: Core,
}

impl Default for RMSprop {
    fn default() -> Self {
        Self::new(0.001)
    }
}

impl RMSprop {
    /// RMSprop with Keras's defaults at `learning_rate`.
    pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
        RMSprop {
            learning_rate: learning_rate.into(),
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false,
            weight_decay: 0.0,
            core: Core::new(),
        }
    }

    /// Sets `rho`.
    pub fn with_rho(mut self, rho: f32) -> Self {
        self.rho = rho;
        self
    }

    /// Sets the momentum.
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets epsilon.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Turns the centered variant on or off.
    pub fn with_centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    /// Sets the decoupled weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.rho) {
            return Err(Error::BadHyperParameter(format!("RMSprop rho must be in [0, 1), got {}", self.rho)));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::BadHyperParameter(format!("RMSprop momentum must be in [0, 1), got {}", self.momentum)));
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(Error::BadHyperParameter(format!("RMSprop epsilon must be > 0, got {}", self.epsilon)));
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            return Err(Error::BadHyperParameter(format!("weight_decay {}", self.weight_decay)));
        }
        Ok(())
    }
}

/// Slots in order: velocity, then momentum (if used), then average gradient (if centered).
struct Rms<const MOMENTUM: bool, const CENTERED: bool> {
    lr: f32,
    rho: f32,
    momentum: f32,
    epsilon: f32,
}

impl<const MOMENTUM: bool, const CENTERED: bool, const K: usize> Rule<K> for Rms<MOMENTUM, CENTERED> {
    #[inline(always)]
    fn apply<L: Lane>(&self, w: &mut L, g: L, s: &mut [L; K]) {
        let (rho, one_minus) = (L::splat(self.rho), L::splat(1.0 - self.rho));
        s[0] = rho * s[0] + one_minus * (g * g);
        let denom = if CENTERED {
            let a = K - 1;
            s[a] = rho * s[a] + one_minus * g;
            s[0] - s[a] * s[a] + L::splat(self.epsilon)
        } else {
            s[0] + L::splat(self.epsilon)
        };
        let inc = L::splat(self.lr) * g / denom.sqrt();
        if MOMENTUM {
            s[1] = L::splat(self.momentum) * s[1] + inc;
            *w = *w - s[1];
        } else {
            *w = *w - inc;
        }
    }
}

impl Optimizer for RMSprop {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn slot_names(&self) -> &'static [&'static str] {
        match (self.momentum > 0.0, self.centered) {
            (false, false) => &["velocity"],
            (true, false) => &["velocity", "momentum"],
            (false, true) => &["velocity", "average_gradient"],
            (true, true) => &["velocity", "momentum", "average_gradient"],
        }
    }

    fn update(&mut self, index: usize, value: &mut [f32], grad: &[f32]) -> Result<()> {
        let (momentum, centered) = (self.momentum > 0.0, self.centered);
        let k = self.slot_names().len();
        let lr = self.core.lr;
        let slots = self.core.slots(index, value, grad, k)?;
        decay(value, lr, self.weight_decay);
        let (rho, mom, epsilon) = (self.rho, self.momentum, self.epsilon);
        match (momentum, centered) {
            (false, false) => run::<_, 1>(&Rms::<false, false> { lr, rho, momentum: mom, epsilon }, value, grad, slots),
            (true, false) => run::<_, 2>(&Rms::<true, false> { lr, rho, momentum: mom, epsilon }, value, grad, slots),
            (false, true) => run::<_, 2>(&Rms::<false, true> { lr, rho, momentum: mom, epsilon }, value, grad, slots),
            (true, true) => run::<_, 3>(&Rms::<true, true> { lr, rho, momentum: mom, epsilon }, value, grad, slots),
        }
        Ok(())
    }

    common_methods!();
}

//! Adam (Kingma & Ba, 2014) and AdamW (Loshchilov & Hutter, 2019) as Keras 3
//! computes them.

use crate::core::{common_methods, decay, Core};
use crate::lanes::{run, Lane, Rule};
use crate::{Error, LearningRate, Optimizer, Result};

/// The Keras 3 Adam step (`keras/src/optimizers/adam.py`), with `t` the
/// 1-based step number:
///
/// ```text
/// alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
/// m += (g - m) * (1 - beta_1)
/// v += (g^2 - v) * (1 - beta_2)
/// amsgrad: v_hat = max(v_hat, v), used in place of v
/// w -= m * alpha / (sqrt(v) + epsilon)
/// ```
///
/// (the "epsilon hat" form of the paper; PyTorch's default epsilon is 1e-8,
/// Keras's 1e-7).
struct AdamRule<const AMSGRAD: bool> {
    alpha: f32,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
}

impl<const AMSGRAD: bool, const K: usize> Rule<K> for AdamRule<AMSGRAD> {
    #[inline(always)]
    fn apply<L: Lane>(&self, w: &mut L, g: L, s: &mut [L; K]) {
        s[0] = s[0] + (g - s[0]) * L::splat(1.0 - self.beta_1);
        s[1] = s[1] + (g * g - s[1]) * L::splat(1.0 - self.beta_2);
        let v = if AMSGRAD {
            s[K - 1] = s[K - 1].max(s[1]);
            s[K - 1]
        } else {
            s[1]
        };
        *w = *w - s[0] * L::splat(self.alpha) / (v.sqrt() + L::splat(self.epsilon));
    }
}

macro_rules! adam_type {
    ($(#[$doc:meta])* $name:ident, $keras:literal, $lr:expr, $wd:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            /// Learning rate or schedule (default 0.001).
            pub learning_rate: LearningRate,
            /// Decay of the first-moment average (default 0.9).
            pub beta_1: f32,
            /// Decay of the second-moment average (default 0.999).
            pub beta_2: f32,
            /// Added to `sqrt(v)` (default 1e-7).
            pub epsilon: f32,
            /// Use the running maximum of `v` (AMSGrad; default false).
            pub amsgrad: bool,
            /// Decoupled weight decay: `w -= lr * weight_decay * w` before
            /// the Adam step.
            pub weight_decay: f32,
            core: Core,
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new($lr)
            }
        }

        impl $name {
            /// Keras's defaults at `learning_rate`.
            pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
                $name {
                    learning_rate: learning_rate.into(),
                    beta_1: 0.9,
                    beta_2: 0.999,
                    epsilon: 1e-7,
                    amsgrad: false,
                    weight_decay: $wd,
                    core: Core::new(),
                }
            }

            /// Sets the moment decays.
            pub fn with_betas(mut self, beta_1: f32, beta_2: f32) -> Self {
                self.beta_1 = beta_1;
                self.beta_2 = beta_2;
                self
            }

            /// Sets epsilon.
            pub fn with_epsilon(mut self, epsilon: f32) -> Self {
                self.epsilon = epsilon;
                self
            }

            /// Turns AMSGrad on or off.
            pub fn with_amsgrad(mut self, amsgrad: bool) -> Self {
                self.amsgrad = amsgrad;
                self
            }

            /// Sets the decoupled weight decay.
            pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
                self.weight_decay = weight_decay;
                self
            }

            fn validate(&self) -> Result<()> {
                if !(0.0..1.0).contains(&self.beta_1) || !(0.0..1.0).contains(&self.beta_2) {
                    return Err(Error::BadHyperParameter(format!(
                        "betas must be in [0, 1), got {} and {}",
                        self.beta_1, self.beta_2
                    )));
                }
                if !(self.epsilon >= 0.0 && self.epsilon.is_finite()) {
                    return Err(Error::BadHyperParameter(format!("epsilon {}", self.epsilon)));
                }
                if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
                    return Err(Error::BadHyperParameter(format!("weight_decay {}", self.weight_decay)));
                }
                Ok(())
            }
        }

        impl Optimizer for $name {
            fn name(&self) -> &'static str {
                $keras
            }

            fn slot_names(&self) -> &'static [&'static str] {
                if self.amsgrad {
                    &["momentum", "velocity", "velocity_hat"]
                } else {
                    &["momentum", "velocity"]
                }
            }

            fn update(&mut self, index: usize, value: &mut [f32], grad: &[f32]) -> Result<()> {
                let k = self.slot_names().len();
                let (lr, t) = (self.core.lr, self.core.iterations);
                let slots = self.core.slots(index, value, grad, k)?;
                decay(value, lr, self.weight_decay);
                let t = t.min(i32::MAX as u64) as i32;
                let (b1, b2) = (self.beta_1 as f64, self.beta_2 as f64);
                let alpha = (lr as f64 * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t))) as f32;
                let (beta_1, beta_2, epsilon) = (self.beta_1, self.beta_2, self.epsilon);
                if self.amsgrad {
                    run::<_, 3>(&AdamRule::<true> { alpha, beta_1, beta_2, epsilon }, value, grad, slots);
                } else {
                    run::<_, 2>(&AdamRule::<false> { alpha, beta_1, beta_2, epsilon }, value, grad, slots);
                }
                Ok(())
            }

            common_methods!();
        }
    };
}

adam_type!(
    /// Adam with Keras 3 semantics and defaults (learning rate 0.001,
    /// `beta_1` 0.9, `beta_2` 0.999, `epsilon` 1e-7, no weight decay). The
    /// rule, with `t` the 1-based step:
    ///
    /// ```text
    /// alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    /// m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
    /// w -= m * alpha / (sqrt(v) + epsilon)
    /// ```
    ///
    /// PyTorch's `Adam` uses epsilon 1e-8 and adds it to `sqrt(v_hat)` after
    /// bias correction, which differs from Keras's form by a factor
    /// `sqrt(1 - beta_2^t)` on epsilon.
    ///
    /// ```
    /// use convnet_optim::{Adam, Optimizer};
    /// let mut opt = Adam::new(0.1);
    /// let (mut w, g) = (vec![1.0f32], vec![3.0f32]);
    /// opt.step(&mut [(&mut w[..], &g[..])])?;
    /// assert!((w[0] - 0.9).abs() < 1e-6); // the first Adam step moves by ~lr
    /// # Ok::<(), convnet_optim::Error>(())
    /// ```
    Adam,
    "adam",
    0.001,
    0.0
);

adam_type!(
    /// AdamW: [`Adam`] with Keras's decoupled weight decay on by default
    /// (`weight_decay` 0.004, Keras 3's `AdamW` default; PyTorch's is 0.01
    /// with epsilon 1e-8): `w -= lr * weight_decay * w`, then the Adam step.
    AdamW,
    "adamw",
    0.001,
    0.004
);

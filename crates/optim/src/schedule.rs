//! Learning-rate schedules, evaluated at the optimizer's step count (0 for
//! the first step), with Keras's formulas.

use serde::{Deserialize, Serialize};

/// A learning rate as a function of the step (0-based: the first update uses
/// step 0, as Keras evaluates its schedules at `optimizer.iterations` before
/// incrementing it).
///
/// ```
/// use convnet_optim::LearningRate;
/// let lr = LearningRate::ExponentialDecay { initial: 0.1, decay_steps: 10, decay_rate: 0.5, staircase: true };
/// assert_eq!(lr.at(9), 0.1);
/// assert_eq!(lr.at(10), 0.05);
/// let cos = LearningRate::CosineDecay { initial: 1.0, decay_steps: 100, alpha: 0.0, warmup_target: None, warmup_steps: 0 };
/// assert!((cos.at(50) - 0.5).abs() < 1e-6);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LearningRate {
    /// The same rate at every step.
    Constant(f32),
    /// Keras `ExponentialDecay`: `initial * decay_rate ^ (step / decay_steps)`,
    /// with the exponent floored when `staircase`.
    ExponentialDecay {
        /// Rate at step 0.
        initial: f32,
        /// Steps per factor of `decay_rate` (> 0).
        decay_steps: u64,
        /// Factor per `decay_steps`.
        decay_rate: f32,
        /// Decay in whole steps of `decay_steps`.
        staircase: bool,
    },
    /// Step decay (PyTorch `StepLR`, counted in optimizer steps):
    /// `initial * gamma ^ floor(step / step_size)`.
    StepDecay {
        /// Rate at step 0.
        initial: f32,
        /// Steps between decays (> 0).
        step_size: u64,
        /// Factor per decay.
        gamma: f32,
    },
    /// Keras `PiecewiseConstantDecay`: `values[i]` while `step <=
    /// boundaries[i]` (and `values[last]` after the last boundary);
    /// `values.len() == boundaries.len() + 1`.
    PiecewiseConstant {
        /// Increasing step boundaries.
        boundaries: Vec<u64>,
        /// One more value than boundaries.
        values: Vec<f32>,
    },
    /// Keras `CosineDecay` (Loshchilov & Hutter, SGDR) with optional linear
    /// warmup: during `warmup_steps` the rate goes linearly from `initial` to
    /// `warmup_target`; then `from * ((1 - alpha) * 0.5 * (1 + cos(pi *
    /// min(s, decay_steps) / decay_steps)) + alpha)` with `from` the warmup
    /// target (or `initial` without warmup) and `s` the steps since warmup.
    CosineDecay {
        /// Rate at step 0.
        initial: f32,
        /// Steps of the cosine (> 0).
        decay_steps: u64,
        /// Final rate as a fraction of the starting one.
        alpha: f32,
        /// Rate reached at the end of warmup; `None` for no warmup.
        warmup_target: Option<f32>,
        /// Steps of warmup.
        warmup_steps: u64,
    },
}

impl From<f32> for LearningRate {
    fn from(lr: f32) -> Self {
        LearningRate::Constant(lr)
    }
}

impl LearningRate {
    /// The rate at `step` (computed in f64, returned as f32).
    pub fn at(&self, step: u64) -> f32 {
        let s = step as f64;
        match self {
            LearningRate::Constant(lr) => *lr,
            LearningRate::ExponentialDecay { initial, decay_steps, decay_rate, staircase } => {
                let mut p = s / (*decay_steps).max(1) as f64;
                if *staircase {
                    p = p.floor();
                }
                (*initial as f64 * (*decay_rate as f64).powf(p)) as f32
            }
            LearningRate::StepDecay { initial, step_size, gamma } => {
                (*initial as f64 * (*gamma as f64).powf((step / (*step_size).max(1)) as f64)) as f32
            }
            LearningRate::PiecewiseConstant { boundaries, values } => {
                let i = boundaries.iter().position(|&b| step <= b).unwrap_or(boundaries.len());
                values.get(i).or(values.last()).copied().unwrap_or(0.0)
            }
            LearningRate::CosineDecay { initial, decay_steps, alpha, warmup_target, warmup_steps } => {
                let decay = (*decay_steps).max(1) as f64;
                let (from, s) = match warmup_target {
                    None => (*initial as f64, s.min(decay)),
                    Some(target) => {
                        let w = *warmup_steps as f64;
                        let s = s.min(decay + w);
                        if s < w {
                            return (*initial as f64 + (*target as f64 - *initial as f64) * s / w) as f32;
                        }
                        (*target as f64, s - w)
                    }
                };
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * s / decay).cos());
                (from * ((1.0 - *alpha as f64) * cosine + *alpha as f64)) as f32
            }
        }
    }

    /// Checks the schedule's parameters (positive step counts, matching
    /// piecewise lengths, finite rates).
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::BadHyperParameter(m));
        match self {
            LearningRate::Constant(lr) if !lr.is_finite() || *lr < 0.0 => bad(format!("learning rate {lr}")),
            LearningRate::ExponentialDecay { decay_steps: 0, .. }
            | LearningRate::CosineDecay { decay_steps: 0, .. } => bad("decay_steps must be > 0".into()),
            LearningRate::StepDecay { step_size: 0, .. } => bad("step_size must be > 0".into()),
            LearningRate::PiecewiseConstant { boundaries, values } if values.len() != boundaries.len() + 1 => {
                bad(format!("piecewise schedule: {} values for {} boundaries", values.len(), boundaries.len()))
            }
            LearningRate::PiecewiseConstant { boundaries, .. } if boundaries.windows(2).any(|w| w[0] >= w[1]) => {
                bad("piecewise boundaries must increase".into())
            }
            _ => Ok(()),
        }
    }
}

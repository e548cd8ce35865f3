//! What every optimizer shares: the schedule, the step counter and the
//! per-parameter slot buffers.

use crate::{Error, LearningRate, OptimizerState, Result};

#[derive(Clone, Debug)]
pub(crate) struct Core {
    pub iterations: u64,
    /// The learning rate of the step in progress.
    pub lr: f32,
    pub begun: bool,
    /// `slots[param][slot]`.
    pub slots: Vec<Vec<Vec<f32>>>,
}

impl Core {
    pub fn new() -> Self {
        Core { iterations: 0, lr: 0.0, begun: false, slots: Vec::new() }
    }

    /// Evaluates the schedule at the current count and advances it.
    pub fn begin(&mut self, schedule: &LearningRate) -> Result<()> {
        schedule.validate()?;
        self.lr = schedule.at(self.iterations);
        self.iterations += 1;
        self.begun = true;
        Ok(())
    }

    /// The `k` slot buffers of parameter `index` (created zeroed on its first
    /// update), after checking lengths.
    pub fn slots(&mut self, index: usize, value: &[f32], grad: &[f32], k: usize) -> Result<&mut [Vec<f32>]> {
        if !self.begun {
            return Err(Error::NotBegun);
        }
        if value.len() != grad.len() {
            return Err(Error::LengthMismatch { index, expected: value.len(), actual: grad.len() });
        }
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Vec::new);
        }
        let s = &mut self.slots[index];
        if s.is_empty() {
            s.resize_with(k, || vec![0.0; value.len()]);
        }
        if s.len() != k {
            return Err(Error::BadState(format!("parameter {index} has {} slots, the optimizer needs {k}", s.len())));
        }
        if let Some(bad) = s.iter().find(|b| b.len() != value.len()) {
            return Err(Error::LengthMismatch { index, expected: bad.len(), actual: value.len() });
        }
        Ok(s)
    }

    pub fn state(&self, name: &str, slot_names: &[&str]) -> OptimizerState {
        OptimizerState {
            optimizer: name.to_string(),
            iterations: self.iterations,
            slot_names: slot_names.iter().map(|s| s.to_string()).collect(),
            slots: self.slots.clone(),
        }
    }

    pub fn load(&mut self, name: &str, slot_names: &[&str], state: &OptimizerState) -> Result<()> {
        if state.optimizer != name {
            return Err(Error::BadState(format!("state of {:?} loaded into {name:?}", state.optimizer)));
        }
        if state.slot_names.iter().map(String::as_str).ne(slot_names.iter().copied()) {
            return Err(Error::BadState(format!(
                "state has slots {:?}, this configuration needs {slot_names:?}",
                state.slot_names
            )));
        }
        for (i, p) in state.slots.iter().enumerate() {
            if !p.is_empty() && p.len() != slot_names.len() {
                return Err(Error::BadState(format!(
                    "parameter {i} has {} slots, expected {}",
                    p.len(),
                    slot_names.len()
                )));
            }
            if p.iter().any(|s| s.len() != p[0].len()) {
                return Err(Error::BadState(format!("parameter {i}: slot buffers differ in length")));
            }
        }
        self.iterations = state.iterations;
        self.slots = state.slots.clone();
        self.begun = false;
        Ok(())
    }
}

/// Keras's decoupled weight decay, applied before the update:
/// `w -= lr * weight_decay * w`.
pub(crate) fn decay(w: &mut [f32], lr: f32, weight_decay: f32) {
    if weight_decay != 0.0 {
        let f = 1.0 - lr * weight_decay;
        w.iter_mut().for_each(|w| *w *= f);
    }
}

/// Implements the bookkeeping methods of [`crate::Optimizer`].
macro_rules! common_methods {
    () => {
        fn begin_step(&mut self) -> $crate::Result<()> {
            self.validate()?;
            self.core.begin(&self.learning_rate)
        }

        fn iterations(&self) -> u64 {
            self.core.iterations
        }

        fn current_learning_rate(&self) -> f32 {
            if self.core.begun {
                self.core.lr
            } else {
                self.learning_rate.at(self.core.iterations)
            }
        }

        fn state(&self) -> $crate::OptimizerState {
            self.core.state(self.name(), self.slot_names())
        }

        fn load_state(&mut self, state: &$crate::OptimizerState) -> $crate::Result<()> {
            let names = self.slot_names();
            self.core.load(self.name(), names, state)
        }
    };
}
pub(crate) use common_methods;

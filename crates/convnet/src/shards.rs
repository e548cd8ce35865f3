//! A training step split by examples (in-process data parallelism): the
//! batch is cut into a fixed number of shards of consecutive examples, each
//! shard runs its forward and backward pass on its own [`Tape`] into its own
//! [`Gradients`], one shard per rayon worker, and the shards' gradients,
//! each weighted by its share of the batch, are added in shard order into
//! the model's parameters before the one optimizer update
//! ([`Params::set_grads_to_sum`]).
//!
//! **Why.** Splitting every kernel call of a step over the threads (what a
//! one-tape step does) costs a fork-join per call, about 30 per step on the
//! chapter's MNIST model, and runs the memory-bound passes (pooling, bias,
//! activations) on both cores at once, where this VM's shared bandwidth
//! gives them 0.8-1.3x. A shard is one worker's from its first layer to its
//! loss: one fork-join per step, and half the batch's activations, which
//! stay in that core's L2 more often. See `docs/BENCHMARKS.md` (issue 13):
//! measured faster on a calm machine (Dec 2: 5 epochs 10-23% faster on 2
//! cores, 1.81-1.92x from the second core), it is the default
//! ([`DEFAULT_SHARDS`](crate::DEFAULT_SHARDS) = 2).
//!
//! **Same numbers on any thread count.** The number of shards is
//! [`FitOptions::shards`](crate::FitOptions::shards), never the thread
//! count, and each shard's kernels give the same bits on any number of
//! threads (as every kernel here does), so a fit is bit-identical on 1, 2 or
//! 3 threads. Shard `k` of `S` takes examples `[k*b/S, (k+1)*b/S)` of a batch
//! of `b`; its loss node takes the mean over its own examples, so its
//! gradient is weighted by `n_k / b` in the sum (`0.5` for two shards of an
//! even batch: exact), and the batch's loss is `sum_k loss_k * n_k / b`
//! (in `f64`): the mean over the whole batch, as a one-tape step reports it.
//! Dropout masks and random augmentation are drawn per shard: shard 0 keeps
//! the step's seed, shard `k` mixes `k` in (as the ranks of
//! `distributed` do), so they depend on the shard count but not on threads.
//!
//! **Threads.** With one rayon thread the shards run one after the other on
//! the calling thread. With more, they run as one `par_iter` over the
//! shards in the current pool; a shard's kernel calls still split their
//! work as usual, so a worker that finishes its shard first steals from the
//! other's kernel calls, and with more threads than shards the spare threads
//! work inside the shards' kernels.
//!
//! **Memory.** Each shard keeps its tape's pooled buffers (activations of
//! `b/S` examples: the same total as one tape of `b`) and one gradient
//! buffer per trainable parameter, allocated in the first step; later steps
//! of the same batch size allocate nothing.

use crate::batch::{correct_of, BatchBuf};
use crate::data::TargetForm;
use crate::model::Model;
use crate::Result;
use convnet_autodiff::{BackwardWork, Gradients, Params, Tape};
use convnet_tensor::TensorView;
use rayon::prelude::*;

/// One shard's tape and what its last step produced.
struct Shard {
    tape: Tape,
    /// The batch size the tape's pooled buffers were sized for (0: none yet).
    tape_batch: usize,
    /// The shard's mean loss, correct count and examples in the last step.
    loss: f32,
    correct: f64,
    examples: usize,
    work: BackwardWork,
    /// The last step's outcome on this shard (an error is returned by
    /// [`Shards::step`] in shard order).
    outcome: Result<()>,
}

/// The shards of `fit`'s steps: tapes, gradient sets and weights, reused
/// from step to step.
pub(crate) struct Shards {
    shards: Vec<Shard>,
    grads: Vec<Gradients>,
    scales: Vec<f32>,
    /// The shards the last step used (fewer than `shards.len()` for a batch
    /// with fewer examples).
    used: usize,
    profiling: bool,
}

/// What one shard of a step works on.
struct Job<'a> {
    model: &'a Model,
    buf: &'a BatchBuf,
    b: usize,
    count: usize,
    form: TargetForm,
    fused: bool,
    accuracy: bool,
    seed: u64,
}

impl Shards {
    /// `count` shards (at least 1) for the trainable parameters of `params`.
    pub(crate) fn new(params: &Params, count: usize, profiling: bool) -> Self {
        let count = count.max(1);
        let shards = (0..count)
            .map(|_| Shard {
                tape: Tape::new(),
                tape_batch: 0,
                loss: 0.0,
                correct: 0.0,
                examples: 0,
                work: BackwardWork::default(),
                outcome: Ok(()),
            })
            .collect();
        Shards {
            shards,
            grads: (0..count).map(|_| params.gradients()).collect(),
            scales: vec![0.0; count],
            used: 0,
            profiling,
        }
    }

    /// How many shards a batch of `b` examples is split into (at least 1
    /// example each).
    pub(crate) fn count_for(&self, b: usize) -> usize {
        self.shards.len().min(b).max(1)
    }

    /// The seed of shard `k`'s dropout and augmentation draws in the step of
    /// `seed`: shard 0 keeps it.
    pub(crate) fn seed(seed: u64, k: usize) -> u64 {
        seed ^ (k as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
    }

    /// Runs the forward pass, the loss and (when the shard's loss is finite)
    /// the backward pass of every shard of the batch of `b` examples in
    /// `buf`; returns the batch's mean loss and correct count. The model's
    /// parameters are only read (their gradients are set by
    /// [`Shards::sum_into`]); every shard's tape is reset before returning,
    /// so no tape shares the weights during the update. A shard's error is
    /// returned (the first in shard order) after every shard has finished.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &mut self,
        model: &Model,
        buf: &BatchBuf,
        b: usize,
        form: TargetForm,
        fused: bool,
        accuracy: bool,
        seed: u64,
    ) -> Result<(f32, f64)> {
        let count = self.count_for(b);
        self.used = count;
        let job = Job { model, buf, b, count, form, fused, accuracy, seed };
        let profiling = self.profiling;
        let (shards, grads) = (&mut self.shards[..count], &mut self.grads[..count]);
        if count == 1 || rayon::current_num_threads() == 1 {
            for (k, (shard, grads)) in shards.iter_mut().zip(grads).enumerate() {
                shard.outcome = job.run(k, shard, grads, profiling);
            }
        } else {
            shards.par_iter_mut().zip(grads.par_iter_mut()).enumerate().with_max_len(1).for_each(
                |(k, (shard, grads))| {
                    shard.outcome = job.run(k, shard, grads, profiling);
                },
            );
        }
        let mut loss = 0.0f64;
        let mut correct = 0.0;
        for shard in &mut self.shards[..count] {
            std::mem::replace(&mut shard.outcome, Ok(()))?;
            loss += f64::from(shard.loss) * shard.examples as f64;
            correct += shard.correct;
        }
        Ok(((loss / b as f64) as f32, correct))
    }

    /// Sets the gradients of `params` to the last step's shard gradients,
    /// each weighted by its share of the batch of `b`, added in shard order.
    pub(crate) fn sum_into(&mut self, params: &mut Params, b: usize) -> Result<()> {
        let used = self.used;
        for (scale, shard) in self.scales.iter_mut().zip(&self.shards[..used]) {
            *scale = shard.examples as f32 / b as f32;
        }
        params.set_grads_to_sum(&self.grads[..used], &self.scales[..used])?;
        Ok(())
    }

    /// The gradient work of the last step's first shard (every shard records
    /// the same ops).
    pub(crate) fn work(&self) -> BackwardWork {
        self.shards[0].work
    }

    /// Every shard's tape (the profiler collects their timings).
    pub(crate) fn tapes_mut(&mut self) -> impl Iterator<Item = &mut Tape> + '_ {
        self.shards.iter_mut().map(|s| &mut s.tape)
    }
}

impl Job<'_> {
    /// Shard `k`: examples `[k*b/count, (k+1)*b/count)` of the batch.
    fn run(&self, k: usize, shard: &mut Shard, grads: &mut Gradients, profiling: bool) -> Result<()> {
        let (lo, hi) = (k * self.b / self.count, (k + 1) * self.b / self.count);
        let n = hi - lo;
        shard.examples = n;
        if n != shard.tape_batch {
            // As `fit`'s own tape: the pool keeps buffers by exact length,
            // so a new shard size starts from a fresh tape.
            shard.tape = Tape::new();
            shard.tape.set_profiling(profiling);
            shard.tape_batch = n;
        }
        let buf = self.buf;
        let item = buf.item_len;
        let w = self.form.width();
        let tape = &mut shard.tape;
        tape.reset();
        grads.clear();
        let x = tape.input(TensorView::new(buf.shape(n)?, &buf.x[lo * item..hi * item])?)?;
        let out = self.model.forward(tape, x, self.fused, Shards::seed(self.seed, k))?;
        let (y, labels) = (&buf.y[(lo * w).min(buf.y.len())..], &buf.labels[lo.min(buf.labels.len())..]);
        let loss = self.model.loss_node_rows(tape, out, y, labels, n, self.form)?;
        shard.loss = tape.scalar(loss)?;
        shard.correct = 0.0;
        if self.accuracy {
            let c = self.model.compiled("fit")?;
            shard.correct = correct_of(c.outputs, c.logits, tape.value(out)?.data(), y, labels, n, self.form);
        }
        if shard.loss.is_finite() {
            tape.backward_into(loss, grads)?;
            shard.work = tape.backward_work();
        }
        // The tape shares the weights (no copy): released before the update.
        tape.reset();
        Ok(())
    }
}

//! `evaluate` and `predict`: Keras's inference calls, on the tape-free
//! engine beside this file (`infer.rs`). No tape is recorded; dropout is the
//! identity; the activation buffers are the model's cached [`Scratch`] (one
//! per worker of a batch-parallel pass, [`Lane`]), reused across calls.
//! `fit` runs its validation pass through [`Model::evaluate_on`].

use crate::batch::{check_data, correct_of, BatchBuf, Running};
use crate::built::BuiltLayer;
use crate::compile::Loss;
use crate::data::{Examples, TargetForm, XY};
use crate::infer::Scratch;
use crate::model::Model;
use crate::{Error, Result};
use convnet_autodiff::Params;
use convnet_kernels::conv::ConvAlgo;
use convnet_kernels::loss;
use convnet_tensor::{Shape, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One worker of a batch-parallel `evaluate` / `predict` pass: a rayon pool
/// of one thread, and the buffers its batches reuse. The model keeps its
/// lanes between calls ([`Model::lanes`]), so a warm pass allocates no
/// activation or batch buffer and starts no pool thread.
///
/// The lane's batches run inside its own one-thread pool, so the kernels
/// that split their work over rayon (Winograd's blocks, the GEMM) run their
/// fixed splits one after another on the lane's thread, with no hand-off to
/// and no wait for the other workers (a split nested in the global pool
/// instead let a waiting thread steal a whole other batch, and ran 3-6x
/// slower on the loaded machine); the fused convolutions and the pool run
/// on the calling thread anyway ([`Scratch::lane`]).
pub(crate) struct Lane {
    pool: rayon::ThreadPool,
    state: LaneState,
}

/// A lane's buffers.
struct LaneState {
    scratch: Scratch,
    buf: Option<BatchBuf>,
}

impl LaneState {
    /// The lane's scratch, and its batch buffers for
    /// `BatchBuf::new(item_shape, batch, form)` (reused when they fit).
    fn parts(&mut self, item_shape: &[usize], batch: usize, form: Option<TargetForm>) -> (&mut Scratch, &mut BatchBuf) {
        if !self.buf.as_ref().is_some_and(|b| b.fits(item_shape, batch, form)) {
            self.buf = Some(BatchBuf::new(item_shape, batch, form));
        }
        (&mut self.scratch, self.buf.as_mut().expect("just set"))
    }
}

impl Lane {
    fn new() -> Result<Lane> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "convnet-infer-lane".into())
            .build()
            .map_err(|e| Error::invalid("inference threads", e.to_string()))?;
        Ok(Lane { pool, state: LaneState { scratch: Scratch::lane(), buf: None } })
    }

    /// Runs batches `next.fetch_add(1) < count` on the lane's thread until
    /// none is left, or one fails (then the other lanes stop taking more).
    fn drain<T: Send>(
        &mut self,
        next: &AtomicUsize,
        count: usize,
        work: &(impl Fn(&mut LaneState, usize) -> Result<T> + Sync),
    ) -> Result<Vec<(usize, T)>> {
        let state = &mut self.state;
        self.pool.install(|| {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok(done);
                }
                match work(state, i) {
                    Ok(v) => done.push((i, v)),
                    Err(e) => {
                        next.store(count, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        })
    }
}

/// Runs `work(lane, i)` for batches `i` in `0..count` on as many lanes as
/// the current rayon pool has threads, each lane taking the next batch when
/// it finishes one; returns the results in batch order. The lanes come from
/// (and go back to) `free`; missing ones are made.
fn run_lanes<T: Send>(
    free: &Mutex<Vec<Lane>>,
    count: usize,
    work: impl Fn(&mut LaneState, usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let wanted = rayon::current_num_threads().min(count).max(1);
    let mut lanes = {
        let mut f = lock(free);
        let keep = f.len().saturating_sub(wanted);
        f.split_off(keep)
    };
    while lanes.len() < wanted {
        lanes.push(Lane::new()?);
    }
    let next = AtomicUsize::new(0);
    let per_lane: Vec<Result<Vec<(usize, T)>>> = std::thread::scope(|scope| {
        let (first, rest) = lanes.split_first_mut().expect("at least one lane");
        let (next, work) = (&next, &work);
        let others: Vec<_> = rest.iter_mut().map(|lane| scope.spawn(move || lane.drain(next, count, work))).collect();
        let mut all = vec![first.drain(next, count, work)];
        all.extend(others.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))));
        all
    });
    lock(free).extend(lanes);
    let mut out: Vec<Option<T>> = (0..count).map(|_| None).collect();
    for done in per_lane {
        for (i, v) in done? {
            out[i] = Some(v);
        }
    }
    Ok(out.into_iter().map(|v| v.expect("every batch ran: no lane failed")).collect())
}

/// A poisoned lock only means an earlier pass panicked: every buffer is
/// overwritten before use.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a pass of `batches` batches runs them concurrently, one per
/// worker (each batch on one thread), rather than one after another with
/// each kernel splitting its batch over the pool: with more than one batch
/// and more than one thread. No thread waits for another between layers,
/// and the two threads' batches never share a fork-join.
fn batch_parallel(batches: usize) -> bool {
    batches > 1 && rayon::current_num_threads() > 1
}

/// What a batch of an inference pass reads of the model: `Sync`, where
/// `Model` is not (its optimizer need only be `Send`).
#[derive(Clone, Copy)]
struct View<'a> {
    layers: &'a [BuiltLayer],
    params: &'a Params,
    algo: ConvAlgo,
}

impl View<'_> {
    fn of(model: &Model) -> View<'_> {
        View { layers: &model.layers, params: &model.params, algo: model.algo }
    }

    fn input_shape(&self) -> &[usize] {
        &self.layers[0].input
    }

    /// [`Model::infer`].
    fn infer<'s>(&self, s: &'s mut Scratch, x: &[f32], n: usize, logits: bool) -> Result<&'s [f32]> {
        crate::infer::run(self.layers, self.params, self.algo, s, x, n, logits)
    }
}

/// What scoring a batch reads of the model's [`Compiled`](crate::compile::Compiled).
#[derive(Clone, Copy)]
struct Scoring {
    loss: Loss,
    fused: bool,
    logits: bool,
    outputs: usize,
    form: TargetForm,
}

impl Scoring {
    /// Loss (summed, not averaged, over the batch) and correct predictions
    /// of examples `chunk` of `data`.
    fn batch(
        &self,
        m: View<'_>,
        s: &mut Scratch,
        buf: &mut BatchBuf,
        data: &dyn Examples,
        chunk: &[usize],
    ) -> Result<(f64, f64)> {
        let (form, k, b) = (self.form, self.outputs, chunk.len());
        buf.fill(data, chunk, Some(form))?;
        let y = m.infer(s, &buf.x[..b * buf.item_len], b, self.fused)?;
        buf.out.clear();
        buf.out.extend_from_slice(y);
        let out = &buf.out;
        let loss = match self.loss {
            Loss::CategoricalCrossentropy => s.cross_entropy(k, out, &buf.y[..b * k])?,
            Loss::SparseCategoricalCrossentropy => s.sparse_cross_entropy(k, out, &buf.labels[..b])?,
            Loss::BinaryCrossentropy if self.logits => loss::binary_cross_entropy_with_logits(out, &buf.y[..b * k])?,
            Loss::BinaryCrossentropy => loss::binary_cross_entropy(out, &buf.y[..b * k])?,
        };
        Ok((loss as f64 * b as f64, correct_of(k, self.logits, out, &buf.y, &buf.labels, b, form)))
    }
}

impl Model {
    /// Loss and accuracy over `indices` of `data` (all when `None`), on the
    /// tape-free inference path, in batches of `batch_size`.
    ///
    /// With several batches and threads, the batches run concurrently (see
    /// [`batch_parallel`]), each on one thread with its own [`Lane`]; every
    /// batch's outputs are the same bits either way (the plan's kernels do
    /// not depend on the thread count or split), and the per-batch sums are
    /// added in batch order, so the result is bit-identical for any thread
    /// count.
    pub(crate) fn evaluate_on(
        &self,
        data: &dyn Examples,
        indices: Option<&[usize]>,
        batch_size: usize,
    ) -> Result<(f64, f64)> {
        let c = self.compiled("fit or evaluate")?;
        let form = c.target_form();
        let score = Scoring { loss: c.loss, fused: c.fused, logits: c.logits, outputs: c.outputs, form };
        let (m, lanes) = (View::of(self), &self.lanes);
        let all: Vec<usize>;
        let idx = match indices {
            Some(i) => i,
            None => {
                all = (0..data.len()).collect();
                &all
            }
        };
        let bs = batch_size.max(1).min(idx.len().max(1));
        let count = idx.len().div_ceil(bs);
        let per_batch: Vec<(f64, f64)> = if batch_parallel(count) {
            run_lanes(lanes, count, |lane, i| {
                let chunk = &idx[i * bs..((i + 1) * bs).min(idx.len())];
                let (s, buf) = lane.parts(m.input_shape(), bs, Some(form));
                score.batch(m, s, buf, data, chunk)
            })?
        } else {
            let mut buf = BatchBuf::new(self.input_shape(), bs, Some(form));
            let mut s = self.scratch();
            idx.chunks(bs).map(|chunk| score.batch(m, &mut s, &mut buf, data, chunk)).collect::<Result<_>>()?
        };
        let mut run = Running::default();
        for ((loss, correct), chunk) in per_batch.into_iter().zip(idx.chunks(bs)) {
            run.loss += loss;
            run.correct += correct;
            run.seen += chunk.len();
        }
        Ok((run.loss(), run.accuracy()))
    }

    /// Test loss and accuracy of `x`, `y` in inference mode (Keras's
    /// `evaluate`), in batches of `batch_size`.
    pub fn evaluate(&self, x: &Tensor, y: &Tensor, batch_size: usize) -> Result<(f64, f64)> {
        self.evaluate_examples(&XY::new(x, y)?, batch_size)
    }

    /// [`Model::evaluate`] over any [`Examples`].
    pub fn evaluate_examples(&self, data: &dyn Examples, batch_size: usize) -> Result<(f64, f64)> {
        check_data(self.input_shape(), data, "evaluate")?;
        self.evaluate_on(data, None, batch_size)
    }

    /// The model's outputs for `x` (class probabilities after a softmax last
    /// layer), `[n, outputs]`, in inference mode, in batches of `batch_size`.
    pub fn predict(&self, x: &Tensor, batch_size: usize) -> Result<Tensor> {
        self.predict_examples(&XY::inputs(x), batch_size)
    }

    /// [`Model::predict`] over any [`Examples`] (targets, if any, are ignored).
    /// Several batches run concurrently as in `evaluate`, with the same bits.
    pub fn predict_examples(&self, data: &dyn Examples, batch_size: usize) -> Result<Tensor> {
        check_data(self.input_shape(), data, "predict")?;
        let n = data.len();
        let k: usize = self.output_shape().iter().product();
        let bs = batch_size.max(1).min(n);
        let mut out = Tensor::zeros(Shape::matrix(n, k));
        let idx: Vec<usize> = (0..n).collect();
        let (m, lanes) = (View::of(self), &self.lanes);
        let one = |s: &mut Scratch, buf: &mut BatchBuf, chunk: &[usize], out: &mut [f32]| -> Result<()> {
            let b = chunk.len();
            buf.fill(data, chunk, None)?;
            out.copy_from_slice(m.infer(s, &buf.x[..b * buf.item_len], b, false)?);
            Ok(())
        };
        let chunk_out = (bs * k).max(1);
        let count = n.div_ceil(bs);
        if batch_parallel(count) {
            // Each batch's rows behind their own (uncontended) lock.
            let outs: Vec<Mutex<&mut [f32]>> = out.data_mut().chunks_mut(chunk_out).map(Mutex::new).collect();
            run_lanes(lanes, count, |lane, i| {
                let chunk = &idx[i * bs..((i + 1) * bs).min(n)];
                let (s, buf) = lane.parts(m.input_shape(), bs, None);
                one(s, buf, chunk, &mut lock(&outs[i]))
            })?;
        } else {
            let mut buf = BatchBuf::new(self.input_shape(), bs, None);
            let mut s = self.scratch();
            for (out, chunk) in out.data_mut().chunks_mut(chunk_out).zip(idx.chunks(bs)) {
                one(&mut s, &mut buf, chunk, out)?;
            }
        }
        Ok(out)
    }
}

impl Model {
    /// Activation values per example: the input plus every layer's output
    /// (what [`Limits::max_activations`](crate::limits::Limits::max_activations) bounds). Multiply by the batch size
    /// and 4 bytes for one copy of a batch's activations.
    pub fn activations_per_example(&self) -> usize {
        let layers = self.layers();
        let input = crate::plan::elements(self.input_shape()).unwrap_or(usize::MAX);
        layers.iter().fold(input, |a, l| a.saturating_add(crate::plan::elements(&l.output).unwrap_or(usize::MAX)))
    }

    /// The largest batch size, at most `requested` and at least 1, whose
    /// inference activations (two buffers of the largest output per
    /// example, counted as twice the sum of all outputs) fit in
    /// `budget_bytes`.
    ///
    /// ```
    /// let model = convnet::mnist_convnet().build()?;
    /// assert_eq!(model.inference_batch(64, convnet::limits::INFERENCE_BATCH_BYTES), 64);
    /// assert_eq!(model.inference_batch(64, 1), 1);
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn inference_batch(&self, requested: usize, budget_bytes: u64) -> usize {
        let per_example = (self.activations_per_example() as u64).saturating_mul(8).max(1);
        let fits = usize::try_from(budget_bytes / per_example).unwrap_or(usize::MAX);
        requested.min(fits).max(1)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Loss, Metric, Model};
    use convnet_optim::RMSprop;
    use convnet_tensor::{Rng, Shape, Tensor};

    /// The chapter's model, compiled with `loss`, and `n` random images
    /// with one-hot (or, sparse, index) targets.
    fn setup(n: usize, loss: Loss) -> (Model, Tensor, Tensor) {
        let mut model = crate::mnist_convnet().build().unwrap();
        model.compile(RMSprop::default(), loss, &[Metric::Accuracy]).unwrap();
        let mut rng = Rng::new(7);
        let x = Tensor::uniform(Shape::nhwc(n, 28, 28, 1), 0.0, 1.0, &mut rng).unwrap();
        let labels: Vec<usize> = (0..n).map(|i| (i * 7 + i / 3) % 10).collect();
        let y = match loss {
            Loss::SparseCategoricalCrossentropy => {
                let v: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
                Tensor::from_slice(Shape::matrix(n, 1), &v).unwrap()
            }
            _ => {
                let mut v = vec![0.0; n * 10];
                labels.iter().enumerate().for_each(|(i, &l)| v[i * 10 + l] = 1.0);
                Tensor::from_slice(Shape::matrix(n, 10), &v).unwrap()
            }
        };
        (model, x, y)
    }

    /// `f(&model)` on a pool of `threads` threads (the model moves in and
    /// back: `&Model` is not `Send`, its optimizer need only be).
    fn on<T: Send>(threads: usize, model: &mut Option<Model>, f: impl FnOnce(&Model) -> T + Send) -> T {
        let m = model.take().unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (m, out) = pool.install(move || {
            let out = f(&m);
            (m, out)
        });
        *model = Some(m);
        out
    }

    /// `evaluate` and `predict` give the same bits on 1 thread (one batch
    /// after another, each kernel on the pool) as on 2 and 3 (batches
    /// concurrently, each in a lane on one thread), for batch sizes that
    /// leave a short last batch, twice in a row (the lanes' cached plans).
    #[test]
    fn evaluate_and_predict_are_bit_identical_for_any_thread_count() {
        for loss in [Loss::CategoricalCrossentropy, Loss::SparseCategoricalCrossentropy] {
            let (model, x, y) = setup(203, loss);
            let mut model = Some(model);
            for bs in [64, 7, 1, 500] {
                let mut bits = |t: usize| {
                    on(t, &mut model, |model| {
                        let (l, a) = model.evaluate(&x, &y, bs).unwrap();
                        let p: Vec<u32> = model.predict(&x, bs).unwrap().data().iter().map(|v| v.to_bits()).collect();
                        (l.to_bits(), a.to_bits(), p)
                    })
                };
                let one = bits(1);
                for t in [2, 3, 2] {
                    assert_eq!(bits(t), one, "{loss:?} batch {bs} on {t} threads");
                }
            }
        }
    }

    /// The per-batch outputs of a batch-parallel `predict` are the tape's
    /// forward pass on that batch, bit for bit (the plan in a lane is
    /// bit-identical to it), the short last batch included.
    #[test]
    fn batch_parallel_predict_equals_the_tape_per_batch() {
        let (model, x, _) = setup(150, Loss::CategoricalCrossentropy);
        let mut model = Some(model);
        let got = on(2, &mut model, |model| model.predict(&x, 64).unwrap());
        let model = model.unwrap();
        let got: Vec<u32> = got.data().iter().map(|v| v.to_bits()).collect();
        let mut want = Vec::new();
        for chunk in x.data().chunks(64 * 784) {
            let b = chunk.len() / 784;
            let xb = Tensor::from_slice(Shape::nhwc(b, 28, 28, 1), chunk).unwrap();
            let mut tape = convnet_autodiff::Tape::inference();
            let v = tape.input(xb.view()).unwrap();
            let y = model.forward(&mut tape, v, false, 0).unwrap();
            want.extend(tape.value(y).unwrap().data().iter().map(|v| v.to_bits()));
        }
        assert_eq!(got, want);
    }
}

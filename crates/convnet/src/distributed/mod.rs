//! Data-parallel training: the same model on every rank of a process group,
//! each rank computing the gradient of its share of every batch, the shares
//! summed so that every rank applies the same update.
//!
//! [`Model::fit_examples`](crate::Model::fit_examples) runs data-parallel when
//! [`FitOptions::distributed`](crate::FitOptions::distributed) holds a
//! [`Collective`]: the communication a group of ranks offers. The `mpi`
//! feature provides one over MPI (`mpi::MpiGroup`, run under `mpirun`);
//! anything else that can sum buffers and gather bytes across processes or
//! threads can implement the trait.
//!
//! **One step.** Every rank holds the same model (same seed: checked at the
//! start, see below) and draws the same seeded shuffle, so every rank knows
//! the global batch. Rank `r` of `W` takes examples `[r*b/W, (r+1)*b/W)` of
//! a batch of `b`, runs the ordinary deterministic forward and backward pass
//! on them (the gradient of the mean loss over its share), scales that
//! gradient by `share/b`, and the scaled gradients of the trainable
//! parameters (frozen ones are not sent), with the share's loss sum, correct
//! count and size appended, are summed over the ranks **in rank order**
//! ([`Collective::sum_in_rank_order`]): every element is
//! `((g_0 + g_1) + g_2) + ...`, whatever the transport, so every rank gets the
//! same bits and applies the identical optimizer update: the weights stay
//! bit-identical on every rank, and a run is deterministic for a seed and a
//! world size. (An `MPI_Allreduce` would not promise that: its reduction
//! order is the implementation's choice.) A rank whose share of a short last
//! batch is empty computes one example and counts it with weight 0, so that
//! every rank takes part in every sum.
//!
//! **Against one process.** With batches whose size the world size divides
//! into powers of two (64 over 2 ranks), the per-example scale (`1/32`, then
//! `x 0.5`) is exact, and the only difference from a one-process step is the
//! order of the sums over the batch inside the backward pass: the two runs
//! agree to float rounding, which grows over steps as any perturbation of
//! training does (the tests bound it). Dropout masks and random augmentation
//! are drawn per rank from the step's seed mixed with the rank (rank 0 keeps
//! the one-process seed), so those runs are deterministic for a seed and
//! world size but differ between world sizes.
//!
//! **Validation** is split into contiguous blocks, one per rank, evaluated
//! locally and the loss and correct sums added in rank order. Progress is
//! printed by rank 0 only (other ranks are silent); callbacks run on every
//! rank with the same, global, logs, so a callback that stops training stops
//! every rank at the same batch. Give callbacks that write files to rank 0
//! only.
//!
//! **Start.** Before the first step the ranks compare digests of the model
//! (architecture, trainable flags, weights, loss, optimizer), of the options
//! (seed, batch size, epochs, shuffle, validation) and of the data (its size
//! and a sample of up to [`DATA_DIGEST_SAMPLES`] examples with their
//! targets); a rank that differs is an error on every rank, naming what
//! differs.

#[cfg(feature = "mpi")]
pub mod mpi;

use crate::data::{Examples, TargetForm};
use crate::model::Model;
use crate::{Error, Result};
use convnet_autodiff::Params;

/// The communication a group of ranks (processes or threads) offers to
/// data-parallel training. Every rank must make the same calls in the same
/// order (they are collective); a call that cannot complete (a rank died)
/// must return an `Err` or end the process, never hang forever.
pub trait Collective {
    /// This rank's index, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by the element-wise sum of every rank's
    /// `buf` (the same length on every rank), added **in rank order**:
    /// element `i` becomes `((x0[i] + x1[i]) + x2[i]) + ...` exactly, so every
    /// rank gets the same bits whatever the transport.
    fn sum_in_rank_order(&mut self, buf: &mut [f32]) -> Result<()>;
    /// Every rank's `local` bytes (the same length on every rank),
    /// concatenated in rank order.
    fn all_gather(&mut self, local: &[u8]) -> Result<Vec<u8>>;
}

/// How many examples, spread evenly over the training data, the start-up
/// digest reads (with the data's size): enough to catch a different file,
/// order or preprocessing, cheap next to one epoch.
pub const DATA_DIGEST_SAMPLES: usize = 256;

/// `f64` sums of every rank's `local` (the same length on every rank), added
/// in rank order, on every rank.
pub fn sum_f64_in_rank_order(group: &mut dyn Collective, local: &[f64]) -> Result<Vec<f64>> {
    let bytes: Vec<u8> = local.iter().flat_map(|v| v.to_le_bytes()).collect();
    let all = group.all_gather(&bytes)?;
    let world = group.size();
    if all.len() != bytes.len() * world {
        return Err(Error::Distributed(format!(
            "all_gather returned {} bytes, expected {} ranks x {}",
            all.len(),
            world,
            bytes.len()
        )));
    }
    let value = |rank: usize, i: usize| {
        let at = (rank * local.len() + i) * 8;
        f64::from_le_bytes(all[at..at + 8].try_into().expect("8 bytes"))
    };
    Ok((0..local.len()).map(|i| (1..world).fold(value(0, i), |s, r| s + value(r, i))).collect())
}

/// Checks that every rank reached this point without an error: every rank
/// passes its own outcome of a step that can fail on one rank alone (reading
/// its data); when any rank failed, every rank returns an `Err` naming the
/// failed ranks and the first failure's message (up to 400 bytes of it), so no
/// rank waits forever for one that gave up.
pub fn agree<T>(group: &mut dyn Collective, what: &str, outcome: std::result::Result<T, String>) -> Result<T> {
    const MESSAGE: usize = 400;
    let mut local = vec![0u8; 1 + 2 + MESSAGE];
    if let Err(e) = &outcome {
        local[0] = 1;
        let text = truncate_utf8(e, MESSAGE);
        local[1..3].copy_from_slice(&(text.len() as u16).to_le_bytes());
        local[3..3 + text.len()].copy_from_slice(text.as_bytes());
    }
    let all = group.all_gather(&local)?;
    let mut failed = Vec::new();
    let mut first = None;
    for (rank, chunk) in all.chunks_exact(local.len()).enumerate() {
        if chunk[0] != 0 {
            failed.push(rank.to_string());
            if first.is_none() {
                let len = usize::from(u16::from_le_bytes([chunk[1], chunk[2]])).min(MESSAGE);
                first = Some((rank, String::from_utf8_lossy(&chunk[3..3 + len]).into_owned()));
            }
        }
    }
    match (outcome, first) {
        (Ok(v), None) => Ok(v),
        (Err(e), _) if failed.len() == 1 => Err(Error::Distributed(format!("{what}: {e}"))),
        (_, first) => {
            let (rank, message) = first.expect("a failed rank");
            Err(Error::Distributed(format!(
                "{what} failed on rank{} {} of {}; rank {rank}: {message}",
                if failed.len() > 1 { "s" } else { "" },
                failed.join(", "),
                group.size()
            )))
        }
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// FNV-1a, 64 bits: the digests compared between ranks (a check against
/// mistakes, not an adversary).
#[derive(Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    pub(crate) fn floats(&mut self, values: &[f32]) -> &mut Self {
        for v in values {
            self.bytes(&v.to_bits().to_le_bytes());
        }
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// What the ranks must agree on before the first step, as named digests.
pub(crate) struct StartDigests(pub(crate) Vec<(&'static str, u64)>);

impl StartDigests {
    /// The digests of `model`, the fit options that shape the run, and a
    /// sample of `data`.
    pub(crate) fn of(model: &Model, data: &dyn Examples, form: TargetForm, options: &[(&str, u64)]) -> Result<Self> {
        let mut arch = Fnv::new();
        arch.bytes(model.to_json().as_bytes());
        for l in model.layers() {
            arch.bytes(l.name.as_bytes()).u64(u64::from(l.trainable));
        }
        if let Ok(c) = model.compiled("fit") {
            arch.bytes(c.loss.name().as_bytes()).bytes(c.optimizer_name.as_bytes());
        }
        let mut weights = Fnv::new();
        for (_, _, value, _) in model.params().iter() {
            weights.floats(value.data());
        }
        let mut opts = Fnv::new();
        for (name, v) in options {
            opts.bytes(name.as_bytes()).u64(*v);
        }
        let n = data.len();
        let k = n.min(DATA_DIGEST_SAMPLES);
        let idx: Vec<usize> = (0..k).map(|i| i * n / k.max(1)).collect();
        let item: usize = data.input_shape().iter().product();
        let x_len = k
            .checked_mul(item)
            .ok_or_else(|| Error::Data(format!("digest sample: {k} examples of {item} values overflow")))?;
        let mut x = vec![0.0; x_len];
        let mut y = vec![0.0; k * form.width()];
        let targets = data.has_targets();
        data.gather(&idx, &mut x, if targets { Some((&mut y, form)) } else { None })?;
        let mut sample = Fnv::new();
        sample.u64(n as u64).floats(&x).floats(&y);
        Ok(StartDigests(vec![
            ("model architecture", arch.finish()),
            ("initial weights", weights.finish()),
            ("fit options (seed, batch size, epochs, shuffle, validation)", opts.finish()),
            ("training data (size and sampled examples)", sample.finish()),
        ]))
    }

    /// `Err` on every rank when any rank's digests differ from rank 0's,
    /// naming what differs and where.
    pub(crate) fn check(&self, group: &mut dyn Collective) -> Result<()> {
        let local: Vec<u8> = self.0.iter().flat_map(|(_, d)| d.to_le_bytes()).collect();
        let all = group.all_gather(&local)?;
        let digest = |rank: usize, i: usize| {
            let at = rank * local.len() + i * 8;
            u64::from_le_bytes(all[at..at + 8].try_into().expect("8 bytes"))
        };
        let mut differ = Vec::new();
        for (i, (name, _)) in self.0.iter().enumerate() {
            let ranks: Vec<String> =
                (1..group.size()).filter(|&r| digest(r, i) != digest(0, i)).map(|r| r.to_string()).collect();
            if !ranks.is_empty() {
                differ.push(format!("{name} (rank {} against rank 0)", ranks.join(", ")));
            }
        }
        if differ.is_empty() {
            Ok(())
        } else {
            Err(Error::Distributed(format!(
                "the ranks do not start from the same run: {} differ; every rank must be given the same model, \
                 --seed, options and data",
                differ.join("; ")
            )))
        }
    }
}

/// The data-parallel state of one `fit`: the group, where each trainable
/// parameter's gradient sits in the summed buffer, and the buffer.
pub(crate) struct DataParallel<'g> {
    group: &'g mut dyn Collective,
    /// Per parameter index: the range of its gradient in `flat`, `None` for
    /// a frozen parameter (not sent).
    ranges: Vec<Option<std::ops::Range<usize>>>,
    /// Trainable gradients, then loss sum, correct count and examples.
    flat: Vec<f32>,
    grads_len: usize,
}

impl<'g> DataParallel<'g> {
    /// Lays out the trainable parameters of `params` (`frozen[i]` marks the
    /// ones that are not) in one buffer.
    pub(crate) fn new(group: &'g mut dyn Collective, params: &Params, frozen: &[bool]) -> Result<Self> {
        if group.size() == 0 || group.rank() >= group.size() {
            return Err(Error::Distributed(format!("rank {} of a group of {}", group.rank(), group.size())));
        }
        let mut ranges = Vec::with_capacity(params.len());
        let mut offset = 0usize;
        for (id, _, value, _) in params.iter() {
            if frozen.get(id.index()).copied().unwrap_or(false) {
                ranges.push(None);
                continue;
            }
            let end = offset
                .checked_add(value.data().len())
                .ok_or_else(|| Error::Distributed("the gradient buffer size overflows".into()))?;
            ranges.push(Some(offset..end));
            offset = end;
        }
        let total = offset.checked_add(3).ok_or_else(|| Error::Distributed("gradient buffer overflows".into()))?;
        Ok(DataParallel { group, ranges, flat: vec![0.0; total], grads_len: offset })
    }

    /// This rank.
    pub(crate) fn rank(&self) -> usize {
        self.group.rank()
    }

    /// Compares the start digests of every rank ([`StartDigests::check`]).
    pub(crate) fn check_start(&mut self, digests: &StartDigests) -> Result<()> {
        digests.check(self.group)
    }

    /// This rank's block of `items` (contiguous, `[r*n/W, (r+1)*n/W)`).
    pub(crate) fn block<'s>(&self, items: &'s [usize]) -> &'s [usize] {
        let (r, w, n) = (self.group.rank(), self.group.size(), items.len());
        // n <= usize::MAX / w for any batch or data set that fits in memory;
        // u128 keeps the product exact regardless.
        let at = |k: usize| ((k as u128 * n as u128) / w as u128) as usize;
        &items[at(r)..at(r + 1)]
    }

    /// This rank's share of a global batch and how many of its examples
    /// count: an empty share becomes the batch's first example with weight 0
    /// (every rank takes part in every sum).
    pub(crate) fn shard<'s>(&self, batch: &'s [usize]) -> (&'s [usize], usize) {
        let own = self.block(batch);
        if own.is_empty() {
            (&batch[..1.min(batch.len())], 0)
        } else {
            (own, own.len())
        }
    }

    /// The seed of dropout and augmentation draws on this rank: rank 0 keeps
    /// the step's seed (so one rank is the one-process run), others mix
    /// their rank in (so no two ranks draw the same masks).
    pub(crate) fn step_seed(&self, seed: u64) -> u64 {
        seed ^ (self.group.rank() as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25)
    }

    /// Sums the share's scaled gradients (of the trainable parameters of
    /// `params`), loss sum and correct count over the ranks; returns the
    /// global batch's `(loss sum, correct count, examples)`. `loss` is the
    /// share's mean loss (its gradients are zero, or absent, when it is not
    /// finite: the global loss is then not finite either), `counted` the
    /// share's examples that count, `global` the batch size.
    pub(crate) fn reduce_step(
        &mut self,
        params: &Params,
        counted: usize,
        global: usize,
        loss: f32,
        correct: f64,
    ) -> Result<(f64, f64, usize)> {
        let scale = if loss.is_finite() { counted as f32 / global as f32 } else { 0.0 };
        for ((id, _, _, _), range) in params.iter().zip(&self.ranges) {
            let Some(range) = range else { continue };
            let dst = &mut self.flat[range.clone()];
            match params.grad(id) {
                Ok(g) if g.data().len() == dst.len() && scale != 0.0 => {
                    for (d, &s) in dst.iter_mut().zip(g.data()) {
                        *d = s * scale;
                    }
                }
                _ => dst.fill(0.0),
            }
        }
        let g = self.grads_len;
        self.flat[g] = if counted == 0 { 0.0 } else { loss * counted as f32 };
        self.flat[g + 1] = if counted == 0 { 0.0 } else { correct as f32 };
        self.flat[g + 2] = counted as f32;
        self.group.sum_in_rank_order(&mut self.flat)?;
        let examples = self.flat[g + 2];
        if examples != global as f32 {
            return Err(Error::Distributed(format!(
                "the ranks' shares of a batch of {global} add up to {examples}: the ranks disagree on the batches"
            )));
        }
        Ok((f64::from(self.flat[g]), f64::from(self.flat[g + 1]), global))
    }

    /// The summed gradient of parameter `index` (after [`Self::reduce_step`]),
    /// `None` for a frozen one.
    pub(crate) fn gradient(&self, index: usize) -> Option<&[f32]> {
        self.ranges.get(index)?.as_ref().map(|r| &self.flat[r.clone()])
    }

    /// The name of the first parameter whose summed gradient holds a NaN or
    /// an infinity, and that value.
    pub(crate) fn non_finite_gradient(&self, params: &Params) -> Option<String> {
        params.iter().zip(&self.ranges).find_map(|((_, name, _, _), range)| {
            let r = range.as_ref()?;
            convnet_tensor::first_non_finite(&self.flat[r.clone()]).map(|v| format!("the gradient of {name} holds {v}"))
        })
    }

    /// The global `(mean loss, accuracy)` of a validation pass from this
    /// rank's `(mean loss, accuracy)` over `count` examples.
    pub(crate) fn reduce_validation(&mut self, local: (f64, f64), count: usize) -> Result<(f64, f64)> {
        let n = count as f64;
        let sums = sum_f64_in_rank_order(self.group, &[local.0 * n, local.1 * n, n])?;
        let total = sums[2].max(1.0);
        Ok((sums[0] / total, sums[1] / total))
    }
}

impl Model {
    /// The data-parallel state of a `fit` over `group`, after checking that
    /// every rank starts from the same model, options and data.
    pub(crate) fn start_data_parallel<'g>(
        &self,
        group: &'g mut dyn Collective,
        data: &dyn Examples,
        options: &crate::FitOptions<'_>,
        frozen: &[bool],
        form: TargetForm,
    ) -> Result<DataParallel<'g>> {
        let fields = [
            ("seed", options.seed),
            ("batch_size", options.batch_size as u64),
            ("epochs", options.epochs as u64),
            ("shuffle", u64::from(options.shuffle)),
            ("validation_split", options.validation_split.to_bits()),
            ("validation_data", options.validation_data.map_or(u64::MAX, |v| v.len() as u64)),
            ("check_finite", u64::from(options.check_finite)),
            ("conv_algo", Fnv::new().bytes(self.conv_algo().name().as_bytes()).finish()),
        ];
        let digests = StartDigests::of(self, data, form, &fields)?;
        let mut dp = DataParallel::new(group, &self.params, frozen)?;
        dp.check_start(&digests)?;
        Ok(dp)
    }
}

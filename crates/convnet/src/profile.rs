//! `fit`'s profiler: where a training step's time goes, per layer and pass,
//! as a table (like `torch.profiler`'s `key_averages()`) and as JSON.
//!
//! Turned on by [`FitOptions::profile`](crate::FitOptions::profile); the
//! result is [`History::profile`](crate::History::profile). The tape times
//! every kernel call of every op it records (`convnet_autodiff::Profile`,
//! under the index of the layer that recorded it), and `fit` times what
//! lies around the tape: gathering the batch (data loading), the optimizer
//! update, the finite checks, and in a data-parallel fit the gradient sum
//! across ranks (which includes waiting for the slowest rank). What is left of the measured step is the
//! framework's overhead: recording the tape, copying the parameters onto it,
//! routing gradients, the metrics and the progress bar.
//!
//! A step split into shards ([`FitOptions::shards`](crate::FitOptions::shards)
//! above 1) times every shard's kernel calls on the worker that ran
//! them: a layer's row counts `shards` calls per step, and as the shards run
//! at the same time on different workers, the layer rows add up to about
//! `shards` times the part of the step they cover, so the rows' shares can
//! add up to more than 1 and `framework_overhead` (what the step's wall time
//! leaves over, at least 0) is then 0. With `shards: 1` every row is wall
//! time and the shares add up to 1.
//!
//! The first step of the fit is not counted: it allocates the tape's
//! buffers and fills the caches, which no later step repeats. When off, the
//! tape reads no clock and `fit` makes one branch per step.

use crate::model::Model;
use convnet_autodiff::{Profile, Tape};
use std::fmt;
use std::time::{Duration, Instant};

/// One row of a [`ProfileReport`]: a layer's pass, or one of the step's own
/// costs (layer `(step)`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRow {
    /// The layer's name (`conv2d_1`, ...), `loss`, or `(step)` for the
    /// optimizer update, data loading, finite checks, the data-parallel
    /// gradient sum and framework overhead.
    pub layer: String,
    /// `forward`, `backward_data`, `backward_filter`, `backward_bias`,
    /// `backward_activation`, `optimizer_update`, `data_loading`,
    /// `finite_checks`, `gradient_sum` (data-parallel `fit` only: the
    /// gradients summed across ranks, waiting for the slowest included) or
    /// `framework_overhead`.
    pub pass: &'static str,
    /// The kernel that ran: a conv algorithm as `Auto` resolved it, or the op.
    pub kernel: String,
    /// Calls over the profiled steps (a layer's: one per shard per step).
    pub calls: u64,
    /// Their total time, in seconds.
    pub total_s: f64,
    /// Their mean time, in seconds.
    pub mean_s: f64,
    /// Their share of the profiled steps' time, in `[0, 1]`.
    pub share: f64,
    /// Throughput in GFLOP/s (direct-convolution FLOPs for a conv, whatever
    /// algorithm ran), where FLOPs are counted.
    pub gflops: Option<f64>,
}

/// The profile of a [`Model::fit`]: every row, with the steps it covers.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileReport {
    /// Steps profiled (the fit's first step is not).
    pub steps: u64,
    /// Their total time, in seconds (every row's `total_s` adds up to it).
    pub total_s: f64,
    /// rayon threads during the fit.
    pub threads: usize,
    /// The rows: each layer's passes in layer order, then the step's own.
    pub rows: Vec<ProfileRow>,
}

const STEP: &str = "(step)";

impl ProfileReport {
    /// Each pass's total over all layers, `(pass, seconds, share)`, largest first.
    pub fn by_pass(&self) -> Vec<(&'static str, f64, f64)> {
        let mut out: Vec<(&'static str, f64, f64)> = Vec::new();
        for r in &self.rows {
            match out.iter_mut().find(|p| p.0 == r.pass) {
                Some(p) => {
                    p.1 += r.total_s;
                    p.2 += r.share;
                }
                None => out.push((r.pass, r.total_s, r.share)),
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// The report as JSON: `{"steps", "total_s", "mean_step_s", "threads",
    /// "rows": [{"layer", "pass", "kernel", "calls", "total_s", "mean_s",
    /// "share", "gflops"}], "passes": [{"pass", "total_s", "share"}]}`
    /// (`gflops` is `null` where FLOPs are not counted).
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "layer": r.layer, "pass": r.pass, "kernel": r.kernel, "calls": r.calls,
                    "total_s": r.total_s, "mean_s": r.mean_s, "share": r.share, "gflops": r.gflops,
                })
            })
            .collect();
        let passes: Vec<serde_json::Value> = self
            .by_pass()
            .into_iter()
            .map(|(p, t, s)| serde_json::json!({"pass": p, "total_s": t, "share": s}))
            .collect();
        serde_json::json!({
            "steps": self.steps,
            "total_s": self.total_s,
            "mean_step_s": if self.steps > 0 { self.total_s / self.steps as f64 } else { 0.0 },
            "threads": self.threads,
            "rows": rows,
            "passes": passes,
        })
    }
}

impl fmt::Display for ProfileReport {
    /// The table: one line per row, then the totals per pass.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mean_ms = if self.steps > 0 { 1e3 * self.total_s / self.steps as f64 } else { 0.0 };
        writeln!(
            f,
            "Profile: {} steps (the first step is not counted), {:.3} s, {mean_ms:.3} ms per step, {} threads",
            self.steps, self.total_s, self.threads
        )?;
        let lw = self.rows.iter().map(|r| r.layer.len()).max().unwrap_or(5).max(5);
        let kw = self.rows.iter().map(|r| r.kernel.len()).max().unwrap_or(6).max(6);
        writeln!(
            f,
            "{:<lw$}  {:<19}  {:<kw$}  {:>7}  {:>10}  {:>10}  {:>6}  {:>8}",
            "Layer", "Pass", "Kernel", "Calls", "Total (s)", "Mean (ms)", "Share", "GFLOP/s"
        )?;
        writeln!(f, "{}", "-".repeat(lw + kw + 75))?;
        for r in &self.rows {
            let gflops = r.gflops.map_or_else(|| "-".to_string(), |g| format!("{g:.1}"));
            writeln!(
                f,
                "{:<lw$}  {:<19}  {:<kw$}  {:>7}  {:>10.3}  {:>10.4}  {:>5.1}%  {:>8}",
                r.layer,
                r.pass,
                r.kernel,
                r.calls,
                r.total_s,
                1e3 * r.mean_s,
                100.0 * r.share,
                gflops
            )?;
        }
        writeln!(f, "{}", "-".repeat(lw + kw + 75))?;
        for (pass, total, share) in self.by_pass() {
            writeln!(
                f,
                "{:<lw$}  {pass:<19}  {:<kw$}  {:>7}  {total:>10.3}  {:>10}  {:>5.1}%",
                "total",
                "",
                "",
                "",
                100.0 * share
            )?;
        }
        Ok(())
    }
}

/// What `fit` keeps while profiling: the tape's timings merged across tapes
/// (a smaller last batch gets a fresh tape), and the step's own timings.
#[derive(Debug)]
pub(crate) struct StepProfiler {
    kernels: Profile,
    steps: u64,
    counting: bool,
    started: Option<Instant>,
    data: Duration,
    update: Duration,
    checks: Duration,
    /// Data-parallel only: summing the gradients across ranks.
    sum: Duration,
    total: Duration,
    optimizer: &'static str,
}

impl StepProfiler {
    pub(crate) fn new(tape: &mut Tape, optimizer: &'static str) -> Self {
        tape.set_profiling(true);
        StepProfiler {
            kernels: Profile::default(),
            steps: 0,
            counting: false,
            started: None,
            data: Duration::ZERO,
            update: Duration::ZERO,
            checks: Duration::ZERO,
            sum: Duration::ZERO,
            total: Duration::ZERO,
            optimizer,
        }
    }

    /// A step begins (before its batch is gathered).
    pub(crate) fn begin(&mut self) {
        self.started = Some(Instant::now());
    }

    /// Adds the time since `since` to data loading (`what` 0), the optimizer
    /// update (1), the finite checks (2) or the data-parallel gradient sum (3).
    pub(crate) fn add(&mut self, what: u8, since: Instant) {
        if !self.counting {
            return;
        }
        let d = since.elapsed();
        match what {
            0 => self.data += d,
            1 => self.update += d,
            2 => self.checks += d,
            _ => self.sum += d,
        }
    }

    /// Moves the timings of another tape of the step in progress (a shard's)
    /// over; call before [`StepProfiler::end`].
    pub(crate) fn absorb(&mut self, tape: &mut Tape) {
        if let Some(p) = tape.profile_mut() {
            if self.counting && self.started.is_some() {
                self.kernels.merge(p);
            }
            p.clear();
        }
    }

    /// A step ended: counts it (or, after the first, starts counting) and
    /// moves the tape's timings over.
    pub(crate) fn end(&mut self, tape: &mut Tape) {
        if let Some(t) = self.started.take() {
            if self.counting {
                self.total += t.elapsed();
                self.steps += 1;
                if let Some(p) = tape.profile() {
                    self.kernels.merge(p);
                }
            }
        }
        self.counting = true;
        if let Some(p) = tape.profile_mut() {
            p.clear();
        }
    }

    /// The report, with layer names from `model`.
    pub(crate) fn report(&self, model: &Model) -> ProfileReport {
        let total_s = self.total.as_secs_f64();
        let share = |s: f64| if total_s > 0.0 { s / total_s } else { 0.0 };
        let mut entries: Vec<_> = self.kernels.entries().to_vec();
        entries.sort_by_key(|e| (e.scope, e.pass));
        let layers = model.layers();
        let mut rows: Vec<ProfileRow> = entries
            .iter()
            .map(|e| {
                let t = e.total.as_secs_f64();
                ProfileRow {
                    layer: layers.get(e.scope as usize).map_or_else(|| "loss".to_string(), |l| l.name.clone()),
                    pass: e.pass.name(),
                    kernel: e.kernel.to_string(),
                    calls: e.calls,
                    total_s: t,
                    mean_s: t / e.calls.max(1) as f64,
                    share: share(t),
                    gflops: (e.flops > 0 && t > 0.0).then(|| e.flops as f64 / t / 1e9),
                }
            })
            .collect();
        let kernels_s: f64 = rows.iter().map(|r| r.total_s).sum();
        let own = [
            ("optimizer_update", self.optimizer, self.update.as_secs_f64()),
            ("data_loading", "batch", self.data.as_secs_f64()),
            ("finite_checks", "check_finite", self.checks.as_secs_f64()),
            ("gradient_sum", "collective", self.sum.as_secs_f64()),
        ];
        let own_s: f64 = own.iter().map(|o| o.2).sum();
        let overhead = (total_s - kernels_s - own_s).max(0.0);
        for (pass, kernel, t) in own.into_iter().chain([("framework_overhead", "tape", overhead)]) {
            if t == 0.0 && (pass == "finite_checks" || pass == "gradient_sum") {
                continue;
            }
            rows.push(ProfileRow {
                layer: STEP.to_string(),
                pass,
                kernel: kernel.to_string(),
                calls: self.steps,
                total_s: t,
                mean_s: t / self.steps.max(1) as f64,
                share: share(t),
                gflops: None,
            });
        }
        ProfileReport { steps: self.steps, total_s, threads: rayon::current_num_threads(), rows }
    }
}

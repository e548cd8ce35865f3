//! `convnet bench step`: the time of one training step (forward, backward,
//! optimizer update, exactly as `fit` runs it) or, with `--inference`, one
//! tape-free forward pass (`predict`), of any model on random inputs.
//!
//! The inputs are uniform in [0, 1) (speed does not depend on the values),
//! one batch of `--batch-size` of the model's input shape, with random
//! labels in the loss's form. Training runs `fit` with one batch per epoch,
//! the default RMSprop and the loss the last layer implies (as `train`
//! would), and times each step from one batch's end to the next (the first
//! `--warm-up` steps are not counted); inference times `predict` calls. The
//! median over `--steps` (at least 20) is printed with images/s.

use super::models;
use super::CliResult;
use clap::Args;
use convnet::limits::{Limits, ENV_MAX_BENCH_BYTES};
use convnet::optimizers::RMSprop;
use convnet::weights::LoadOptions;
use convnet::{Activation, FitOptions, Loss, Metric, OnBatchEnd, Verbose};
use convnet_kernels::conv::ConvAlgo;
use convnet_tensor::{Rng, Shape, Tensor};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct StepArgs {
    /// The model: a built-in (mnist, small-data, vgg16), an architecture JSON, or a model file.
    #[arg(long, value_name = "FILE|NAME")]
    model: String,
    /// The input shape H,W,C (default: the model's).
    #[arg(long, value_name = "H,W,C", value_parser = parse_shape3)]
    input_shape: Option<[usize; 3]>,
    /// Examples per step.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch_size: u64,
    /// Time the tape-free forward pass (predict) instead of a training step.
    #[arg(long)]
    inference: bool,
    /// Print {"median_s": .., "images_per_s": ..} (and the details) as one JSON line; with
    /// --profile the profile goes inside it, under "profile".
    #[arg(long)]
    json: bool,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(20..=100_000))]
    steps: u64,
    /// Untimed steps first (buffers, caches, the thread pool).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    warm_up: u64,
    /// Convolution algorithm (as `train --algo`).
    #[arg(long, default_value = "auto", value_parser = super::parse_algo)]
    algo: ConvAlgo,
    /// Seed of the weights, the inputs and the labels.
    #[arg(long, default_value_t = convnet::DEFAULT_SEED)]
    seed: u64,
    /// Freeze every layer before this one (the book's fine-tuning: `block5_conv1`); frozen layers
    /// cost a forward pass only.
    #[arg(long, value_name = "LAYER")]
    trainable_from: Option<String>,
    /// Split each training step's batch into this many shards, one per worker (default 2; 1: one tape,
    /// every kernel call split over the threads); results do not depend on the thread count.
    #[arg(long, default_value_t = convnet::DEFAULT_SHARDS as u64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    shards: u64,
    #[command(flatten)]
    profile: super::profile::ProfileArgs,
}

fn parse_shape3(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s.split(',').filter_map(|p| p.trim().parse::<usize>().ok()).collect();
    match v[..] {
        [h, w, c] if h > 0 && w > 0 && c > 0 && s.split(',').count() == 3 => Ok([h, w, c]),
        _ => Err(format!("expected three positive integers H,W,C, got {s:?}")),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: StepArgs, limits: Limits) -> CliResult<()> {
    if a.inference && a.profile.enabled() {
        return Err(
            super::UsageError("--profile and --profile-json profile training steps, not --inference".into()).into()
        );
    }
    a.profile.check()?;
    let opts = LoadOptions { limits, allow_non_finite: true };
    let spec = models::resolve(&a.model, &opts)?;
    let mut model = spec.build(a.input_shape, a.seed, &opts)?;
    model.set_conv_algo(a.algo);
    if let Some(name) = &a.trainable_from {
        model.set_trainable_from(name)?;
    }
    let n = usize::try_from(a.batch_size)?;
    let shape = model.input_shape().to_vec();
    let item: usize = shape.iter().product();
    let outputs: usize = model.output_shape().iter().product();
    // The buffers a step holds: the inputs, and the activations (their
    // values, gradients and the tape's masks when training: three copies).
    let copies: u64 = if a.inference { 2 } else { 3 };
    let bytes = (model.activations_per_example() as u64)
        .checked_mul(copies)
        .and_then(|v| v.checked_add(item as u64))
        .and_then(|v| v.checked_mul(n as u64))
        .and_then(|v| v.checked_mul(4))
        .unwrap_or(u64::MAX);
    if bytes > limits.max_bench_bytes {
        return Err(format!(
            "--batch-size {n} at input {shape:?} needs about {bytes} bytes of activations, more than the limit of {} \
             ({ENV_MAX_BENCH_BYTES}; docs/LIMITS.md)",
            limits.max_bench_bytes
        )
        .into());
    }
    let mut rng = Rng::new(a.seed);
    let x_values: Vec<f32> = (0..n * item).map(|_| rng.uniform(0.0, 1.0)).collect();
    let mut dims = vec![n];
    dims.extend(&shape);
    let x = Tensor::from_slice(Shape::new(&dims)?, &x_values)?;
    drop(x_values);
    let warm = usize::try_from(a.warm_up)?;
    let steps = usize::try_from(a.steps)?;
    let mut report = None;
    let times: Vec<f64> = if a.inference {
        let mut t = Vec::with_capacity(steps);
        for i in 0..warm + steps {
            let started = Instant::now();
            std::hint::black_box(model.predict(&x, n)?);
            if i >= warm {
                t.push(started.elapsed().as_secs_f64());
            }
        }
        t
    } else {
        let last = model.layers()[model.layers().len() - 1].layer.activation();
        let loss = if last == Activation::Sigmoid { Loss::BinaryCrossentropy } else { Loss::CategoricalCrossentropy };
        model.compile(RMSprop::default(), loss, &[Metric::Accuracy])?;
        let labels: Vec<f32> = (0..n)
            .map(|_| {
                let classes = if loss == Loss::BinaryCrossentropy { 2 } else { outputs };
                (rng.uniform(0.0, classes as f32) as usize).min(classes - 1) as f32
            })
            .collect();
        let y = Tensor::from_slice(Shape::matrix(n, 1), &labels)?;
        let mut ends: Vec<Instant> = Vec::with_capacity(warm + steps);
        let profile = a.profile.enabled();
        let options = FitOptions {
            epochs: warm + steps + 1,
            batch_size: n,
            shuffle: false,
            seed: a.seed,
            verbose: Verbose::Silent,
            callbacks: vec![Box::new(OnBatchEnd(|_: &convnet::BatchLogs| {
                ends.push(Instant::now());
                convnet::Control::Continue
            }))],
            profile,
            shards: a.shards as usize,
            ..FitOptions::default()
        };
        let history = model.fit(&x, &y, options)?;
        report = history.profile;
        ends.windows(2).skip(warm).map(|w| (w[1] - w[0]).as_secs_f64()).collect()
    };
    let m = median(times.clone());
    let images_per_s = n as f64 / m;
    // With --json, stdout stays one JSON line: the profile goes inside it, not after it.
    let table = !a.json;
    if a.json {
        let mut json = serde_json::json!({
            "median_s": m,
            "images_per_s": images_per_s,
            "model": a.model,
            "input_shape": shape,
            "batch_size": n,
            "pass": if a.inference { "inference" } else { "training_step" },
            "steps": times.len(),
            "min_s": times.iter().copied().fold(f64::INFINITY, f64::min),
            "max_s": times.iter().copied().fold(0.0, f64::max),
            "threads": rayon::current_num_threads(),
            "shards": if a.inference { None } else { Some(a.shards) },
            "algo": a.algo.name(),
        });
        if let Some(r) = report.as_ref().filter(|_| a.profile.profile) {
            json["profile"] = r.to_json();
        }
        println!("{}", serde_json::to_string(&json)?);
    } else {
        println!(
            "{} {} at batch {n}, input {shape:?}, {} threads: median {:.4} s over {} steps ({:.1} images/s)",
            a.model,
            if a.inference { "inference (tape-free forward)" } else { "training step" },
            rayon::current_num_threads(),
            m,
            times.len(),
            images_per_s
        );
    }
    a.profile.emit(report.as_ref(), table)?;
    Ok(())
}

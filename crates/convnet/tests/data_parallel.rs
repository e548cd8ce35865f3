//! Data-parallel `fit` (`FitOptions::distributed`) without MPI: the ranks are
//! threads of this process joined by [`ThreadGroup`], a [`Collective`] over
//! shared memory, so the sharding, the rank-order sums, the frozen-parameter
//! layout, the validation split and the start-up digests are tested in the
//! default build. The same over MPI processes is `tests/distributed.rs`
//! (feature `mpi`, run by `.ci/run` under `mpirun`).

use convnet::distributed::{agree, Collective};
use convnet::optimizers::{RMSprop, Sgd};
use convnet::Activation::{Relu, Softmax};
use convnet::{Conv2D, Dense, FitOptions, Flatten, History, Loss, MaxPooling2D, Metric, Model, Sequential, Verbose};
use convnet_tensor::{Rng, Shape, Tensor};
use std::sync::{Arc, Barrier, Mutex};

/// Ranks as threads: every call deposits this rank's data, waits for all,
/// reads every rank's in rank order, and waits again before the slots are
/// reused.
struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
    /// Length of every `sum_in_rank_order` buffer, in call order.
    sums: Vec<usize>,
}

struct Shared {
    size: usize,
    floats: Mutex<Vec<Vec<f32>>>,
    bytes: Mutex<Vec<Vec<u8>>>,
    barrier: Barrier,
}

impl ThreadGroup {
    fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            size,
            floats: Mutex::new(vec![Vec::new(); size]),
            bytes: Mutex::new(vec![Vec::new(); size]),
            barrier: Barrier::new(size),
        });
        (0..size).map(|rank| ThreadGroup { rank, shared: shared.clone(), sums: Vec::new() }).collect()
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn sum_in_rank_order(&mut self, buf: &mut [f32]) -> convnet::Result<()> {
        self.sums.push(buf.len());
        self.shared.floats.lock().unwrap()[self.rank] = buf.to_vec();
        self.shared.barrier.wait();
        {
            let all = self.shared.floats.lock().unwrap();
            for (i, v) in buf.iter_mut().enumerate() {
                *v = (1..self.shared.size).fold(all[0][i], |s, r| s + all[r][i]);
            }
        }
        self.shared.barrier.wait();
        Ok(())
    }
    fn all_gather(&mut self, local: &[u8]) -> convnet::Result<Vec<u8>> {
        self.shared.bytes.lock().unwrap()[self.rank] = local.to_vec();
        self.shared.barrier.wait();
        let out = self.shared.bytes.lock().unwrap().concat();
        self.shared.barrier.wait();
        Ok(out)
    }
}

fn model(seed: u64) -> Model {
    Sequential::new()
        .add(Conv2D::new(4, (3, 3)).activation(Relu).input_shape((8, 8, 1)))
        .add(MaxPooling2D::new((2, 2)))
        .add(Flatten::new())
        .add(Dense::new(8).activation(Relu).name("hidden"))
        .add(Dense::new(3).activation(Softmax))
        .seed(seed)
        .build()
        .unwrap()
}

/// 100 examples of 8x8x1 in three classes (a class shifts the mean of a band
/// of rows), so a few steps of training move every weight.
fn data() -> (Tensor, Tensor) {
    let n = 100;
    let mut rng = Rng::new(11);
    let mut x = Vec::with_capacity(n * 64);
    let mut y = vec![0.0; n * 3];
    for i in 0..n {
        let class = i % 3;
        for p in 0..64 {
            let band = p / 8 / 3 == class;
            x.push(rng.uniform(0.0, 1.0) + if band { 0.7 } else { 0.0 });
        }
        y[i * 3 + class] = 1.0;
    }
    (
        Tensor::from_slice(Shape::new(&[n, 8, 8, 1]).unwrap(), &x).unwrap(),
        Tensor::from_slice(Shape::new(&[n, 3]).unwrap(), &y).unwrap(),
    )
}

#[derive(Clone, Copy)]
struct Run {
    batch_size: usize,
    epochs: usize,
    sgd: bool,
    validation_split: f64,
    seed: u64,
}

const RUN: Run = Run { batch_size: 32, epochs: 2, sgd: true, validation_split: 0.2, seed: 5 };

fn compile(m: &mut Model, run: Run) {
    let metrics = &[Metric::Accuracy];
    if run.sgd {
        m.compile(Sgd::new(0.1), Loss::CategoricalCrossentropy, metrics).unwrap();
    } else {
        m.compile(RMSprop::new(1e-3), Loss::CategoricalCrossentropy, metrics).unwrap();
    }
}

fn options(run: Run) -> FitOptions<'static> {
    FitOptions {
        epochs: run.epochs,
        batch_size: run.batch_size,
        seed: run.seed,
        validation_split: run.validation_split,
        verbose: Verbose::Silent,
        ..FitOptions::default()
    }
}

fn weights(m: &Model) -> Vec<f32> {
    m.weights().iter().flat_map(|(_, t)| t.data().to_vec()).collect()
}

fn bits(w: &[f32]) -> Vec<u32> {
    w.iter().map(|v| v.to_bits()).collect()
}

/// One process, no group.
fn single(run: Run, prepare: impl Fn(&mut Model)) -> (Vec<f32>, History) {
    let (x, y) = data();
    let mut m = model(run.seed);
    prepare(&mut m);
    compile(&mut m, run);
    let h = m.fit(&x, &y, options(run)).unwrap();
    (weights(&m), h)
}

/// `world` ranks as threads; per rank its weights, history and the lengths
/// of the buffers it summed (or the error).
type RankResult = convnet::Result<(Vec<f32>, History, Vec<usize>)>;

fn threads(world: usize, run: impl Fn(usize) -> Run + Sync, prepare: impl Fn(&mut Model) + Sync) -> Vec<RankResult> {
    let groups = ThreadGroup::new(world);
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|mut g| {
                let (run, prepare) = (&run, &prepare);
                s.spawn(move || {
                    let r = run(g.rank);
                    let (x, y) = data();
                    let mut m = model(r.seed);
                    prepare(&mut m);
                    compile(&mut m, r);
                    let h = m.fit(&x, &y, FitOptions { distributed: Some(&mut g), ..options(r) })?;
                    Ok((weights(&m), h, g.sums.clone()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn one_rank_is_the_one_process_run_bit_for_bit() {
    let (w, h) = single(RUN, |_| {});
    let ranks = threads(1, |_| RUN, |_| {});
    let (w1, h1, _) = ranks.into_iter().next().unwrap().unwrap();
    assert_eq!(bits(&w), bits(&w1));
    assert_eq!(h.epochs[1].loss.to_bits(), h1.epochs[1].loss.to_bits());
    assert_eq!(h.epochs[1].val_loss.map(f64::to_bits), h1.epochs[1].val_loss.map(f64::to_bits));
}

/// Two ranks end bit-identical to each other and to a second two-rank run,
/// and within float rounding of the one-process run with the same global
/// batch: 32 over 2 ranks scales exactly (1/16, then x 0.5), so the runs
/// differ only in the order of the backward pass's sums over the batch
/// (two halves of 16, then added), a few ulps per step; 6 SGD steps at
/// learning rate 0.1 keep that under 1e-5 relative to the weights' size.
#[test]
fn two_ranks_agree_with_each_other_with_a_rerun_and_with_one_process() {
    let a = threads(2, |_| RUN, |_| {});
    let b = threads(2, |_| RUN, |_| {});
    let (w0, h0, _) = a[0].as_ref().unwrap();
    let (w1, h1, _) = a[1].as_ref().unwrap();
    assert_eq!(bits(w0), bits(w1), "two ranks end with different weights");
    assert_eq!(h0.epochs[1].val_loss.map(f64::to_bits), h1.epochs[1].val_loss.map(f64::to_bits));
    assert_eq!(bits(w0), bits(&b[0].as_ref().unwrap().0), "the same two-rank run twice differs");
    let (w, h) = single(RUN, |_| {});
    assert_ne!(bits(&w), bits(&weights(&model(RUN.seed))), "training moved nothing");
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = w.iter().zip(w0).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-5 * scale, "two ranks vs one process: max |dw| {diff} (max |w| {scale})");
    let (l, l2) = (h.epochs[1].loss, h0.epochs[1].loss);
    assert!((l - l2).abs() <= 1e-5 * l.abs(), "loss {l} vs {l2}");
    let (v, v2) = (h.epochs[1].val_loss.unwrap(), h0.epochs[1].val_loss.unwrap());
    assert!((v - v2).abs() <= 1e-5 * v.abs(), "val_loss {v} vs {v2}");
    assert_eq!(h.epochs[1].val_accuracy, h0.epochs[1].val_accuracy);
}

/// Three ranks, a batch of 32 and 80 training examples: the last batch of
/// 16 and RMSprop; an uneven split (11, 11, 10 ... 5, 5, 6) still ends with
/// the ranks bit-identical, and a batch smaller than the world (2 examples,
/// 3 ranks) leaves one rank an empty share it still takes part with.
#[test]
fn uneven_and_empty_shares_keep_the_ranks_identical() {
    let run = Run { sgd: false, ..RUN };
    let ranks = threads(3, |_| run, |_| {});
    let w: Vec<_> = ranks.iter().map(|r| bits(&r.as_ref().unwrap().0)).collect();
    assert_eq!(w[0], w[1]);
    assert_eq!(w[0], w[2]);
    let tiny = Run { batch_size: 2, epochs: 1, validation_split: 0.98, ..run };
    let ranks = threads(3, |_| tiny, |_| {});
    let w: Vec<_> = ranks.iter().map(|r| bits(&r.as_ref().unwrap().0)).collect();
    assert_eq!(w[0], w[1]);
    assert_eq!(w[0], w[2]);
    let (single_w, _) = single(tiny, |_| {});
    let diff = single_w.iter().zip(&ranks[0].as_ref().unwrap().0).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-5, "one step on 2 examples: {diff}");
}

/// Frozen parameters are not sent: the summed buffer holds the trainable
/// gradients (plus loss, correct count and examples), and the frozen
/// weights do not move.
#[test]
fn frozen_parameters_are_not_sent() {
    let freeze = |m: &mut Model| m.set_trainable_from("hidden").unwrap();
    let ranks = threads(2, |_| RUN, freeze);
    let mut m = model(RUN.seed);
    freeze(&mut m);
    let trainable = m.trainable_param_count();
    assert!(trainable < m.param_count());
    let before = weights(&m);
    let (w, _, sums) = ranks[0].as_ref().unwrap();
    assert!(!sums.is_empty());
    assert!(sums.iter().all(|&n| n == trainable + 3), "{sums:?} vs {trainable} trainable");
    let conv = m.weights()[0].1.data().len() + m.weights()[1].1.data().len();
    assert_eq!(bits(&before[..conv]), bits(&w[..conv]), "a frozen conv weight moved");
    assert_eq!(bits(w), bits(&ranks[1].as_ref().unwrap().0));
}

/// Profiling a data-parallel fit: every rank's report has a `gradient_sum`
/// row (the collective) for every counted step, the rows still add up to the
/// step, and profiling changes no weight.
#[test]
fn a_profiled_data_parallel_fit_times_the_gradient_sum() {
    let plain = threads(2, |_| RUN, |_| {});
    let groups = ThreadGroup::new(2);
    let profiled: Vec<convnet::Result<(Vec<f32>, History)>> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|mut g| {
                s.spawn(move || {
                    let (x, y) = data();
                    let mut m = model(RUN.seed);
                    compile(&mut m, RUN);
                    let h = m.fit(&x, &y, FitOptions { distributed: Some(&mut g), profile: true, ..options(RUN) })?;
                    Ok((weights(&m), h))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, r) in profiled.iter().enumerate() {
        let (w, h) = r.as_ref().unwrap();
        assert_eq!(bits(w), bits(&plain[rank].as_ref().unwrap().0), "rank {rank}: profiling changed the weights");
        let report = h.profile.as_ref().expect("a profile");
        // 80 training examples at batch 32 (32, 32, 16), 2 epochs: 6 steps, the first not counted.
        assert_eq!(report.steps, 5);
        let sum = report.rows.iter().find(|r| r.pass == "gradient_sum").unwrap_or_else(|| panic!("{report}"));
        assert_eq!((sum.layer.as_str(), sum.kernel.as_str(), sum.calls), ("(step)", "collective", 5));
        assert!(sum.total_s > 0.0);
        let shares: f64 = report.rows.iter().map(|r| r.share).sum();
        assert!((shares - 1.0).abs() < 1e-9, "{shares}");
    }
    // One process sums nothing: no such row.
    let (x, y) = data();
    let mut m = model(RUN.seed);
    compile(&mut m, RUN);
    let h = m.fit(&x, &y, FitOptions { profile: true, ..options(RUN) }).unwrap();
    let report = h.profile.expect("a profile");
    assert!(report.rows.iter().all(|r| r.pass != "gradient_sum"), "{report}");
}

/// A rank given another seed (so other initial weights and shuffles) or
/// other data makes every rank fail at the start, naming what differs.
#[test]
fn a_mismatch_between_ranks_is_an_error_on_every_rank() {
    let ranks = threads(2, |r| Run { seed: RUN.seed + r as u64, ..RUN }, |_| {});
    for r in &ranks {
        let e = r.as_ref().expect_err("a seed mismatch must fail").to_string();
        assert!(e.contains("initial weights") && e.contains("fit options") && e.contains("rank 1"), "{e}");
    }
    let ranks = threads(2, |r| Run { batch_size: 32 + r, ..RUN }, |_| {});
    for r in &ranks {
        let e = r.as_ref().expect_err("a batch size mismatch must fail").to_string();
        assert!(e.contains("fit options") && !e.contains("initial weights"), "{e}");
    }
}

/// `agree`: one rank's failure (say, its data file is missing) is an error
/// on every rank, naming the rank and its message; success passes through.
#[test]
fn agree_turns_one_ranks_failure_into_an_error_everywhere() {
    let groups = ThreadGroup::new(3);
    let out: Vec<convnet::Result<u32>> = std::thread::scope(|s| {
        let hs: Vec<_> = groups
            .into_iter()
            .map(|mut g| {
                s.spawn(move || {
                    let outcome = if g.rank() == 1 { Err("data/x: No such file".to_string()) } else { Ok(7) };
                    agree(&mut g, "reading the data", outcome)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, r) in out.iter().enumerate() {
        let e = r.as_ref().unwrap_err().to_string();
        assert!(e.contains("reading the data") && e.contains("No such file"), "rank {rank}: {e}");
        if rank != 1 {
            assert!(e.contains("rank 1 of 3"), "{e}");
        }
    }
    let groups = ThreadGroup::new(2);
    std::thread::scope(|s| {
        for mut g in groups {
            s.spawn(move || {
                let rank = g.rank();
                assert_eq!(agree(&mut g, "x", Ok::<_, String>(rank)).unwrap(), rank);
            });
        }
    });
}

/// Without the `mpi` feature, `train --distributed` refuses to start and
/// says how to build with it (exit 2, a usage error).
#[cfg(not(feature = "mpi"))]
#[test]
fn distributed_flag_without_the_feature_says_how_to_build() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(["train", "--distributed", "--limit", "10"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--features mpi") && err.contains("mpirun") && err.contains("DISTRIBUTED.md"), "{err}");
    assert!(out.stdout.is_empty(), "nothing may start");
}

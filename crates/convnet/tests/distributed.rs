//! Data-parallel training over MPI processes (feature `mpi`): every test
//! starts `mpirun` on this machine (loopback), either on the `convnet` CLI
//! (`train --distributed`) or on this test binary itself, whose
//! `rank_program` test is the per-rank program when `CONVNET_MPI_SCENARIO` is
//! set (and does nothing otherwise).
//!
//! Run: `cargo test -p convnet --features mpi --test distributed` (`.ci/run`
//! does, after installing Open MPI when it is missing). As root, Open MPI
//! needs `--allow-run-as-root`; `--oversubscribe` lets 2 ranks share fewer
//! cores. The same logic over threads, without MPI, is `tests/data_parallel.rs`.
#![cfg(feature = "mpi")]

use convnet::distributed::mpi::{MpiGroup, WATCHDOG_EXIT};
use convnet::optimizers::Sgd;
use convnet::Activation::{Relu, Softmax};
use convnet::{
    Control, Conv2D, Dense, FitOptions, Flatten, Loss, MaxPooling2D, Metric, Model, OnBatchEnd, Sequential, Verbose,
};
use convnet_tensor::{Rng, Shape, Tensor};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SCENARIO: &str = "CONVNET_MPI_SCENARIO";
const OUT: &str = "CONVNET_MPI_OUT";

fn mpirun(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np", &np.to_string()])
        .env_remove("CONVNET_SIMD")
        .env("OMPI_MCA_btl", "self,tcp,vader")
        .env("RAYON_NUM_THREADS", "1");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", out.status, text(&out.stdout), text(&out.stderr))
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convnet-mpi-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn model() -> Model {
    Sequential::new()
        .add(Conv2D::new(4, (3, 3)).activation(Relu).input_shape((8, 8, 1)))
        .add(MaxPooling2D::new((2, 2)))
        .add(Flatten::new())
        .add(Dense::new(8).activation(Relu))
        .add(Dense::new(3).activation(Softmax))
        .seed(5)
        .build()
        .unwrap()
}

fn data() -> (Tensor, Tensor) {
    let n = 100;
    let mut rng = Rng::new(11);
    let mut x = Vec::with_capacity(n * 64);
    let mut y = vec![0.0; n * 3];
    for i in 0..n {
        let class = i % 3;
        for p in 0..64 {
            x.push(rng.uniform(0.0, 1.0) + if p / 24 == class { 0.7 } else { 0.0 });
        }
        y[i * 3 + class] = 1.0;
    }
    (
        Tensor::from_slice(Shape::new(&[n, 8, 8, 1]).unwrap(), &x).unwrap(),
        Tensor::from_slice(Shape::new(&[n, 3]).unwrap(), &y).unwrap(),
    )
}

fn options() -> FitOptions<'static> {
    FitOptions {
        epochs: 2,
        batch_size: 32,
        seed: 5,
        validation_split: 0.2,
        verbose: Verbose::Silent,
        ..Default::default()
    }
}

fn compiled() -> Model {
    let mut m = model();
    m.compile(Sgd::new(0.1), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    m
}

fn weight_bytes(m: &Model) -> Vec<u8> {
    m.weights().iter().flat_map(|(_, t)| t.data().iter().flat_map(|v| v.to_le_bytes())).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// The per-rank program (under mpirun, with `CONVNET_MPI_SCENARIO` set):
/// `fit` writes `rank<R>.weights` and `rank<R>.val_loss`; `die` kills rank 1
/// mid-training; `hang` stalls rank 1 past the 3 s timeout; `sum-bench`
/// (docs/DISTRIBUTED.md, not a test) times 100 rank-order sums and all-gathers
/// of the MNIST model's gradient buffer, `BENCH_GAP_MS` of busy work apart.
#[test]
fn rank_program() {
    let Ok(scenario) = std::env::var(SCENARIO) else { return };
    let out = PathBuf::from(std::env::var(OUT).unwrap());
    if scenario == "sum-bench" {
        let mut group = MpiGroup::init(Duration::from_secs(120)).unwrap();
        let mut buf = vec![1.0f32; 93_325];
        let bytes = vec![1u8; 93_325 * 4];
        let mut ag = Vec::new();
        let gap: u64 = std::env::var("BENCH_GAP_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        for _ in 0..100 {
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(gap) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            convnet::distributed::Collective::sum_in_rank_order(&mut group, &mut buf).unwrap();
            let t = Instant::now();
            convnet::distributed::Collective::all_gather(&mut group, &bytes).unwrap();
            ag.push(t.elapsed().as_secs_f64());
        }
        ag.sort_by(f64::total_cmp);
        let rank = convnet::distributed::Collective::rank(&group);
        let s = group.stats();
        eprintln!(
            "sum-bench rank {rank} of {}: gap {gap} ms: rank-order sum median {:.3} ms (barrier {:?} s), all-gather \
             of the same bytes {:.3} ms",
            convnet::distributed::Collective::size(&group),
            s.median() * 1e3,
            s.median_wait(),
            ag[50] * 1e3
        );
        return;
    }
    let timeout = if scenario == "hang" { 3 } else { 120 };
    let mut group = MpiGroup::init(Duration::from_secs(timeout)).unwrap();
    let rank = convnet::distributed::Collective::rank(&group);
    let (x, y) = data();
    let mut m = compiled();
    let fault = move |logs: &convnet::BatchLogs| {
        if rank == 1 && logs.epoch == 1 && logs.batch == 2 {
            match scenario.as_str() {
                "die" => std::process::abort(),
                "hang" => std::thread::sleep(Duration::from_secs(120)),
                _ => {}
            }
        }
        Control::Continue
    };
    let opts = FitOptions { distributed: Some(&mut group), callbacks: vec![Box::new(OnBatchEnd(fault))], ..options() };
    let h = m.fit(&x, &y, opts).unwrap();
    std::fs::write(out.join(format!("rank{rank}.weights")), weight_bytes(&m)).unwrap();
    std::fs::write(out.join(format!("rank{rank}.val_loss")), h.epochs[1].val_loss.unwrap().to_string()).unwrap();
}

fn run_ranks(np: usize, scenario: &str, out: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let o = mpirun(np)
        .arg(exe)
        .args(["rank_program", "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .env(OUT, out)
        .output()
        .unwrap();
    (o, started.elapsed())
}

/// Two ranks finish with identical weights; the same run twice is
/// bit-identical; and it is within float rounding of one process with the
/// same global batch (32 = 2 x 16 scales exactly, so only the order of the
/// backward pass's sums over the batch differs: 1e-5 of the largest weight
/// bounds 6 SGD steps; tests/data_parallel.rs has the derivation).
#[test]
fn two_ranks_identical_deterministic_and_close_to_one_process() {
    let (a, b) = (tmp("fit-a"), tmp("fit-b"));
    for dir in [&a, &b] {
        let (o, _) = run_ranks(2, "fit", dir);
        assert!(o.status.success(), "{}", show(&o));
    }
    let read = |d: &Path, r: usize| std::fs::read(d.join(format!("rank{r}.weights"))).unwrap();
    assert_eq!(read(&a, 0), read(&a, 1), "the two ranks' weights differ");
    assert_eq!(read(&a, 0), read(&b, 0), "two runs of the same 2-rank job differ");
    let val = |d: &Path, r: usize| std::fs::read_to_string(d.join(format!("rank{r}.val_loss"))).unwrap();
    assert_eq!(val(&a, 0), val(&a, 1));
    let mut m = compiled();
    let (x, y) = data();
    let h = m.fit(&x, &y, options()).unwrap();
    let single = floats(&weight_bytes(&m));
    let two = floats(&read(&a, 0));
    assert_ne!(weight_bytes(&m), weight_bytes(&compiled()), "training moved nothing");
    let scale = single.iter().fold(0f32, |s, v| s.max(v.abs()));
    let diff = single.iter().zip(&two).fold(0f32, |s, (p, q)| s.max((p - q).abs()));
    assert!(diff <= 1e-5 * scale, "2 ranks vs 1 process: max |dw| {diff}, max |w| {scale}");
    let v1 = h.epochs[1].val_loss.unwrap();
    let v2: f64 = val(&a, 0).parse().unwrap();
    assert!((v1 - v2).abs() <= 1e-5 * v1, "validation loss {v1} vs {v2}");
    for d in [a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A rank that dies mid-training ends the job: no hang, a non-zero status
/// and mpirun's report naming the rank, well inside the test's bound.
#[test]
fn a_dead_rank_ends_every_rank() {
    let dir = tmp("die");
    let (o, took) = run_ranks(2, "die", &dir);
    assert!(!o.status.success(), "{}", show(&o));
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(all.contains("rank 1") && all.contains("signal 6"), "{}", show(&o));
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(!dir.join("rank0.weights").exists(), "rank 0 finished training without rank 1");
    let _ = std::fs::remove_dir_all(dir);
}

/// A rank that stalls: the other's watchdog ends it after the 3 s timeout
/// with a message naming the collective, and mpirun ends the stalled one.
#[test]
fn a_hung_rank_is_bounded_by_the_watchdog() {
    let dir = tmp("hang");
    let (o, took) = run_ranks(2, "hang", &dir);
    assert!(!o.status.success(), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(err.contains("rank 0 of 2") && err.contains("did not complete in 3 s"), "{}", show(&o));
    assert!(err.contains(&WATCHDOG_EXIT.to_string()) || err.contains("non-zero"), "{}", show(&o));
    assert!(took < Duration::from_secs(60), "took {took:?}");
    let _ = std::fs::remove_dir_all(dir);
}

fn convnet_cli(np: usize, args: &[&str]) -> Output {
    mpirun(np).arg(env!("CARGO_BIN_EXE_convnet")).args(["train", "--distributed"]).args(args).output().unwrap()
}

fn metrics(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The CLI: rank 0 alone prints and writes; two runs are bit-identical;
/// the test accuracy is close to the one-process run's; the checkpoint
/// resumes with another world size; profiling it changes nothing and times the gradient sum.
#[test]
fn cli_train_distributed() {
    let dir = tmp("cli");
    let data = repo("data/mnist");
    let common = ["--data", data.to_str().unwrap(), "--limit", "640", "--epochs", "1", "--batch-size", "64"];
    let m = |name: &str| dir.join(name);
    let mut runs = Vec::new();
    for name in ["a", "b"] {
        let json = m(&format!("{name}.json"));
        let save = m(&format!("{name}.safetensors"));
        // The second run is profiled: the weights must not change, and rank 0 alone prints the
        // table, with the gradient sum as a row of its own.
        let profile: &[&str] = if name == "b" { &["--profile"] } else { &[] };
        let o = convnet_cli(
            2,
            &[&common[..], &["--metrics-json", json.to_str().unwrap(), "--save", save.to_str().unwrap()], profile]
                .concat(),
        );
        assert!(o.status.success(), "{}", show(&o));
        let out = text(&o.stdout);
        if name == "b" {
            assert_eq!(out.matches("Profile:").count(), 1, "one rank prints the profile:\n{out}");
            assert!(out.contains("gradient_sum") && out.contains("collective"), "{out}");
        }
        assert_eq!(out.matches("test accuracy").count(), 1, "one rank reports:\n{out}");
        assert_eq!(out.matches("Total params").count(), 1, "one rank prints the summary:\n{out}");
        assert!(out.contains("distributed: 2 ranks, identical weights"), "{out}");
        runs.push(metrics(&json));
    }
    assert_eq!(runs[0]["weights_fnv1a64"], runs[1]["weights_fnv1a64"], "two 2-rank runs differ");
    assert_eq!(runs[0]["distributed"]["world_size"], 2);
    // 373,288 bytes of gradients + 3 floats (loss, correct, examples) per step.
    assert_eq!(runs[0]["distributed"]["sum_bytes_per_step"], 93_322 * 4 + 12);
    assert_eq!(runs[0]["distributed"]["sum_steps"], 10);
    let one = m("one.json");
    let o = Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(["train", "--quiet", "--metrics-json", one.to_str().unwrap()])
        .args(common)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let one = metrics(&one);
    let (l1, l2) = (one["test_loss"].as_f64().unwrap(), runs[0]["test_loss"].as_f64().unwrap());
    assert!((l1 - l2).abs() <= 1e-3 * l1, "test loss: one process {l1}, two ranks {l2}");
    // Resume the 2-rank checkpoint in 1 process, and with 3 ranks.
    for np in [1, 3] {
        let o = convnet_cli(np, &[&common[..], &["--model", m("a.safetensors").to_str().unwrap(), "--quiet"]].concat());
        assert!(o.status.success(), "resume with {np} ranks: {}", show(&o));
        let acc: f64 = text(&o.stdout).lines().find_map(|l| l.strip_prefix("test accuracy: ")?.parse().ok()).unwrap();
        assert!(acc > one["test_accuracy"].as_f64().unwrap() - 0.05, "resumed accuracy {acc}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Ranks given different seeds, or a rank whose data cannot be read: every
/// rank stops before training with an error naming the problem and the rank.
#[test]
fn cli_mismatch_and_unreadable_data_stop_every_rank() {
    let data = repo("data/mnist");
    let d = data.to_str().unwrap();
    let exe = env!("CARGO_BIN_EXE_convnet");
    let common = ["train", "--distributed", "--limit", "256", "--epochs", "1", "--quiet"];
    let mpmd = |a: &[&str], b: &[&str]| {
        let started = Instant::now();
        let mut c = mpirun(1);
        c.arg(exe).args(common).args(a).arg(":").args(["-np", "1", exe]).args(common).args(b);
        (c.output().unwrap(), started.elapsed())
    };
    let (o, took) = mpmd(&["--data", d, "--seed", "1"], &["--data", d, "--seed", "2"]);
    assert!(!o.status.success(), "{}", show(&o));
    let err = text(&o.stderr);
    assert_eq!(err.matches("do not start from the same run").count(), 2, "both ranks: {}", show(&o));
    assert!(err.contains("initial weights") && err.contains("rank 1 against rank 0"), "{}", show(&o));
    assert!(took < Duration::from_secs(120), "took {took:?}");
    let (o, took) = mpmd(&["--data", d], &["--data", "/nonexistent/mnist"]);
    assert!(!o.status.success(), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("preparing the run failed on rank 1 of 2") && err.contains("/nonexistent/mnist"),
        "{}",
        show(&o)
    );
    assert!(took < Duration::from_secs(120), "took {took:?}");
}

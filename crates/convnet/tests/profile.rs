//! The profiler: `FitOptions::profile` / `History::profile` (rows per layer
//! and pass, shares that add up, off by default), and the CLI's `--profile`
//! table and `--profile-json` file on `train` and `bench step`.

use convnet::{FitOptions, Verbose};
use convnet_tensor::{Rng, Shape, Tensor};
use std::path::PathBuf;
use std::process::{Command, Output};

fn convnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).env_remove("CONVNET_SIMD").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convnet-profile-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fit(profile: bool) -> convnet::History {
    fit_sharded(profile, 1)
}

fn fit_sharded(profile: bool, shards: usize) -> convnet::History {
    let mut model = convnet::mnist_convnet().build().unwrap();
    model
        .compile(
            convnet::optimizers::RMSprop::default(),
            convnet::Loss::SparseCategoricalCrossentropy,
            &[convnet::Metric::Accuracy],
        )
        .unwrap();
    let mut rng = Rng::new(3);
    let x = Tensor::uniform(Shape::nhwc(24, 28, 28, 1), 0.0, 1.0, &mut rng).unwrap();
    let labels: Vec<f32> = (0..24).map(|i| (i % 10) as f32).collect();
    let y = Tensor::from_slice(Shape::matrix(24, 1), &labels).unwrap();
    let opts =
        FitOptions { epochs: 2, batch_size: 8, verbose: Verbose::Silent, profile, shards, ..FitOptions::default() };
    model.fit(&x, &y, opts).unwrap()
}

#[test]
fn fit_profiles_every_layer_and_pass_only_when_asked() {
    assert!(fit(false).profile.is_none(), "profiling is off by default");
    let report = fit(true).profile.expect("a profile");
    // 2 epochs of 3 steps, the first not counted.
    assert_eq!(report.steps, 5);
    assert!(report.total_s > 0.0);
    let row = |layer: &str, pass: &str| report.rows.iter().find(|r| r.layer == layer && r.pass == pass);
    // The chapter's first layer: one input channel, so `Auto` runs direct,
    // and nothing asks for the images' gradient: the conv and its 2x2 max
    // pool run as one fused node (pooled map and argmax, direct's
    // arithmetic), under the conv's row.
    let first = row("conv2d", "forward").expect("conv2d forward");
    assert_eq!((first.kernel.as_str(), first.calls), ("conv_max_pool", 5));
    assert!(row("max_pooling2d", "forward").is_none(), "the pool runs inside the fused node");
    assert!(first.gflops.unwrap() > 0.0 && first.mean_s > 0.0);
    // Its backward runs fused from the pooled gradient (filter and bias in
    // one pass): no pool scatter, no separate bias pass.
    let filter = row("conv2d", "backward_filter").expect("conv2d backward_filter");
    assert_eq!((filter.kernel.as_str(), filter.calls), ("max_pooled", 5));
    assert!(row("conv2d", "backward_data").is_none(), "the first layer computes no input gradient");
    assert!(row("conv2d", "backward_bias").is_none(), "the fused pass makes the bias gradient");
    assert!(row("max_pooling2d", "backward_data").is_none(), "the fused pass replaces the scatter");
    for (layer, pass) in [
        ("max_pooling2d_1", "forward"),
        ("max_pooling2d_1", "backward_data"),
        ("conv2d_1", "backward_data"),
        ("conv2d_2", "backward_bias"),
        ("dense", "backward_filter"),
        ("dense_1", "forward"),
        ("loss", "forward"),
        ("(step)", "optimizer_update"),
        ("(step)", "data_loading"),
        ("(step)", "framework_overhead"),
    ] {
        let r = row(layer, pass).unwrap_or_else(|| panic!("no row {layer} {pass}:\n{report}"));
        assert_eq!(r.calls, 5, "{layer} {pass}");
    }
    assert_eq!(row("(step)", "optimizer_update").unwrap().kernel, "rmsprop");
    let shares: f64 = report.rows.iter().map(|r| r.share).sum();
    assert!((shares - 1.0).abs() < 1e-9, "the rows add up to the step, overhead included: {shares}");
    let totals: f64 = report.rows.iter().map(|r| r.total_s).sum();
    assert!((totals - report.total_s).abs() < 1e-9 * report.total_s.max(1.0), "{totals} vs {}", report.total_s);
    // The table names every row; the JSON carries them all.
    let table = report.to_string();
    assert!(table.contains("Layer") && table.contains("GFLOP/s"), "{table}");
    assert!(table.contains("conv2d_1") && table.contains("framework_overhead"), "{table}");
    let json = report.to_json();
    assert_eq!(json["rows"].as_array().unwrap().len(), report.rows.len());
    assert_eq!(json["steps"], 5);
}

/// A sharded step: every layer row holds every shard's calls (two per
/// step), timed on the worker that ran it; the step's own rows stay one per
/// step.
#[test]
fn a_sharded_fit_profiles_every_shard() {
    let report = fit_sharded(true, 2).profile.expect("a profile");
    assert_eq!(report.steps, 5);
    let row = |layer: &str, pass: &str| report.rows.iter().find(|r| r.layer == layer && r.pass == pass);
    for (layer, pass, calls) in [
        ("conv2d", "forward", 10),
        ("conv2d_1", "backward_data", 10),
        ("dense_1", "forward", 10),
        ("loss", "forward", 10),
        ("(step)", "optimizer_update", 5),
        ("(step)", "data_loading", 5),
    ] {
        let r = row(layer, pass).unwrap_or_else(|| panic!("no row {layer} {pass}:\n{report}"));
        assert_eq!(r.calls, calls, "{layer} {pass}");
        assert!(r.total_s > 0.0, "{layer} {pass}");
    }
}

#[test]
fn cli_train_and_bench_step_print_and_write_the_profile() {
    let dir = tmp("cli");
    let path = dir.join("profile.json");
    let out = convnet(&[
        "train",
        "--limit",
        "256",
        "--epochs",
        "1",
        "--quiet",
        "--profile",
        "--profile-json",
        path.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("Profile: 3 steps") && stdout.contains("backward_filter"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["steps"], 3, "256 examples at batch 64, the first step not counted");
    for key in ["total_s", "mean_step_s", "threads", "rows", "passes"] {
        assert!(json.get(key).is_some(), "{key} missing: {json}");
    }
    let rows = json["rows"].as_array().unwrap();
    for r in rows {
        for key in ["layer", "pass", "kernel", "calls", "total_s", "mean_s", "share", "gflops"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
    assert!(rows.iter().any(|r| r["layer"] == "conv2d_1" && r["pass"] == "forward" && r["gflops"].as_f64().is_some()));

    // Without the flags: no table.
    let out = convnet(&["train", "--limit", "128", "--epochs", "1", "--quiet"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("Profile:"));

    // bench step: the table after the timing line.
    let out = convnet(&["bench", "step", "--model", "mnist", "--batch-size", "4", "--steps", "20", "--profile"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("training step") && stdout.contains("Profile: 23 steps"), "{stdout}");

    // bench step --json: stdout is one JSON line, with the profile inside it.
    let out =
        convnet(&["bench", "step", "--model", "mnist", "--batch-size", "4", "--steps", "20", "--json", "--profile"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim_end()).unwrap();
    assert_eq!(json["profile"]["steps"], 23, "{json}");
    assert!(json["profile"]["rows"].as_array().is_some_and(|r| !r.is_empty()), "{json}");

    // A path that cannot be written is refused before training, with the flag named.
    let bad = dir.join("no/such/dir/p.json");
    let out = convnet(&["train", "--limit", "64", "--epochs", "1", "--profile-json", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--profile-json") && !text(&out.stdout).contains("Epoch"), "{err}");
    let out = convnet(&["bench", "step", "--model", "mnist", "--batch-size", "4", "--inference", "--profile"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    std::fs::remove_dir_all(dir).unwrap();
}

//! The `convnet` binary: output, exit codes (0 ok, 1 error, 2 usage) and messages.

use std::path::PathBuf;
use std::process::{Command, Output};

fn convnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).env_remove("CONVNET_SIMD").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convnet-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

#[test]
fn summary_prints_the_keras_table() {
    let out = convnet(&["summary"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(s.starts_with("Model: \"sequential\"\n"));
    assert!(s.contains("max_pooling2d_1 (MaxPooling2 (None, 5, 5, 64)          0"));
    assert!(s.contains("Total params: 93,322"));
}

/// `convnet summary | head -0`: the reader is gone before the first line, so
/// every write fails with EPIPE. That is the reader's choice, not a bug: exit
/// 0 with nothing on stderr (it used to print "internal error" and exit 1).
#[test]
fn a_closed_stdout_is_not_an_internal_error() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_convnet"))
        .arg("summary")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // close the only read end before the child writes
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn train_with_limit_then_eval_and_predict_the_saved_model() {
    let dir = tmp("train");
    let (model, metrics) = (dir.join("model.safetensors"), dir.join("metrics.json"));
    let out = convnet(&[
        "train",
        "--limit",
        "500",
        "--epochs",
        "1",
        "--seed",
        "5",
        "--save",
        model.to_str().unwrap(),
        "--metrics-json",
        metrics.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("Model: \"sequential\""), "{stdout}");
    assert!(stdout.contains("Epoch 1/1\n8/8 [==============================] - "), "{stdout}");
    assert!(stdout.contains("ms/step - loss: ") && stdout.contains(" - accuracy: "), "{stdout}");
    let acc_line = stdout.lines().find(|l| l.starts_with("test accuracy: ")).expect("test accuracy line");
    let acc: f64 = acc_line["test accuracy: ".len()..].parse().unwrap();
    assert!(acc > 0.2, "{acc}");

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(json["epochs"].as_array().unwrap().len(), 1);
    assert_eq!(json["epochs"][0]["epoch"], 1);
    assert!(json["epochs"][0]["loss"].as_f64().unwrap() > 0.0);
    assert!(json["epochs"][0]["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(json["train_examples"], 500);
    assert!((json["test_accuracy"].as_f64().unwrap() - acc).abs() < 1e-4);

    // Reproducible: the same seed on one thread gives the same weights.
    let metrics1 = dir.join("m1.json");
    let out = convnet(&[
        "train",
        "--limit",
        "500",
        "--epochs",
        "1",
        "--seed",
        "5",
        "--threads",
        "1",
        "--quiet",
        "--metrics-json",
        metrics1.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("Epoch"), "--quiet prints no progress");
    let json1: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics1).unwrap()).unwrap();
    assert_eq!(json1["weights_fnv1a64"], json["weights_fnv1a64"]);
    assert_eq!(json1["epochs"][0]["loss"], json["epochs"][0]["loss"]);

    let out = convnet(&["eval", "--weights", model.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("test accuracy: 0."));

    // A white-on-black PGM of a test digit goes through predict.
    let mnist = convnet_datasets::Mnist::load(data_dir()).unwrap();
    let img = mnist.test.image(0).unwrap();
    let pgm = dir.join("digit.pgm");
    let mut bytes = b"P5\n28 28\n255\n".to_vec();
    bytes.extend_from_slice(img);
    std::fs::write(&pgm, bytes).unwrap();
    let out = convnet(&["predict", "--weights", model.to_str().unwrap(), pgm.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(line.starts_with(&format!("{}: ", pgm.display())) && line.trim_end().ends_with(')'), "{line}");

    let out = convnet(&["predict", "--weights", model.to_str().unwrap(), dir.join("missing.png").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.png"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_data_dir_is_exit_1_with_the_path() {
    let out = convnet(&["train", "--data", "/no/such/mnist", "--limit", "10"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: ") && err.contains("/no/such/mnist"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn corrupt_idx_file_is_exit_1_naming_the_file() {
    let dir = tmp("idx");
    for name in
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    {
        std::fs::copy(data_dir().join(format!("{name}.gz")), dir.join(format!("{name}.gz"))).unwrap();
    }
    // Raw files take precedence over .gz: a train-images file with a bad magic number.
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        b"\x00\x00\x09\x99\x00\x00\x00\x01\x00\x00\x00\x1c\x00\x00\x00\x1c",
    )
    .unwrap();
    let out = convnet(&["train", "--data", dir.to_str().unwrap(), "--limit", "10"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Corrupt weights for eval.
    let w = dir.join("w.safetensors");
    std::fs::write(&w, b"garbage that is not a safetensors file").unwrap();
    let out = convnet(&["eval", "--weights", w.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("w.safetensors"), "{}", text(&out.stderr));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["train", "--bogus"][..],
        &["train", "--epochs", "0"],
        &["train", "--algo", "fft"],
        &["bench", "conv", "--shape", "1,2,3"],
        &["frobnicate"],
        &[],
    ] {
        let out = convnet(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(!text(&out.stderr).is_empty());
    }
}

#[test]
fn bad_simd_level_is_a_clean_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_convnet")).arg("summary").env("CONVNET_SIMD", "sse9").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("CONVNET_SIMD"), "{}", text(&out.stderr));
}

/// The switch users have, end to end: a short training run of the chapter's
/// model under each `CONVNET_SIMD` level, from the built binary. A level this
/// CPU runs trains (the metrics file names the level that ran, the model
/// learns); a level it lacks is exit 1 naming the variable, before training.
/// The property suites cover every level in-process through the `*_at` entry
/// points; this is the process-wide switch.
#[test]
fn train_runs_under_every_simd_level_this_cpu_has() {
    use convnet_kernels::simd::SimdLevel;
    let dir = tmp("simd");
    for level in [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512] {
        let metrics = dir.join(format!("{}.json", level.name()));
        let out = Command::new(env!("CARGO_BIN_EXE_convnet"))
            .args(["train", "--limit", "1000", "--epochs", "1", "--quiet", "--metrics-json"])
            .arg(&metrics)
            .env("CONVNET_SIMD", level.name())
            .output()
            .unwrap();
        if !level.is_available() {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
            assert!(text(&out.stderr).contains("CONVNET_SIMD"), "{}", text(&out.stderr));
            assert!(!metrics.exists());
            continue;
        }
        assert_eq!(out.status.code(), Some(0), "CONVNET_SIMD={}: {}", level.name(), text(&out.stderr));
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
        assert_eq!(json["simd"], level.name());
        let acc = json["test_accuracy"].as_f64().unwrap();
        assert!(acc > 0.3, "CONVNET_SIMD={}: test accuracy {acc}", level.name());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bench_conv_json_has_every_supported_algorithm_and_pass() {
    let out = convnet(&["bench", "conv", "--shape", "2,8,8,4,8", "--backward", "--json", "--reps", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["shape"]["c_out"], 8);
    let results = json["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["algo"] == "direct" && r["pass"] == "backward_filter"));
    for r in results {
        assert!(r["median_s"].as_f64().unwrap() > 0.0 && r["gflops"].as_f64().unwrap() > 0.0, "{r}");
    }
    let out = convnet(&["bench", "conv", "--shape", "1,8,8,4,8", "--kernel", "5", "--algo", "winograd"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("note: "), "an unsupported algorithm is left out with a note");
}

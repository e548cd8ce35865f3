//! Keras files out: what `save_keras`, `save_keras_weights` and
//! `save_legacy_h5_weights` write reads back here bit-identically, and real
//! Keras 3.15 loads it and predicts the same (when the anchors' Python is
//! installed; see `tests/fixtures/keras/check_keras_load.py`).

use convnet::{Model, Sequential};
use convnet_tensor::{Shape, Tensor};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras").join(name)
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn bits(m: &Model) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    m.weights()
        .iter()
        .map(|(n, t)| (n.to_string(), t.shape().dims().to_vec(), t.data().iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn inputs(name: &str) -> (Tensor, Value) {
    let e = expected(name);
    let mut shape = vec![e["batch"].as_u64().unwrap() as usize];
    shape.extend(e["input_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize));
    (Tensor::from_slice(Shape::new(&shape).unwrap(), &floats(&e["inputs"])).unwrap(), e)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-keras-out-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixtures Keras wrote, as convnet models, some layers frozen so the
/// flag's round trip is checked too.
fn models() -> Vec<(&'static str, Model)> {
    let mut out = Vec::new();
    for name in ["sequential", "functional", "separable", "augmented", "nested", "global_avg", "global_max"] {
        let mut m = convnet::keras::load_model(fixture(&format!("{name}.keras"))).unwrap();
        if name == "nested" {
            m.set_trainable_from("block2_conv1").unwrap(); // the book's fine-tuning shape
        } else if name == "sequential" {
            let first = m.layers()[0].name.clone();
            m.set_layer_trainable(&first, false).unwrap();
        }
        out.push((name, m));
    }
    out
}

#[test]
fn keras_archives_round_trip_bit_identically() {
    let dir = temp_dir("round-trip");
    for (name, m) in models() {
        let path = dir.join(format!("{name}.keras"));
        m.save_keras(&path).unwrap();
        let back = convnet::keras::load_model(&path).unwrap();
        assert_eq!(bits(&back), bits(&m), "{name}: weights");
        assert_eq!(back.to_sequential(), m.to_sequential(), "{name}: architecture and trainable flags");
        let (x, _) = inputs(name);
        let (a, b) = (m.predict(&x, 2).unwrap(), back.predict(&x, 2).unwrap());
        assert_eq!(a.data(), b.data(), "{name}: predictions");
        // The bytes in memory are what the file holds, apart from the date in metadata.json.
        assert!(m.to_keras_bytes().unwrap().len() == std::fs::metadata(&path).unwrap().len() as usize);
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn weight_files_round_trip_in_both_layouts() {
    let dir = temp_dir("weights");
    for (name, m) in models() {
        for (suffix, legacy) in [("weights.h5", false), ("legacy.h5", true)] {
            let path = dir.join(format!("{name}.{suffix}"));
            if legacy {
                m.save_legacy_h5_weights(&path).unwrap();
            } else {
                m.save_keras_weights(&path).unwrap();
            }
            let mut fresh = m.to_sequential().seed(7).build().unwrap();
            assert_ne!(bits(&fresh), bits(&m), "{name}: the fresh model must start from other weights");
            fresh.load_keras_weights(&path).unwrap();
            assert_eq!(bits(&fresh), bits(&m), "{name}.{suffix}");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_failed_save_leaves_the_old_file() {
    let dir = temp_dir("atomic");
    let (_, m) = models().remove(0);
    let path = dir.join("m.keras");
    m.save_keras(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // A directory where the file's parent should be: the save fails, nothing is replaced.
    let err = m.save_keras(dir.join("no/such/dir/m.keras")).unwrap_err().to_string();
    assert!(err.contains("m.keras"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    std::fs::remove_dir_all(dir).ok();
}

fn anchors_python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let py = Path::new(&home).join(".cache/convnet-anchors-venv/bin/python");
    py.exists().then_some(py)
}

/// Writes every model in the three formats with convnet's predictions beside
/// them, then runs `check_keras_load.py` in the anchors' Python: Keras must
/// load each `.keras` file and predict what convnet predicts, read the
/// trainable flags, and load both weight files bit-identically. Skipped, with
/// a message, where that Python is not installed.
#[test]
fn keras_loads_what_convnet_writes() {
    let Some(py) = anchors_python() else {
        eprintln!(
            "SKIPPED keras_loads_what_convnet_writes: no ~/.cache/convnet-anchors-venv/bin/python (the anchors' \
             Keras); see docs/KERAS.md"
        );
        return;
    };
    let dir = temp_dir("keras");
    for (name, m) in models() {
        let (x, e) = inputs(name);
        let y = m.predict(&x, 2).unwrap();
        m.save_keras(dir.join(format!("{name}.keras"))).unwrap();
        m.save_keras_weights(dir.join(format!("{name}.weights.h5"))).unwrap();
        m.save_legacy_h5_weights(dir.join(format!("{name}.legacy.h5"))).unwrap();
        let trainable: serde_json::Map<String, Value> =
            m.layers().iter().map(|l| (l.name.clone(), json!(l.trainable))).collect();
        let spec = json!({"input_shape": e["input_shape"], "batch": e["batch"], "inputs": e["inputs"],
                          "outputs": y.data(), "trainable": trainable});
        std::fs::write(dir.join(format!("{name}.json")), spec.to_string()).unwrap();
    }
    let out = std::process::Command::new(&py).arg(fixture("check_keras_load.py")).arg(&dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "Keras disagrees with convnet's files in {}:\n{text}", dir.display());
    assert!(text.contains("agrees with convnet"), "{text}");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn trainable_flags_survive_the_safetensors_model_file_too() {
    let dir = temp_dir("safetensors");
    let mut m: Model =
        Sequential::from_json(&convnet::mnist_convnet().build().unwrap().to_json()).unwrap().build().unwrap();
    m.set_trainable_from("conv2d_2").unwrap();
    let path = dir.join("m.safetensors");
    m.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    let flags = |m: &Model| m.layers().iter().map(|l| l.trainable).collect::<Vec<_>>();
    assert_eq!(flags(&back), flags(&m));
    assert_eq!(back.trainable_param_count(), m.trainable_param_count());
    assert!(m.trainable_param_count() < m.param_count());
    std::fs::remove_dir_all(dir).ok();
}

//! Weights on disk: round trips, and files that must be rejected without
//! touching the model.

use convnet::Activation::{Relu, Softmax};
use convnet::{mnist_convnet, Conv2D, Dense, Error, Flatten, Model, Sequential};
use std::path::PathBuf;

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convnet-weights-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn params_bits(m: &Model) -> Vec<(String, Vec<u32>)> {
    m.weights().iter().map(|(n, v)| (n.to_string(), v.data().iter().map(|x| x.to_bits()).collect())).collect()
}

#[test]
fn save_then_load_restores_every_bit() {
    let dir = tmp_dir("roundtrip");
    let a = mnist_convnet().seed(1).build().unwrap();
    let mut b = mnist_convnet().seed(2).build().unwrap();
    assert_ne!(params_bits(&a), params_bits(&b));
    let path = dir.join("w.safetensors");
    a.save_weights(&path).unwrap();
    b.load_weights(&path).unwrap();
    assert_eq!(params_bits(&a), params_bits(&b));
    // No temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).collect();
    assert_eq!(leftovers.len(), 1);

    let whole = dir.join("model.safetensors");
    a.save(&whole).unwrap();
    let c = Model::load(&whole).unwrap();
    assert_eq!(c.summary(), a.summary());
    assert_eq!(params_bits(&a), params_bits(&c));
    // A weights-only file has no architecture.
    assert!(matches!(Model::load(&path), Err(Error::WeightsFile { .. })));
    std::fs::remove_dir_all(dir).unwrap();
}

fn assert_rejected(model: &mut Model, bytes: &[u8], needle: &str) {
    let before = params_bits(model);
    let err = model.load_weights_bytes(bytes).expect_err("must be rejected");
    let msg = err.to_string();
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    assert_eq!(before, params_bits(model), "model changed by a rejected file");
}

#[test]
fn wrong_names_shapes_and_corrupt_files_leave_the_model_unchanged() {
    let mut model = mnist_convnet().seed(3).build().unwrap();
    let good = mnist_convnet().seed(4).build().unwrap().weights_to_bytes().unwrap();

    // A model of another architecture: same first names, different shapes.
    let other = Sequential::new()
        .add(Conv2D::new(16, (3, 3)).activation(Relu).input_shape((28, 28, 1)))
        .add(Flatten::new())
        .add(Dense::new(10).activation(Softmax))
        .build()
        .unwrap();
    assert_rejected(&mut model, &other.weights_to_bytes().unwrap(), "conv2d/kernel has shape [3, 3, 1, 16]");

    // Extra tensor names.
    let renamed = Sequential::new().add(Conv2D::new(32, (3, 3)).name("c").input_shape((28, 28, 1))).build().unwrap();
    assert_rejected(&mut model, &renamed.weights_to_bytes().unwrap(), "not in the model: c/bias, c/kernel");

    // Truncations at every interesting point, and garbage.
    for cut in [0, 4, 8, 20, good.len() / 2, good.len() - 1] {
        assert_rejected(&mut model, &good[..cut], "");
    }
    assert_rejected(&mut model, &good[..7], "shorter than");
    assert_rejected(&mut model, &good[..good.len() - 4], "truncated");
    let mut corrupt = good.clone();
    corrupt[10] = b'!';
    assert_rejected(&mut model, &corrupt, "header");
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_rejected(&mut model, &huge, "header");

    // The good file still loads after all that.
    model.load_weights_bytes(&good).unwrap();
}

#[test]
fn missing_file_is_an_io_error_with_the_path() {
    let mut model = mnist_convnet().build().unwrap();
    let err = model.load_weights("/nonexistent/w.safetensors").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/w.safetensors"), "{err}");
    let err = model.save_weights("/nonexistent/dir/w.safetensors").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

//! `convnet convert IN OUT` among `.keras`, Keras HDF5 weights and
//! safetensors: every hop keeps the weights bit for bit.

use convnet::Model;
use std::path::{Path, PathBuf};
use std::process::Command;

fn convnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).env_remove("CONVNET_SIMD").output().unwrap()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras").join(name).display().to_string()
}

fn bits(m: &Model) -> Vec<u32> {
    m.weights().iter().flat_map(|(_, t)| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect()
}

fn ok(args: &[&str]) -> String {
    let out = convnet(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn convert_keeps_weights_bit_identical_through_every_format() {
    let dir = std::env::temp_dir().join(format!("convnet-cli-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let original = convnet::keras::load_model(fixture("nested.keras")).unwrap();
    let (st, keras, w3, legacy, back) = (
        dir.join("m.safetensors"),
        dir.join("m.keras"),
        dir.join("m.weights.h5"),
        dir.join("m.h5"),
        dir.join("back.safetensors"),
    );
    let said = ok(&["convert", &fixture("nested.keras"), s(&st)]);
    assert!(said.contains("safetensors model") && said.contains("parameters"), "{said}");
    ok(&["convert", s(&st), s(&keras)]);
    ok(&["convert", s(&keras), s(&w3)]);
    ok(&["convert", s(&keras), s(&legacy)]);
    // Weights-only files need the architecture: --model names it.
    ok(&["convert", "--model", s(&keras), s(&w3), s(&back)]);
    assert_eq!(bits(&Model::load(&back).unwrap()), bits(&original));
    ok(&["convert", "--model", s(&st), s(&legacy), s(&back)]);
    assert_eq!(bits(&Model::load(&back).unwrap()), bits(&original));
    let k = convnet::keras::load_model(&keras).unwrap();
    assert_eq!(bits(&k), bits(&original));
    assert_eq!(k.to_sequential(), original.to_sequential());

    // A weights-only file without --model, and an unknown output extension: clear errors.
    let out = convnet(&["convert", s(&w3), s(&dir.join("x.safetensors"))]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("m.weights.h5") && err.contains("build the model"), "{err}");
    let out = convnet(&["convert", s(&keras), s(&dir.join("x.onnx"))]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("x.onnx") && err.contains(".weights.h5"), "{err}");
    assert!(!dir.join("x.onnx").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bench_step_freezes_below_trainable_from() {
    let said = ok(&["bench", "step", "--model", "mnist", "--batch-size", "4", "--trainable-from", "dense", "--json"]);
    assert!(said.contains("median_s"), "{said}");
    let out = convnet(&["bench", "step", "--model", "mnist", "--batch-size", "4", "--trainable-from", "block5_conv1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("block5_conv1") && err.contains("conv2d"), "{err}");
}

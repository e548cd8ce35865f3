//! The CLI on Keras files and the built-in VGG16: `summary --model`, and
//! `predict --weights` with a Keras model.

use std::path::PathBuf;
use std::process::Command;

fn convnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).env_remove("CONVNET_SIMD").output().unwrap()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras").join(name).display().to_string()
}

#[test]
fn summary_of_keras_files_and_vgg16() {
    for file in ["functional.keras", "functional.h5"] {
        let out = convnet(&["summary", "--model", &fixture(file)]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.starts_with("Model: \"chain\"\n"), "{text}");
        assert!(text.contains("stem (Conv2D)                (None, 6, 5, 5)           95"), "{text}");
    }
    let out = convnet(&["summary", "--model", "vgg16"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("block5_pool (MaxPooling2D)   (None, 4, 4, 512)         0"), "{text}");
    assert!(text.contains("Total params: 14,714,688"), "{text}");
    // A file that is not a model: exit 1, the file named.
    let out = convnet(&["summary", "--model", &fixture("branching.keras")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("branching.keras") && err.contains("not a single chain"), "{err}");
}

//! Keras files in: every fixture written by Keras 3.15 (see
//! `tests/fixtures/keras/make_fixtures.py`) loads and predicts what Keras
//! predicted, and bad files are clear errors that leave the model unchanged.

use convnet::Activation::{Relu, Sigmoid, Softmax, Tanh};
use convnet::{
    AveragePooling2D, Conv2D, Dense, DepthwiseConv2D, Dropout, Flatten, MaxPooling2D, Model, Padding, SeparableConv2D,
    Sequential,
};
use convnet_tensor::{Shape, Tensor};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras").join(name)
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn dims(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// Predicts the fixture's inputs and compares with Keras's outputs, within
/// 1e-5 relative to the larger of the value and the output's scale.
fn assert_predicts_like_keras(model: &Model, name: &str) {
    let e = expected(name);
    let mut shape = vec![e["batch"].as_u64().unwrap() as usize];
    shape.extend(dims(&e["input_shape"]));
    let x = Tensor::from_slice(Shape::new(&shape).unwrap(), &floats(&e["inputs"])).unwrap();
    let want = floats(&e["outputs"]);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    // Batch 1 runs the inference plan on the calling thread, batch 2 on the pool.
    for batch in [1, 2] {
        let y = model.predict(&x, batch).unwrap();
        assert_eq!(y.data().len(), want.len(), "{name}: output length");
        for (i, (a, b)) in y.data().iter().zip(&want).enumerate() {
            let tol = 1e-5 * b.abs().max(scale);
            assert!(
                (a - b).abs() <= tol,
                "{name}: batch {batch}: output {i}: convnet {a}, Keras {b} (tolerance {tol})"
            );
        }
    }
    assert_eq!(model.param_count() as u64, e["params"].as_u64().unwrap(), "{name}: parameter count");
}

fn bits(m: &Model) -> Vec<u32> {
    m.weights().iter().flat_map(|(_, t)| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>()).collect()
}

/// The layers of Keras's table that convnet keeps (Keras's `InputLayer` is
/// not a layer here), as (name, output shape, params).
fn keras_rows(name: &str) -> Vec<(String, Vec<usize>, u64)> {
    expected(name)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["class_name"] != "InputLayer")
        .map(|l| (l["name"].as_str().unwrap().to_string(), dims(&l["output_shape"]), l["params"].as_u64().unwrap()))
        .collect()
}

fn rows(m: &Model) -> Vec<(String, Vec<usize>, u64)> {
    m.layers().iter().map(|l| (l.name.clone(), l.output.clone(), l.param_count as u64)).collect()
}

/// The fixture's Sequential model, built here with convnet's own names.
fn sequential_here() -> Sequential {
    Sequential::new()
        .add(Conv2D::new(4, (3, 3)).activation(Relu).input_shape((12, 12, 3)))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(6, (3, 3)).padding(Padding::Same).activation(Tanh))
        .add(AveragePooling2D::new((2, 2)))
        .add(Flatten::new())
        .add(Dropout::new(0.3))
        .add(Dense::new(8).activation(Relu))
        .add(Dense::new(3).activation(Softmax))
}

fn functional_here() -> Sequential {
    Sequential::new()
        .add(Conv2D::new(5, (3, 3)).strides((2, 2)).padding(Padding::Same).activation(Sigmoid).input_shape((11, 10, 2)))
        .add(Conv2D::new(4, (2, 3)).use_bias(false))
        .add(MaxPooling2D::new((2, 2)).strides((1, 1)))
        .add(Flatten::new())
        .add(Dense::new(6).activation(Tanh))
        .add(Dense::new(2))
}

fn separable_here() -> Sequential {
    Sequential::new()
        .add(Conv2D::new(6, (3, 3)).groups(2).activation(Relu).input_shape((9, 9, 4)))
        .add(DepthwiseConv2D::new((3, 3)).depth_multiplier(2).padding(Padding::Same).strides((2, 2)))
        .add(SeparableConv2D::new(5, (2, 2)).activation(Tanh))
        .add(Flatten::new())
        .add(Dense::new(3).activation(Softmax))
}

fn tiny_vgg_here() -> Sequential {
    Sequential::new()
        .add(
            Conv2D::new(4, (3, 3))
                .padding(Padding::Same)
                .activation(Relu)
                .name("block1_conv1")
                .input_shape((16, 16, 3)),
        )
        .add(Conv2D::new(4, (3, 3)).padding(Padding::Same).activation(Relu).name("block1_conv2"))
        .add(MaxPooling2D::new((2, 2)).name("block1_pool"))
        .add(Conv2D::new(8, (3, 3)).padding(Padding::Same).activation(Relu).name("block2_conv1"))
        .add(MaxPooling2D::new((2, 2)).name("block2_pool"))
}

/// The book's `Sequential([conv_base, Flatten, Dense, Dense])`, built flat here.
fn nested_here() -> Sequential {
    let mut s = tiny_vgg_here();
    s = s.add(Flatten::new()).add(Dense::new(5).activation(Relu)).add(Dense::new(1).activation(Sigmoid));
    s
}

#[test]
fn keras_archives_load_and_predict_like_keras() {
    for name in ["sequential", "functional", "separable", "augmented", "nested"] {
        let m = convnet::keras::load_model(fixture(&format!("{name}.keras"))).unwrap();
        assert_predicts_like_keras(&m, name);
        if name != "nested" {
            // Layer names, shapes and counts as Keras listed them.
            assert_eq!(rows(&m), keras_rows(name), "{name}");
        }
    }
    let m = convnet::keras::load_model(fixture("functional.keras")).unwrap();
    assert_eq!(m.name(), "chain");
}

#[test]
fn legacy_h5_models_load_and_predict_like_keras() {
    for name in ["sequential", "functional", "separable", "augmented", "nested"] {
        let m = convnet::keras::load_model(fixture(&format!("{name}.h5"))).unwrap();
        assert_predicts_like_keras(&m, name);
    }
}

#[test]
fn keras3_weights_load_into_models_built_here() {
    for (name, seq) in [
        ("sequential", sequential_here()),
        ("functional", functional_here()),
        ("separable", separable_here()),
        ("nested", nested_here()),
    ] {
        let mut m = seq.build().unwrap();
        m.load_keras_weights(fixture(&format!("{name}.weights.h5"))).unwrap();
        assert_predicts_like_keras(&m, name);
    }
}

#[test]
fn legacy_weights_load_into_models_built_here() {
    // The weights of a legacy model.save("x.h5") file, as model.load_weights reads them.
    let mut m = nested_here().build().unwrap();
    m.load_keras_weights(fixture("nested.h5")).unwrap();
    assert_predicts_like_keras(&m, "nested");
    // The ImageNet files' layout: fixed-length strings, W_1:0 / b_1:0 datasets
    // in the layer group, empty float64 weight_names, layer_names0/1 split.
    let mut m = tiny_vgg_here().build().unwrap();
    m.load_keras_weights(fixture("vgg_legacy.legacy.weights.h5")).unwrap();
    assert_predicts_like_keras(&m, "vgg_legacy");
}

fn error_of<T: std::fmt::Debug>(r: convnet::Result<T>) -> String {
    r.expect_err("must fail").to_string()
}

#[test]
fn bad_archives_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("convnet-keras-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(fixture("sequential.keras")).unwrap();

    let truncated = dir.join("truncated.keras");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let e = error_of(convnet::keras::load_model(&truncated));
    assert!(e.contains("truncated.keras") && e.contains("zip"), "{e}");

    // The same archive without its weights member.
    let missing = dir.join("missing.keras");
    {
        let mut src = zip::ZipArchive::new(std::io::Cursor::new(&good)).unwrap();
        let mut w = zip::ZipWriter::new(std::fs::File::create(&missing).unwrap());
        for i in 0..src.len() {
            let f = src.by_index(i).unwrap();
            if f.name() != "model.weights.h5" {
                w.raw_copy_file(f).unwrap();
            }
        }
        w.finish().unwrap();
    }
    let e = error_of(convnet::keras::load_model(&missing));
    assert!(e.contains("missing.keras") && e.contains("model.weights.h5"), "{e}");

    let e = error_of(convnet::keras::load_model(fixture("unknown_layer.keras")));
    assert!(e.contains("layer bn") && e.contains("BatchNormalization"), "{e}");

    for file in ["branching.keras", "branching.h5"] {
        let e = error_of(convnet::keras::load_model(fixture(file)));
        assert!(e.contains("not a single chain") && e.contains("layer right"), "{file}: {e}");
    }

    // A weights-only file is not a model.
    let e = error_of(convnet::keras::load_model(fixture("vgg_legacy.legacy.weights.h5")));
    assert!(e.contains("model_config"), "{e}");
    // Nor is a directory or a FIFO-like non-file.
    let e = error_of(convnet::keras::load_model(&dir));
    assert!(e.contains("not a regular file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_weights_leave_the_model_unchanged() {
    let dir = std::env::temp_dir().join(format!("convnet-keras-badw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A weight of the wrong shape: the second conv has 7 filters here, 6 in the file.
    let mut m = Sequential::new()
        .add(Conv2D::new(4, (3, 3)).activation(Relu).input_shape((12, 12, 3)))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(7, (3, 3)).padding(Padding::Same).activation(Tanh))
        .add(AveragePooling2D::new((2, 2)))
        .add(Flatten::new())
        .add(Dense::new(8).activation(Relu))
        .add(Dense::new(3).activation(Softmax))
        .build()
        .unwrap();
    let before = bits(&m);
    for file in ["sequential.weights.h5", "sequential.h5"] {
        let e = error_of(m.load_keras_weights(fixture(file)));
        assert!(e.contains(file) && e.contains("(3, 3, 4, 6)") && e.contains("(3, 3, 4, 7)"), "{e}");
        assert_eq!(bits(&m), before, "{file} changed the model");
    }

    // A file for another architecture (more conv layers than the model has).
    let mut small = sequential_here().build().unwrap();
    let before = bits(&small);
    let e = error_of(small.load_keras_weights(fixture("nested.weights.h5")));
    assert!(e.contains("conv2d") && e.contains("the file 3"), "{e}");
    let e = error_of(small.load_keras_weights(fixture("vgg_legacy.legacy.weights.h5")));
    assert!(e.contains("weight tensors") && e.contains("block1_conv1"), "{e}");
    assert_eq!(bits(&small), before);

    // Truncated and garbage HDF5.
    let good = std::fs::read(fixture("sequential.weights.h5")).unwrap();
    for (tag, bytes) in [("truncated", &good[..good.len() / 2]), ("head", &good[..600]), ("garbage", &b"hello"[..])] {
        let p = dir.join(format!("{tag}.weights.h5"));
        std::fs::write(&p, bytes).unwrap();
        let e = error_of(small.load_keras_weights(&p));
        assert!(e.contains(&format!("{tag}.weights.h5")), "{e}");
        assert_eq!(bits(&small), before, "{tag} changed the model");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn configs_read_without_weights() {
    let json = r#"{"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [null, 8, 8, 1]}},
        {"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3, "dtype": "float16"}}]}}"#;
    let e = convnet::keras::sequential_from_config(json).unwrap_err().to_string();
    assert!(e.contains("layer c") && e.contains("float16"), "{e}");
    let json = r#"{"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [null, 8, 8, 1]}},
        {"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3, "activation": "gelu"}}]}}"#;
    let e = convnet::keras::sequential_from_config(json).unwrap_err().to_string();
    assert!(e.contains("layer c") && e.contains("gelu"), "{e}");
    // A declared model too big to build is refused before anything is allocated.
    let json = r#"{"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [null, 100000]}},
        {"class_name": "Dense", "config": {"name": "huge", "units": 1000000000}}]}}"#;
    let mut zip_bytes = Vec::new();
    {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(&mut zip_bytes));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("config.json", opts).unwrap();
        std::io::Write::write_all(&mut w, json.as_bytes()).unwrap();
        w.start_file("model.weights.h5", opts).unwrap();
        w.finish().unwrap();
    }
    let e = convnet::keras::model_from_bytes(zip_bytes, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("huge") && e.contains("parameters"), "{e}");
}

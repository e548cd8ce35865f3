//! VGG16 against what Keras 3.15 built (`tests/fixtures/keras/vgg16_summary.json`
//! and `vgg16_preprocess.json`, written by `make_fixtures.py`).

use convnet::applications::vgg16::{preprocess_input, Pooling, Vgg16};
use convnet::layers::InputShape;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Keras's rows without its InputLayer (not a layer in convnet): (name (Class), shape, params).
fn keras_rows(key: &str) -> Vec<(String, Vec<usize>, usize)> {
    let t = fixture("vgg16_summary.json");
    t["models"][key]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["class_name"] != "InputLayer")
        .map(|l| {
            (
                format!("{} ({})", l["name"].as_str().unwrap(), l["class_name"].as_str().unwrap()),
                l["output_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect(),
                l["params"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

/// Rows of the definition, by shape inference alone (no weights allocated).
fn rows(v: &Vgg16) -> Vec<(String, Vec<usize>, usize)> {
    let seq = v.sequential().unwrap();
    let mut input = match seq.layers[0].declared_input_shape() {
        Some(InputShape(d)) => d.clone(),
        None => panic!("no input shape"),
    };
    let mut out = Vec::new();
    for l in &seq.layers {
        let name = l.user_name().unwrap().to_string();
        let shape = l.output_shape(&name, &input).unwrap();
        let params = l.params(&input).iter().map(|p| p.dims.iter().product::<usize>()).sum();
        out.push((format!("{name} ({})", l.class_name()), shape.clone(), params));
        input = shape;
    }
    out
}

#[test]
fn conv_base_summary_is_keras_s() {
    let v = Vgg16::new().include_top(false).input_shape((150, 150, 3));
    let want = keras_rows("notop_150");
    assert_eq!(rows(&v), want);
    let model = v.build().unwrap();
    assert_eq!(model.param_count(), 14_714_688);
    // The printed table holds every Keras row: "block1_conv1 (Conv2D)  (None, 150, 150, 64)  1792".
    let summary = model.summary();
    assert!(summary.starts_with("Model: \"vgg16\"\n"), "{summary}");
    for (name, shape, params) in &want {
        let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let row = summary
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name} in\n{summary}"));
        let cells: Vec<&str> = [&row[..29], &row[29..55], &row[55..]].iter().map(|c| c.trim()).collect();
        assert_eq!(cells, [name.as_str(), &format!("(None, {})", shape.join(", ")), &params.to_string()]);
    }
    assert!(summary.contains("Total params: 14,714,688\n"), "{summary}");
    assert!(summary.contains("Trainable params: 14,714,688\n"), "{summary}");
}

#[test]
fn full_model_layers_are_keras_s() {
    // 138 million parameters: compared by shape inference, not built.
    let v = Vgg16::new();
    assert_eq!(rows(&v), keras_rows("top_224"));
    let total: usize = rows(&v).iter().map(|r| r.2).sum();
    assert_eq!(total as u64, fixture("vgg16_summary.json")["models"]["top_224"]["params"].as_u64().unwrap());
}

#[test]
fn pooling_avg_and_max_are_keras_s() {
    for (key, pooling) in [("notop_150_avg", Pooling::Avg), ("notop_150_max", Pooling::Max)] {
        let v = Vgg16::new().include_top(false).input_shape((150, 150, 3)).pooling(Some(pooling));
        assert_eq!(rows(&v), keras_rows(key), "{key}");
    }
    // With the top, pooling is ignored, as in Keras.
    assert_eq!(rows(&Vgg16::new().pooling(Some(Pooling::Max))), keras_rows("top_224"));
    assert!("mean".parse::<Pooling>().is_err());
}

#[test]
fn input_shapes_below_32_are_refused() {
    let e = Vgg16::new().include_top(false).input_shape((31, 64, 3)).build().unwrap_err().to_string();
    assert!(e.contains("at least 32"), "{e}");
}

#[test]
fn preprocess_input_is_keras_caffe_mode() {
    let f = fixture("vgg16_preprocess.json");
    let floats = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>();
    let mut x = floats(&f["inputs"]);
    preprocess_input(&mut x).unwrap();
    let want = floats(&f["outputs"]);
    for (i, (a, b)) in x.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "value {i}: convnet {a}, Keras {b}");
    }
    assert!(preprocess_input(&mut [0.0; 4]).is_err());
}

#[test]
fn imagenet_weights_of_another_shape_are_refused_naming_the_tensor() {
    // The tiny VGG-shaped fixture in the ImageNet files' layout: the right
    // layer names, the wrong sizes.
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras/vgg_legacy.legacy.weights.h5");
    let e = Vgg16::new().include_top(false).input_shape((32, 32, 3)).load_imagenet(&p).unwrap_err().to_string();
    assert!(e.contains("vgg_legacy.legacy.weights.h5") && e.contains("6 weight tensors"), "{e}");
    let e = Vgg16::new().input_shape((64, 64, 3)).load_imagenet(&p).unwrap_err().to_string();
    assert!(e.contains("224"), "{e}");
}

/// Loads a real-size VGG16 notop file in the ImageNet layout. Run with
/// `make_fixtures.py --vgg16-notop /tmp/vgg16_notop.h5`, then
/// `CONVNET_VGG16_NOTOP=/tmp/vgg16_notop.h5 cargo test -p convnet --test vgg16 -- --ignored`.
#[test]
#[ignore]
fn loads_a_full_size_notop_file() {
    let path = std::env::var("CONVNET_VGG16_NOTOP").expect("set CONVNET_VGG16_NOTOP");
    let m = Vgg16::new().include_top(false).input_shape((150, 150, 3)).load_imagenet(&path).unwrap();
    assert_eq!(m.param_count(), 14_714_688);
}

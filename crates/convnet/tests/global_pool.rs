//! `GlobalAveragePooling2D` / `GlobalMaxPooling2D` and the chapter's binary
//! ending (`Dense(1, sigmoid)` + binary cross-entropy), against numbers real
//! Keras 3.15 produced (`tests/fixtures/keras/make_layer_fixtures.py`),
//! plus their gradients checked by central differences.

use convnet::optimizers::Sgd;
use convnet::Activation::{Relu, Sigmoid, Tanh};
use convnet::{
    Conv2D, Dense, FitOptions, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Layer, Loss, Metric, Model,
    Sequential, Verbose,
};
use convnet_tensor::{Shape, Tensor};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras").join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn dims(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= tol * b.abs().max(1.0), "{what}[{i}]: convnet {a}, Keras {b}");
    }
}

/// Keras's table rows (name, output shape, params) without the InputLayer.
fn keras_rows(e: &Value) -> Vec<(String, Vec<usize>, u64)> {
    e["layers"]
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

#[test]
fn keras_models_with_global_pooling_load_and_predict_like_keras() {
    for name in ["global_avg", "global_max"] {
        let e = json(&format!("{name}.json"));
        let m = convnet::keras::load_model(fixture(&format!("{name}.keras"))).unwrap();
        assert_eq!(rows(&m), keras_rows(&e), "{name}: summary rows");
        let mut shape = vec![e["batch"].as_u64().unwrap() as usize];
        shape.extend(dims(&e["input_shape"]));
        let x = Tensor::from_slice(Shape::new(&shape).unwrap(), &floats(&e["inputs"])).unwrap();
        close(name, m.predict(&x, 2).unwrap().data(), &floats(&e["outputs"]), 1e-5);
        let class = if name == "global_avg" { "GlobalAveragePooling2D" } else { "GlobalMaxPooling2D" };
        assert_eq!(m.layers()[1].layer.class_name(), class);
        // Keras 2's table cuts the "name (Class)" column at 28 characters, as here.
        let row = format!("{} ({class})", m.layers()[1].name);
        assert!(m.summary().contains(&row[..row.len().min(28)]), "{}", m.summary());
    }
}

/// The chapter's ending: one sigmoid unit, `binary_crossentropy`, accuracy at
/// the 0.5 threshold; Keras's evaluate and one SGD step, matched.
#[test]
fn binary_cross_entropy_evaluates_and_steps_like_keras() {
    let e = json("global_max_bce.json");
    let mut m = convnet::keras::load_model(fixture("global_max.keras")).unwrap();
    // The fixture shifted the last bias before evaluating.
    let mut w: Vec<Vec<f32>> = m.weights().iter().map(|(_, t)| t.data().to_vec()).collect();
    let shift = e["last_bias_shift"].as_f64().unwrap() as f32;
    w.last_mut().unwrap()[0] += shift;
    m.set_weights(&w).unwrap();
    let x = Tensor::from_slice(Shape::nhwc(8, 6, 5, 2), &floats(&e["inputs"])).unwrap();
    let y = Tensor::from_slice(Shape::matrix(8, 1), &floats(&e["labels"])).unwrap();
    close("probs", m.predict(&x, 8).unwrap().data(), &floats(&e["probs"]), 1e-5);
    let lr = e["learning_rate"].as_f64().unwrap() as f32;
    m.compile(Sgd::new(lr), Loss::BinaryCrossentropy, &[Metric::Accuracy]).unwrap();
    let (loss, acc) = m.evaluate(&x, &y, 8).unwrap();
    assert!((loss - e["loss"].as_f64().unwrap()).abs() < 1e-5, "loss {loss} vs Keras {}", e["loss"]);
    assert_eq!(acc, e["accuracy"].as_f64().unwrap(), "binary accuracy");
    let opts = FitOptions { epochs: 1, batch_size: 8, shuffle: false, verbose: Verbose::Silent, ..Default::default() };
    m.fit(&x, &y, opts).unwrap();
    for ((name, got), want) in m.weights().iter().zip(e["weights_after_step"].as_array().unwrap()) {
        close(name, got.data(), &floats(want), 2e-5);
    }
}

/// A small model's mean loss on fixed data.
fn loss_of(m: &Model, x: &Tensor, y: &Tensor) -> f64 {
    m.evaluate(x, y, 64).unwrap().0
}

/// Central differences of the evaluated loss against the gradient one SGD
/// step (learning rate 1, no shuffling) applies, for every weight of the
/// layers in front of the global pooling (whose gradient passes through it).
fn gradcheck(pool: Layer, input: (usize, usize, usize), loss: Loss, outputs: usize) {
    let build = || {
        Sequential::new()
            .add(Conv2D::new(3, (2, 2)).activation(Tanh).input_shape(input))
            .add(pool.clone())
            .add(Flatten::new())
            .add(Dense::new(outputs).activation(if outputs == 1 { Sigmoid } else { convnet::Activation::Softmax }))
            .seed(7)
            .build()
            .unwrap()
    };
    let (h, w, c) = input;
    let n = 4;
    let mut rng = convnet_tensor::Rng::new(3);
    let xs: Vec<f32> = (0..n * h * w * c).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let x = Tensor::from_slice(Shape::nhwc(n, h, w, c), &xs).unwrap();
    // One sigmoid unit: alternating 0/1; softmax: one-hot rows, class (row % outputs).
    let ys: Vec<f32> = (0..n * outputs)
        .map(|i| if outputs == 1 { (i % 2) as f32 } else { ((i / outputs) % outputs == i % outputs) as u8 as f32 })
        .collect();
    let y = Tensor::from_slice(Shape::matrix(n, outputs), &ys).unwrap();
    let mut m = build();
    m.compile(Sgd::new(1.0), loss, &[]).unwrap();
    let before: Vec<Vec<f32>> = m.weights().iter().map(|(_, t)| t.data().to_vec()).collect();
    let opts = FitOptions { epochs: 1, batch_size: n, shuffle: false, verbose: Verbose::Silent, ..Default::default() };
    m.fit(&x, &y, opts).unwrap();
    let after: Vec<Vec<f32>> = m.weights().iter().map(|(_, t)| t.data().to_vec()).collect();
    let mut probe = build();
    probe.compile(Sgd::new(1.0), loss, &[]).unwrap();
    let step = 1e-3f32;
    // The conv kernel and bias (the parameters whose gradient crosses the pooling).
    for t in 0..2 {
        for i in 0..before[t].len() {
            let analytic = (before[t][i] - after[t][i]) as f64;
            let mut at = |d: f32| {
                let mut w = before.clone();
                w[t][i] += d;
                probe.set_weights(&w).unwrap();
                loss_of(&probe, &x, &y)
            };
            let numeric = (at(step) - at(-step)) / (2.0 * step as f64);
            let tol = 2e-3 + 2e-2 * numeric.abs();
            assert!(
                (analytic - numeric).abs() <= tol,
                "{:?} weight {t}[{i}]: gradient {analytic}, central difference {numeric}",
                pool.class_name()
            );
        }
    }
}

#[test]
fn global_pooling_gradients_match_central_differences() {
    gradcheck(GlobalAveragePooling2D::new().into(), (5, 4, 2), Loss::CategoricalCrossentropy, 3);
    gradcheck(GlobalAveragePooling2D::new().keepdims(true).into(), (4, 4, 1), Loss::BinaryCrossentropy, 1);
    gradcheck(GlobalMaxPooling2D::new().into(), (5, 4, 2), Loss::BinaryCrossentropy, 1);
    gradcheck(GlobalMaxPooling2D::new().keepdims(true).into(), (3, 5, 2), Loss::CategoricalCrossentropy, 3);
}

#[test]
fn global_pooling_shapes_names_json_and_files() {
    let seq = Sequential::new()
        .add(Conv2D::new(4, (3, 3)).activation(Relu).input_shape((9, 8, 3)))
        .add(GlobalMaxPooling2D::new().keepdims(true))
        .add(GlobalAveragePooling2D::new())
        .add(Dense::new(1).activation(Sigmoid));
    let m = seq.clone().build().unwrap();
    let got: Vec<_> = m.layers().iter().map(|l| (l.name.as_str(), l.output.clone(), l.param_count)).collect();
    assert_eq!(
        got,
        [
            ("conv2d", vec![7, 6, 4], 112),
            ("global_max_pooling2d", vec![1, 1, 4], 0),
            ("global_average_pooling2d", vec![4], 0),
            ("dense", vec![1], 5),
        ]
    );
    let summary = m.summary();
    assert!(summary.contains("global_max_pooling2d (Global (None, 1, 1, 4)"), "{summary}");
    // Architecture JSON round trip, and a whole-model file.
    let json = m.to_json();
    assert!(json.contains("\"class_name\": \"GlobalAveragePooling2D\""), "{json}");
    assert!(json.contains("\"keepdims\": true"), "{json}");
    let again = Model::from_json(&json).unwrap();
    assert_eq!(again.to_sequential(), m.to_sequential());
    let dir = std::env::temp_dir().join(format!("convnet-gpool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    m.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    let x = Tensor::from_slice(Shape::nhwc(2, 9, 8, 3), &(0..432).map(|i| (i % 13) as f32 / 13.0).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(loaded.predict(&x, 2).unwrap().data(), m.predict(&x, 2).unwrap().data());
    std::fs::remove_dir_all(&dir).ok();
    // A global pool needs an (h, w, c) input.
    let e = Sequential::new().add(Dense::new(3).input_shape(5)).add(GlobalAveragePooling2D::new()).build().unwrap_err();
    assert!(e.to_string().contains("GlobalAveragePooling2D needs an (h, w, c) input"), "{e}");
}

//! `RandomShear` against Keras 3.15 (`tests/fixtures/keras/make_layer_fixtures.py`):
//! Keras's outputs for a fixed shear magnitude are the kernels' warp by
//! Keras's matrix `[1, sx, 0, sy, 1, 0]` with one sign per image, and the
//! layer reads from Keras configs, is the identity outside training and
//! trains in a fused run with the other random layers.

use convnet::optimizers::Sgd;
use convnet::{
    Conv2D, Dense, FillMode, FitOptions, Flatten, Layer, Loss, RandomRotation, RandomShear, Sequential, Verbose,
};
use convnet_kernels::image::{self, affine_warp, Affine, WarpOptions, WarpShape};
use convnet_tensor::{Shape, Tensor};
use serde_json::Value;
use std::path::PathBuf;

fn fixture() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras/random_shear.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn keras_shears_by_its_matrix_with_one_sign_per_image() {
    let e = fixture();
    let dims: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let (n, h, w, c) = (dims[0], dims[1], dims[2], dims[3]);
    let x = floats(&e["inputs"]);
    let item = h * w * c;
    for case in e["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (xf, yf) = (floats(&case["x_factor"]), floats(&case["y_factor"]));
        assert!(xf[0] == xf[1] || xf[0] == -xf[1], "{name}: a fixed magnitude");
        let (sx, sy) = (xf[1].abs(), yf[1].abs());
        let fill = match case["fill_mode"].as_str().unwrap() {
            "reflect" => image::FillMode::Reflect,
            "nearest" => image::FillMode::Nearest,
            other => panic!("{other}"),
        };
        let opts = WarpOptions { fill_mode: fill, interpolation: image::Interpolation::Bilinear, fill_value: 0.0 };
        let want = floats(&case["outputs"]);
        let mut signs = Vec::new();
        for i in 0..n {
            let img = &x[i * item..][..item];
            let keras = &want[i * item..][..item];
            let matches = |sign: f32| {
                let t = Affine { a1: sign * sx, b0: sign * sy, ..Affine::IDENTITY };
                let mut out = vec![f32::NAN; item];
                affine_warp(img, WarpShape { n: 1, h, w, c }, &[t], opts, &mut out).unwrap();
                out.iter().zip(keras).all(|(a, b)| (a - b).abs() <= 1e-3)
            };
            let sign = [1.0, -1.0].into_iter().find(|&s| matches(s));
            signs.push(sign.unwrap_or_else(|| panic!("{name}: image {i} is neither shear sign of Keras's matrix")));
        }
        if sx != 0.0 || sy != 0.0 {
            assert!(signs.contains(&1.0) && signs.contains(&-1.0), "{name}: Keras drew both signs: {signs:?}");
        }
    }
}

#[test]
fn random_shear_is_a_keras_layer_with_no_weights_and_identity_at_inference() {
    let l = RandomShear::new(0.2, (0.1, 0.3));
    assert_eq!((l.x_factor.0, l.x_factor.1, l.y_factor.0, l.y_factor.1), (-0.2, 0.2, 0.1, 0.3));
    assert_eq!(l.fill_mode, FillMode::Reflect);
    let model = Sequential::new()
        .add(RandomShear::new(0.3, 0.1).input_shape((6, 5, 2)))
        .add(Conv2D::new(2, 3))
        .build()
        .unwrap();
    assert_eq!(model.layers()[0].name, "random_shear");
    assert!(model.summary().contains("random_shear (RandomShear)"), "{}", model.summary());
    assert_eq!(model.layers()[0].param_count, 0);
    let json = model.to_json();
    assert!(json.contains("\"RandomShear\""), "{json}");
    assert_eq!(convnet::Model::from_json(&json).unwrap().to_sequential(), model.to_sequential());
    let x = Tensor::from_slice(Shape::nhwc(2, 6, 5, 2), &(0..120).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
    let alone = Sequential::new().add(RandomShear::new(0.5, 0.5).input_shape((6, 5, 2))).build().unwrap();
    assert_eq!(alone.predict(&x, 2).unwrap().data(), x.data());
    for bad in [RandomShear::new(1.5, 0.0), RandomShear::new(0.0, convnet::Factor(0.2, f32::NAN))] {
        let e = Sequential::new().add(bad.input_shape((6, 5, 2))).build().unwrap_err();
        assert!(e.to_string().contains("RandomShear"), "{e}");
    }
    // Read from a Keras config (what Keras 3.15 writes for RandomShear(0.2, (0.1, 0.3), fill_mode="nearest")).
    let cfg = r#"{"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [null, 6, 5, 2], "dtype": "float32", "name": "in"}},
        {"class_name": "RandomShear", "config": {"name": "random_shear", "dtype": "float32", "data_format": "channels_last",
         "x_factor": [-0.2, 0.2], "y_factor": [0.1, 0.3], "fill_mode": "nearest", "interpolation": "bilinear",
         "seed": 3, "fill_value": 0.0}}]}}"#;
    let seq = convnet::keras::sequential_from_config(cfg).unwrap();
    match &seq.layers[0] {
        Layer::RandomShear(l) => {
            assert_eq!((l.x_factor.1, l.y_factor.0, l.fill_mode, l.seed), (0.2, 0.1, FillMode::Nearest, Some(3)))
        }
        other => panic!("{other:?}"),
    }
}

/// A shear fused with a rotation trains (the run of random layers is one
/// warp) and the run is repeatable: same seed, same weights.
#[test]
fn shear_trains_fused_with_other_random_layers_deterministically() {
    let n = 8;
    let x = Tensor::from_slice(
        Shape::nhwc(n, 8, 8, 1),
        &(0..n * 64).map(|i| ((i * 37) % 11) as f32 / 11.0).collect::<Vec<_>>(),
    )
    .unwrap();
    let y = Tensor::from_slice(
        Shape::matrix(n, 2),
        &(0..n).flat_map(|i| if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] }).collect::<Vec<_>>(),
    )
    .unwrap();
    let train = |seed: u64| {
        let mut m = Sequential::new()
            .add(RandomRotation::new(0.1).input_shape((8, 8, 1)))
            .add(RandomShear::new(0.3, 0.2))
            .add(Conv2D::new(2, 3))
            .add(Flatten::new())
            .add(Dense::new(2).activation(convnet::Activation::Softmax))
            .build()
            .unwrap();
        m.compile(Sgd::new(0.1), Loss::CategoricalCrossentropy, &[]).unwrap();
        let opts = FitOptions { epochs: 2, batch_size: 4, seed, verbose: Verbose::Silent, ..Default::default() };
        m.fit(&x, &y, opts).unwrap();
        m.weights().iter().flat_map(|(_, t)| t.data().to_vec()).collect::<Vec<f32>>()
    };
    let (a, b, c) = (train(1), train(1), train(2));
    assert_eq!(a, b, "same seed, same augmentations, same weights");
    assert_ne!(a, c, "another seed draws other shears");
}

//! Grouped, depthwise and separable layers: summary rows, save/load round
//! trips, inference against the kernels' f64 reference, and training.

use convnet::Activation::{Relu, Softmax};
use convnet::{
    Conv2D, Dense, DepthwiseConv2D, FitOptions, Flatten, Loss, Metric, Model, Padding, SeparableConv2D, Sequential,
    Verbose,
};
use convnet_kernels::conv::{reference, ConvShape};
use convnet_optim::Sgd;
use convnet_tensor::{Rng, Shape, Tensor};

fn mobile_block() -> Model {
    Sequential::new()
        .add(Conv2D::new(8, (3, 3)).groups(2).padding(Padding::Same).activation(Relu).input_shape((9, 9, 4)))
        .add(DepthwiseConv2D::new((3, 3)).depth_multiplier(2).strides(2).padding(Padding::Same).activation(Relu))
        .add(SeparableConv2D::new(6, (3, 3)).activation(Relu))
        .add(Flatten::new())
        .add(Dense::new(3).activation(Softmax))
        .seed(3)
        .build()
        .unwrap()
}

#[test]
fn summary_counts_parameters_as_keras_does() {
    let m = mobile_block();
    let rows: Vec<(String, Vec<usize>, usize)> =
        m.layers().iter().map(|l| (l.name.clone(), l.output.clone(), l.param_count)).collect();
    let expect = [
        ("conv2d", vec![9, 9, 8], 3 * 3 * 2 * 8 + 8),
        ("depthwise_conv2d", vec![5, 5, 16], 3 * 3 * 8 * 2 + 16),
        ("separable_conv2d", vec![3, 3, 6], 3 * 3 * 16 + 16 * 6 + 6),
        ("flatten", vec![54], 0),
        ("dense", vec![3], 54 * 3 + 3),
    ];
    for (got, want) in rows.iter().zip(expect) {
        assert_eq!((got.0.as_str(), &got.1, got.2), (want.0, &want.1, want.2));
    }
    let s = m.summary();
    assert!(s.contains("depthwise_conv2d (DepthwiseC"), "{s}");
    assert!(s.contains("separable_conv2d (Separable"), "{s}");
    let names: Vec<String> = m.weights().iter().map(|(n, _)| n.to_string()).collect();
    for n in ["conv2d/kernel", "depthwise_conv2d/depthwise_kernel", "separable_conv2d/pointwise_kernel"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    let shape_of = |n: &str| m.weights().iter().find(|(k, _)| *k == n).map(|(_, t)| t.shape().dims().to_vec());
    assert_eq!(shape_of("conv2d/kernel"), Some(vec![3, 3, 2, 8]));
    assert_eq!(shape_of("depthwise_conv2d/depthwise_kernel"), Some(vec![3, 3, 8, 2]));
    assert_eq!(shape_of("separable_conv2d/pointwise_kernel"), Some(vec![1, 1, 16, 6]));
}

#[test]
fn bad_groups_and_multipliers_are_build_errors() {
    let e = Sequential::new().add(Conv2D::new(6, 3).groups(4).input_shape((5, 5, 4))).build().unwrap_err();
    assert!(e.to_string().contains("groups"), "{e}");
    let e = Sequential::new().add(DepthwiseConv2D::new(3).depth_multiplier(0).input_shape((5, 5, 4))).build();
    assert!(e.is_err());
}

#[test]
fn save_load_round_trip_and_inference_match_the_reference() {
    let m = mobile_block();
    let dir = std::env::temp_dir().join(format!("convnet-separable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    m.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(back.summary(), m.summary());
    let mut rng = Rng::new(5);
    let x = Tensor::uniform(Shape::nhwc(2, 9, 9, 4), -1.0, 1.0, &mut rng).unwrap();
    let (a, b) = (m.predict(&x, 2).unwrap(), back.predict(&x, 2).unwrap());
    assert_eq!(a.data(), b.data());
    std::fs::remove_dir_all(dir).unwrap();

    // A depthwise + separable stack, recomputed with the f64 reference.
    let m = Sequential::new()
        .add(DepthwiseConv2D::new((3, 3)).depth_multiplier(3).padding(Padding::Same).input_shape((6, 7, 2)))
        .add(SeparableConv2D::new(4, (2, 2)).strides(2))
        .seed(9)
        .build()
        .unwrap();
    let x = Tensor::uniform(Shape::nhwc(2, 6, 7, 2), -1.0, 1.0, &mut rng).unwrap();
    let got = m.predict(&x, 2).unwrap();
    let w = |n: &str| m.weights().iter().find(|(k, _)| *k == n).unwrap().1.data().to_vec();
    let s1 = ConvShape::new(2, 6, 7, 2, 6, 3, 3)
        .unwrap()
        .with_groups(2)
        .unwrap()
        .with_padding(convnet_kernels::conv::Padding::Same)
        .unwrap();
    let mut y1 = vec![f32::NAN; s1.output_len()];
    reference::forward(
        &s1,
        x.data(),
        &w("depthwise_conv2d/depthwise_kernel"),
        Some(&w("depthwise_conv2d/bias")),
        &mut y1,
    );
    let s2 = ConvShape::new(2, 6, 7, 6, 6, 2, 2).unwrap().with_groups(6).unwrap().with_stride(2, 2).unwrap();
    let mut y2 = vec![f32::NAN; s2.output_len()];
    reference::forward(&s2, &y1, &w("separable_conv2d/depthwise_kernel"), None, &mut y2);
    let s3 = ConvShape::new(2, s2.out_h(), s2.out_w(), 6, 4, 1, 1).unwrap();
    let mut y3 = vec![f32::NAN; s3.output_len()];
    reference::forward(&s3, &y2, &w("separable_conv2d/pointwise_kernel"), Some(&w("separable_conv2d/bias")), &mut y3);
    assert_eq!(got.data().len(), y3.len());
    for (g, r) in got.data().iter().zip(&y3) {
        assert!((g - r).abs() <= 1e-5 * (1.0 + r.abs()), "{g} vs {r}");
    }
}

#[test]
fn a_separable_network_trains() {
    // Two classes told apart by which channel carries a blob.
    let mut rng = Rng::new(11);
    let n = 64;
    let mut x = vec![0.0f32; n * 6 * 6 * 2];
    let mut y = vec![0.0f32; n];
    for i in 0..n {
        let class = i % 2;
        y[i] = class as f32;
        for p in 0..36 {
            x[(i * 36 + p) * 2 + class] = rng.uniform(0.5, 1.0);
            x[(i * 36 + p) * 2 + 1 - class] = rng.uniform(-0.2, 0.2);
        }
    }
    let x = Tensor::from_slice(Shape::nhwc(n, 6, 6, 2), &x).unwrap();
    let y = Tensor::from_slice(Shape::vector(n), &y).unwrap();
    let mut m = Sequential::new()
        .add(DepthwiseConv2D::new(3).depth_multiplier(2).activation(Relu).input_shape((6, 6, 2)))
        .add(SeparableConv2D::new(4, 3).padding(Padding::Same).activation(Relu))
        .add(Conv2D::new(4, 1).groups(2))
        .add(Flatten::new())
        .add(Dense::new(2).activation(Softmax))
        .seed(1)
        .build()
        .unwrap();
    m.compile(Sgd::new(0.05), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let opts = FitOptions { epochs: 15, batch_size: 16, verbose: Verbose::Silent, ..FitOptions::default() };
    let h = m.fit(&x, &y, opts).unwrap();
    let (first, last) = (h.loss()[0], *h.loss().last().unwrap());
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    let (_, acc) = m.evaluate(&x, &y, 32).unwrap();
    assert_eq!(acc, 1.0);
}

/// The same three layers in Keras 3 (`crates/convnet/tests/fixtures/keras_separable.json`,
/// written by `crates/kernels/tests/fixtures/gen_grouped_depthwise_pool.py`): output shapes,
/// parameter counts, weight shapes in `get_weights()` order, and the output
/// Keras computed for the given weights and input.
#[test]
fn keras_depthwise_separable_and_grouped_layers_agree() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras_separable.json");
    let f: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let floats =
        |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<f32>>();
    let mut m = Sequential::new()
        .add(
            DepthwiseConv2D::new(3)
                .strides(2)
                .padding(Padding::Same)
                .depth_multiplier(2)
                .activation(Relu)
                .input_shape((7, 7, 4)),
        )
        .add(SeparableConv2D::new(6, 3).depth_multiplier(2))
        .add(Conv2D::new(4, 1).groups(2))
        .build()
        .unwrap();
    for (ours, keras) in m.layers().iter().zip(f["layers"].as_array().unwrap()) {
        assert_eq!(ours.layer.class_name(), keras["class_name"].as_str().unwrap());
        let shape: Vec<usize> =
            keras["output_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(ours.output, shape, "{}", ours.name);
        assert_eq!(ours.param_count as u64, keras["params"].as_u64().unwrap(), "{}", ours.name);
    }
    let weights: Vec<&serde_json::Value> = f["weights"].as_array().unwrap().iter().collect();
    for ((name, t), kw) in m.weights().iter().zip(&weights) {
        let shape: Vec<usize> = kw["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape().dims(), &shape[..], "{name}");
    }
    m.set_weights(&weights.iter().map(|w| floats(&w["data"])).collect::<Vec<_>>()).unwrap();
    let x = Tensor::from_slice(Shape::nhwc(2, 7, 7, 4), &floats(&f["x"])).unwrap();
    let y = m.predict(&x, 2).unwrap();
    let want = floats(&f["y"]);
    assert_eq!(y.data().len(), want.len());
    for (i, (g, w)) in y.data().iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "element {i}: {g} vs Keras {w}");
    }
}

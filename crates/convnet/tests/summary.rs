//! The chapter model's summary against the Keras 2 output the book prints, and
//! build-time shape errors.

use convnet::Activation::{Relu, Softmax};
use convnet::{mnist_convnet, AveragePooling2D, Conv2D, Dense, Error, Flatten, MaxPooling2D, Padding, Sequential};

const GOLDEN: &str = r#"Model: "sequential"
_________________________________________________________________
Layer (type)                 Output Shape              Param #
=================================================================
conv2d (Conv2D)              (None, 26, 26, 32)        320
_________________________________________________________________
max_pooling2d (MaxPooling2D) (None, 13, 13, 32)        0
_________________________________________________________________
conv2d_1 (Conv2D)            (None, 11, 11, 64)        18496
_________________________________________________________________
max_pooling2d_1 (MaxPooling2 (None, 5, 5, 64)          0
_________________________________________________________________
conv2d_2 (Conv2D)            (None, 3, 3, 64)          36928
_________________________________________________________________
flatten (Flatten)            (None, 576)               0
_________________________________________________________________
dense (Dense)                (None, 64)                36928
_________________________________________________________________
dense_1 (Dense)              (None, 10)                650
=================================================================
Total params: 93,322
Trainable params: 93,322
Non-trainable params: 0
_________________________________________________________________
"#;

#[test]
fn chapter_model_summary_matches_keras() {
    let model = mnist_convnet().build().unwrap();
    let summary = model.summary();
    let trimmed: String = summary.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    assert_eq!(trimmed, GOLDEN);
    // Keras pads every table row to 65 columns.
    for line in summary.lines().skip(1) {
        if !line.starts_with("Total") && !line.starts_with("Trainable") && !line.starts_with("Non-") {
            assert_eq!(line.len(), 65, "{line:?}");
        }
    }
    assert_eq!(model.param_count(), 93_322);
}

#[test]
fn keras_style_builder_reads_like_the_listing() {
    let model = Sequential::new()
        .add(Conv2D::new(32, (3, 3)).activation(Relu).input_shape((28, 28, 1)))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(Flatten::new())
        .add(Dense::new(64).activation(Relu))
        .add(Dense::new(10).activation(Softmax))
        .build()
        .unwrap();
    assert_eq!(model.summary(), mnist_convnet().build().unwrap().summary());
    let names: Vec<&str> = model.weights().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "conv2d/kernel",
            "conv2d/bias",
            "conv2d_1/kernel",
            "conv2d_1/bias",
            "conv2d_2/kernel",
            "conv2d_2/bias",
            "dense/kernel",
            "dense/bias",
            "dense_1/kernel",
            "dense_1/bias"
        ]
    );
    assert_eq!(model.weights()[0].1.shape().dims(), &[3, 3, 1, 32]);
    assert_eq!(model.weights()[6].1.shape().dims(), &[576, 64]);
    assert!(model.weights()[1].1.data().iter().all(|&b| b == 0.0));
}

fn build_error(seq: Sequential) -> (String, String) {
    match seq.build() {
        Err(Error::Build { layer, reason }) => (layer, reason),
        other => panic!("expected a build error, got {other:?}"),
    }
}

#[test]
fn conv_larger_than_its_input_is_an_error_naming_the_layer() {
    let (layer, reason) = build_error(
        Sequential::new()
            .add(Conv2D::new(8, (3, 3)).input_shape((6, 6, 1)))
            .add(MaxPooling2D::new((2, 2)))
            .add(Conv2D::new(8, (3, 3))),
    );
    assert_eq!(layer, "conv2d_1");
    assert!(reason.contains("(None, 2, 2, 8)"), "{reason}");
}

#[test]
fn pool_on_one_by_one_is_an_error() {
    let (layer, _) = build_error(
        Sequential::new().add(Conv2D::new(4, (3, 3)).input_shape((3, 3, 1))).add(MaxPooling2D::new((2, 2))),
    );
    assert_eq!(layer, "max_pooling2d");
    let (layer, _) = build_error(Sequential::new().add(AveragePooling2D::new(2).input_shape((1, 1, 3))));
    assert_eq!(layer, "average_pooling2d");
}

#[test]
fn missing_input_shape_and_bad_configs_are_errors() {
    let (layer, reason) = build_error(Sequential::new().add(Conv2D::new(8, 3)));
    assert_eq!(layer, "conv2d");
    assert!(reason.contains("input_shape"), "{reason}");
    let (layer, reason) =
        build_error(Sequential::new().add(Conv2D::new(8, 3).input_shape((8, 8, 1))).add(Dense::new(4)));
    assert_eq!(layer, "dense");
    assert!(reason.contains("Flatten"), "{reason}");
    let (layer, _) = build_error(Sequential::new().add(Conv2D::new(0, 3).input_shape((8, 8, 1))));
    assert_eq!(layer, "conv2d");
    let (layer, _) = build_error(Sequential::new().add(Dense::new(4).input_shape(3)).add(convnet::Dropout::new(1.5)));
    assert_eq!(layer, "dropout");
    let (layer, _) = build_error(
        Sequential::new().add(Conv2D::new(8, 3).name("a").input_shape((8, 8, 1))).add(Conv2D::new(8, 3).name("a")),
    );
    assert_eq!(layer, "a");
    assert!(matches!(Sequential::new().build(), Err(Error::Invalid { .. })));
}

#[test]
fn same_padding_and_strides_infer_keras_shapes() {
    let model = Sequential::new()
        .add(Conv2D::new(4, (3, 3)).padding(Padding::Same).strides(2).input_shape((5, 5, 2)))
        .add(Conv2D::new(4, (3, 3)).padding(Padding::Same))
        .add(MaxPooling2D::new(2).padding(Padding::Same))
        .add(Conv2D::new(4, (5, 5)).padding(Padding::Same))
        .build()
        .unwrap();
    let shapes: Vec<Vec<usize>> = model.layers().iter().map(|l| l.output.clone()).collect();
    assert_eq!(shapes, vec![vec![3, 3, 4], vec![3, 3, 4], vec![2, 2, 4], vec![2, 2, 4]]);
}

#[test]
fn architecture_json_round_trips() {
    let model = mnist_convnet().build().unwrap();
    let json = model.to_json();
    let again = convnet::Model::from_json(&json).unwrap();
    assert_eq!(again.summary(), model.summary());
    assert_eq!(again.weights(), model.weights(), "same seed, same initial weights");
    assert!(convnet::Model::from_json("{\"name\": 3}").is_err());
}

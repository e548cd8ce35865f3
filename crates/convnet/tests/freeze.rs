//! Freezing (Keras's `trainable = False`): frozen weights do not move in a
//! fit, cost no gradient kernels, and show as non-trainable in the summary;
//! a Keras config's flags (on a layer or on a nested model) are honoured.

use convnet::optimizers::RMSprop;
use convnet::Activation::{Relu, Sigmoid};
use convnet::{Conv2D, Dense, FitOptions, Flatten, Loss, MaxPooling2D, Model, Padding, Sequential, Verbose};
use convnet_tensor::{Rng, Shape, Tensor};

/// A small VGG-shaped base (three convs, two blocks) and the book's head.
fn model() -> Model {
    Sequential::new()
        .add(Conv2D::new(4, (3, 3)).padding(Padding::Same).activation(Relu).name("block1_conv1").input_shape((8, 8, 3)))
        .add(Conv2D::new(4, (3, 3)).padding(Padding::Same).activation(Relu).name("block1_conv2"))
        .add(MaxPooling2D::new((2, 2)).name("block1_pool"))
        .add(Conv2D::new(6, (3, 3)).padding(Padding::Same).activation(Relu).name("block2_conv1"))
        .add(MaxPooling2D::new((2, 2)).name("block2_pool"))
        .add(Flatten::new())
        .add(Dense::new(5).activation(Relu))
        .add(Dense::new(1).activation(Sigmoid))
        .build()
        .unwrap()
}

fn data() -> (Tensor, Tensor) {
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..16 * 8 * 8 * 3).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let y: Vec<f32> = (0..16).map(|i| (i % 2) as f32).collect();
    (
        Tensor::from_slice(Shape::new(&[16, 8, 8, 3]).unwrap(), &x).unwrap(),
        Tensor::from_slice(Shape::new(&[16, 1]).unwrap(), &y).unwrap(),
    )
}

fn fit(m: &mut Model) {
    let (x, y) = data();
    m.compile(RMSprop::new(1e-2), Loss::BinaryCrossentropy, &[]).unwrap();
    let opts = FitOptions { epochs: 2, batch_size: 8, verbose: Verbose::Silent, ..Default::default() };
    m.fit(&x, &y, opts).unwrap();
}

fn layer_bits(m: &Model, layer: &str) -> Vec<u32> {
    m.weights()
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("{layer}/")))
        .flat_map(|(_, t)| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        .collect()
}

#[test]
fn frozen_weights_are_bit_identical_after_a_fit() {
    let mut m = model();
    m.set_trainable_from("block2_conv1").unwrap(); // block 1 frozen, as the book unfreezes block 5
    let before: Vec<Vec<u32>> = m.layers().iter().map(|l| layer_bits(&m, &l.name)).collect();
    fit(&mut m);
    for (l, before) in m.layers().iter().zip(before) {
        let after = layer_bits(&m, &l.name);
        if before.is_empty() {
            continue;
        }
        if l.trainable {
            assert_ne!(after, before, "{} is trainable and must have moved", l.name);
        } else {
            assert_eq!(after, before, "{} is frozen and must not move", l.name);
        }
    }
    assert!(!m.is_trainable("block1_conv2") && m.is_trainable("block2_conv1"));
}

#[test]
fn a_frozen_base_costs_no_gradient_kernels() {
    // Everything trainable: 5 weight gradients (3 convs, 2 denses); input
    // gradients for every conv and dense but the first (its input is data).
    let mut m = model();
    fit(&mut m);
    let all = m.last_backward_work();
    assert_eq!((all.weight_gradients, all.input_gradients), (5, 4), "{all:?}");

    // The book's feature extraction with the base inside: the whole base is
    // frozen, so its step is forward only. Only the two Dense layers get
    // weight gradients, and only the top one an input gradient.
    let mut m = model();
    for name in ["block1_conv1", "block1_conv2", "block2_conv1"] {
        m.set_layer_trainable(name, false).unwrap();
    }
    fit(&mut m);
    let frozen = m.last_backward_work();
    assert_eq!((frozen.weight_gradients, frozen.input_gradients), (2, 1), "{frozen:?}");
    assert!(frozen.total < all.total, "{frozen:?} vs {all:?}");

    // Fine-tuning: block 2 and the head trainable. block2_conv1 gets its
    // weight gradient but no input gradient (nothing below needs one).
    let mut m = model();
    m.set_trainable_from("block2_conv1").unwrap();
    fit(&mut m);
    let tuned = m.last_backward_work();
    assert_eq!((tuned.weight_gradients, tuned.input_gradients), (3, 2), "{tuned:?}");

    // A fully frozen model: no gradient at all.
    let mut m = model();
    m.set_trainable(false);
    fit(&mut m);
    assert_eq!(m.last_backward_work(), Default::default());
}

#[test]
fn summary_splits_trainable_and_non_trainable_as_keras_2() {
    let mut m = model();
    let total = m.param_count();
    m.set_trainable_from("block2_conv1").unwrap();
    let frozen: usize = 3 * 3 * 3 * 4 + 4 + 3 * 3 * 4 * 4 + 4;
    assert_eq!(m.non_trainable_param_count(), frozen);
    let s = m.summary();
    assert!(s.contains(&format!("Total params: {total}\n")), "{s}");
    assert!(s.contains(&format!("Trainable params: {}\n", total - frozen)), "{s}");
    assert!(s.contains(&format!("Non-trainable params: {frozen}\n")), "{s}");
    // Unknown names change nothing.
    let err = m.set_trainable_from("block9_conv1").unwrap_err().to_string();
    assert!(err.contains("block9_conv1") && err.contains("block1_conv1"), "{err}");
    assert_eq!(m.non_trainable_param_count(), frozen);
}

#[test]
fn keras_trainable_flags_on_layers_and_nested_models_are_read() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras/nested.keras");
    let bytes = std::fs::read(path).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("config.json").unwrap(), &mut text).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    // conv_base.trainable = False: the nested model's flag freezes its layers.
    let layers = config["config"]["layers"].as_array_mut().unwrap();
    let base = layers.iter_mut().find(|l| l["class_name"] == "Functional").unwrap();
    base["config"]["trainable"] = serde_json::json!(false);
    let m = convnet::keras::sequential_from_config(&config.to_string()).unwrap().build().unwrap();
    let frozen: Vec<&str> = m.layers().iter().filter(|l| !l.trainable).map(|l| l.name.as_str()).collect();
    assert_eq!(frozen, ["block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_pool"]);
    assert_eq!(m.trainable_param_count(), m.param_count() - m.non_trainable_param_count());
    assert!(m.non_trainable_param_count() > 0);
}

/// Frozen parameters cost no gradient memory (and so no optimizer state:
/// the optimizer visits only parameters with a gradient): after a fit, only
/// the trainable layers' parameters have gradient buffers, also when the
/// frozen ones had gradients from an earlier fit.
#[test]
fn frozen_parameters_hold_no_gradient_buffers() {
    let with_grads = |m: &Model| -> Vec<String> {
        let p = m.params();
        p.iter().filter(|(_, _, _, g)| g.is_some()).map(|(_, name, _, _)| name.to_string()).collect()
    };
    let mut m = model();
    assert!(with_grads(&m).is_empty(), "no gradient before any backward");
    fit(&mut m); // everything trainable first
    assert_eq!(with_grads(&m).len(), m.params().len());

    m.set_trainable_from("block2_conv1").unwrap();
    let before = layer_bits(&m, "block1_conv1");
    fit(&mut m);
    let grads = with_grads(&m);
    assert!(grads.iter().all(|n| !n.starts_with("block1_")), "{grads:?}");
    assert!(grads.iter().any(|n| n.starts_with("block2_conv1/")), "{grads:?}");
    assert_eq!(grads.len(), m.params().len() - 4, "{grads:?}");
    assert_eq!(layer_bits(&m, "block1_conv1"), before, "frozen after training: still bit-identical");
    let id = m.params().find("block1_conv1/kernel").unwrap();
    assert!(m.params().grad(id).is_err());
}

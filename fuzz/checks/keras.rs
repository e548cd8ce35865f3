// The properties the `keras` fuzz target checks, shared with the stable
// replay test (`crates/convnet/tests/keras_fuzz_corpus.rs` includes this
// file), so the corpus is replayed through exactly the same calls.
//
// Any bytes, read as a Keras model file (`.keras` zip or legacy `.h5`) and
// as Keras weights (`.weights.h5` or legacy HDF5) into a fixed small model,
// must give `Ok` or `Err`, never a panic and never an allocation beyond the
// limits. An accepted model is within the limits and predicts finite-shaped
// output; rejected weights leave the model's weights bit for bit as they were.

/// Small limits, so every accepted model is cheap to build and run.
fn keras_fuzz_limits() -> convnet::keras::Limits {
    convnet::keras::Limits { max_file_bytes: 1 << 22, max_params: 1 << 17 }
}

/// The model the weights half loads into: the tiny VGG-shaped base of the
/// fixtures plus the book's classifier (`tests/fixtures/keras/nested.*`).
fn keras_fuzz_model() -> convnet::Model {
    use convnet::Activation::{Relu, Sigmoid};
    use convnet::{Conv2D, Dense, Flatten, MaxPooling2D, Padding, Sequential};
    Sequential::new()
        .add(Conv2D::new(4, (3, 3)).padding(Padding::Same).activation(Relu).name("block1_conv1").input_shape((16, 16, 3)))
        .add(Conv2D::new(4, (3, 3)).padding(Padding::Same).activation(Relu).name("block1_conv2"))
        .add(MaxPooling2D::new((2, 2)).name("block1_pool"))
        .add(Conv2D::new(8, (3, 3)).padding(Padding::Same).activation(Relu).name("block2_conv1"))
        .add(MaxPooling2D::new((2, 2)).name("block2_pool"))
        .add(Flatten::new())
        .add(Dense::new(5).activation(Relu))
        .add(Dense::new(1).activation(Sigmoid))
        .build()
        .expect("the fuzz model builds")
}

fn keras_bits(m: &convnet::Model) -> Vec<u32> {
    m.weights().iter().flat_map(|(_, t)| t.data().iter().map(|x| x.to_bits())).collect()
}

/// Returns whether the bytes were accepted as (a model, weights).
fn check_keras(data: &[u8]) -> (bool, bool) {
    let limits = keras_fuzz_limits();
    let model_ok = match convnet::keras::model_from_bytes(data.to_vec(), &limits) {
        Ok(model) => {
            assert!(model.param_count() <= limits.max_params);
            assert!(model.summary().contains("Total params"));
            let mut shape = vec![1];
            shape.extend_from_slice(model.input_shape());
            if shape.iter().product::<usize>() <= 1 << 16 {
                let x = convnet_tensor::Tensor::zeros(convnet_tensor::Shape::new(&shape).unwrap());
                if let Ok(y) = model.predict(&x, 1) {
                    assert_eq!(y.data().len(), model.output_shape().iter().product::<usize>());
                }
            }
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    };
    let mut model = keras_fuzz_model();
    let before = keras_bits(&model);
    let weights_ok = match model.load_keras_weights_bytes(data.to_vec()) {
        Ok(()) => true,
        Err(_) => {
            assert_eq!(keras_bits(&model), before, "rejected weights changed the model");
            false
        }
    };
    (model_ok, weights_ok)
}

//! Tensors as the other convnet crates use them: a seeded NHWC batch, a view
//! of part of it, Keras's initialisers, and element-wise arithmetic.
//!
//! Run: `cargo run -p convnet-tensor --example tensor_basics`

use convnet_tensor::{Rng, Shape, Tensor};

fn main() -> Result<(), convnet_tensor::Error> {
    let mut rng = Rng::new(42);

    // A batch of eight 28x28 grey images (NHWC), pixels in [0, 1).
    let images = Tensor::uniform(Shape::nhwc(8, 28, 28, 1), 0.0, 1.0, &mut rng)?;
    println!("images: shape {}, mean {:.4}", images.shape(), images.mean());

    // The first three images, as a view: no copy, same storage.
    let first = images.batch(0..3)?;
    assert_eq!(first.data().as_ptr(), images.data().as_ptr());
    println!("first three: shape {}, {} floats", first.shape(), first.data().len());

    // Keras's default initialisers, seeded: the same seed gives the same weights.
    let conv = Tensor::glorot_uniform(Shape::new(&[3, 3, 1, 32])?, &mut rng)?; // HWIO
    let dense = Tensor::he_normal(Shape::matrix(1600, 64), &mut rng)?; // [in, out]
    println!("conv kernel {} (|w| <= {:.4}), dense kernel {}", conv.shape(), limit(&conv), dense.shape());

    // Element-wise arithmetic and reductions; shape mismatches are errors.
    let mut doubled = images.add(&images)?;
    doubled.scale(0.5);
    assert!(doubled.approx_eq(&images, 1e-6, 0.0));
    let err = images.add(&conv).unwrap_err();
    println!("adding a [3, 3, 1, 32] kernel to the batch: {err}");

    // Class predictions: the arg-max of each row.
    let logits = Tensor::from_slice(Shape::matrix(2, 3), &[0.1, 2.0, -1.0, 3.0, 0.0, 0.5])?;
    println!("arg-max per row: {:?}", logits.argmax_last()?);
    Ok(())
}

/// The largest absolute value.
fn limit(t: &Tensor) -> f32 {
    t.data().iter().fold(0.0f32, |m, &v| m.max(v.abs()))
}

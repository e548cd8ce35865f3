//! The augmentation layers inside `fit`: a model that starts with
//! Rescaling and the four random layers trains end to end, repeatably per
//! seed, and `predict` sees no augmentation.

use convnet::Activation::{Relu, Softmax};
use convnet::{
    Conv2D, Dense, FitOptions, Flatten, FlipMode, Loss, Metric, RandomFlip, RandomRotation, RandomTranslation,
    RandomZoom, Rescaling, Sequential, Verbose,
};
use convnet_optim::Sgd;
use convnet_tensor::{Rng, Shape, Tensor};

fn data(n: usize) -> (Tensor, Tensor) {
    // Class 1: a bright square in the centre; class 0: dark.
    let mut rng = Rng::new(3);
    let mut x = vec![0.0; n * 8 * 8];
    let mut y = vec![0.0; n];
    for i in 0..n {
        let class = i % 2;
        y[i] = class as f32;
        for r in 0..8 {
            for c in 0..8 {
                let centre = (2..6).contains(&r) && (2..6).contains(&c);
                let v = if class == 1 && centre { 200.0 } else { 20.0 };
                x[(i * 8 + r) * 8 + c] = v + rng.uniform(0.0, 30.0);
            }
        }
    }
    (Tensor::from_slice(Shape::nhwc(n, 8, 8, 1), &x).unwrap(), Tensor::from_slice(Shape::vector(n), &y).unwrap())
}

fn model(seed: u64) -> convnet::Model {
    let mut m = Sequential::new()
        .add(Rescaling::new(1.0 / 255.0, 0.0).input_shape((8, 8, 1)))
        .add(RandomFlip::new(FlipMode::HorizontalAndVertical))
        .add(RandomRotation::new(0.05))
        .add(RandomZoom::new(0.1))
        .add(RandomTranslation::new(0.05, 0.05))
        .add(Conv2D::new(4, 3).activation(Relu))
        .add(Flatten::new())
        .add(Dense::new(2).activation(Softmax))
        .seed(seed)
        .build()
        .unwrap();
    m.compile(Sgd::new(0.2), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    m
}

#[test]
fn fit_with_augmentation_is_repeatable_and_predict_is_clean() {
    let (x, y) = data(64);
    let fit = |seed: u64| {
        let mut m = model(1);
        let opts = FitOptions { epochs: 8, batch_size: 16, seed, verbose: Verbose::Silent, ..FitOptions::default() };
        let h = m.fit(&x, &y, opts).unwrap();
        (m, h.loss().to_vec())
    };
    let (m, loss) = fit(7);
    let (_, again) = fit(7);
    assert_eq!(loss, again, "same seed, same augmentations, same run");
    let (_, other) = fit(8);
    assert_ne!(loss, other, "another seed draws other augmentations");
    assert!(loss.last().unwrap() < &(0.7 * loss[0]), "it learns: {loss:?}");
    // predict: no augmentation, so the same input gives the same output
    // twice and in any batch size (up to the conv algorithm a batch size picks).
    let p1 = m.predict(&x, 64).unwrap();
    assert_eq!(p1.data(), m.predict(&x, 64).unwrap().data());
    let p2 = m.predict(&x, 5).unwrap();
    assert!(p1.data().iter().zip(p2.data()).all(|(a, b)| (a - b).abs() < 1e-5));
    let (_, acc) = m.evaluate(&x, &y, 32).unwrap();
    assert!(acc >= 0.9, "accuracy {acc}");
}

/// An image folder trains through `fit_examples` as Keras's
/// `image_dataset_from_directory` feeds `fit`: 0-255 pixels, a Rescaling
/// layer, binary labels for one sigmoid unit, augmentation in front.
#[test]
fn an_image_folder_trains_with_binary_labels() {
    use convnet::datasets::folder::{self, FolderOptions, LabelMode};
    let dir = std::env::temp_dir().join(format!("convnet-augment-folder-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = Rng::new(9);
    for (class, level) in [("dark", 30.0), ("light", 220.0)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for k in 0..12 {
            let img = image::RgbImage::from_fn(11 + k % 3, 9, |_, _| {
                let v = (level + rng.uniform(-25.0, 25.0)) as u8;
                image::Rgb([v, v, v])
            });
            img.save(dir.join(class).join(format!("{k}.png"))).unwrap();
        }
    }
    let opts =
        FolderOptions { image_size: (8, 8), label_mode: LabelMode::Binary, seed: Some(1), ..FolderOptions::default() };
    let ds = folder::load(&dir, &opts).unwrap();
    assert_eq!(ds.len(), 24);
    let mut m = Sequential::new()
        .add(Rescaling::new(1.0 / 255.0, -0.5).input_shape((8, 8, 3)))
        .add(RandomFlip::new(FlipMode::Horizontal))
        .add(RandomRotation::new(0.05))
        .add(Conv2D::new(4, 3))
        .add(Flatten::new())
        .add(Dense::new(1).activation(convnet::Activation::Sigmoid))
        .seed(2)
        .build()
        .unwrap();
    m.compile(Sgd::new(0.1), Loss::BinaryCrossentropy, &[Metric::Accuracy]).unwrap();
    let opts = FitOptions { epochs: 10, batch_size: 8, verbose: Verbose::Silent, ..FitOptions::default() };
    let h = m.fit_examples(&ds, opts).unwrap();
    assert!(h.loss().last().unwrap() < &h.loss()[0], "{:?}", h.loss());
    let (_, acc) = m.evaluate_examples(&ds, 8).unwrap();
    assert_eq!(acc, 1.0, "{:?}", h.loss());
    std::fs::remove_dir_all(&dir).unwrap();
}

//! Section 5.3.1 of "Deep Learning with Python", feature extraction without
//! augmentation: run VGG16's convolutional base once over the images
//! (tape-free `predict` in batches), keep the `(4, 4, 512)` features, and
//! train a small dense classifier on them. The Keras lines are the comments
//! above the Rust lines that do the same.
//!
//! ```text
//! cargo run --release -p convnet --example 5_3_feature_extraction -- DIR [VGG16_NOTOP.h5]
//! ```
//!
//! DIR is an image folder: the book's `train/` and `validation/` (each holding
//! one folder per class, two classes), or one folder of class folders (20% is
//! held out for validation). The weights are Keras's
//! `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (any Keras VGG16 notop
//! weights file); without one the base has random weights, and the features
//! mean little. `CONVNET_EXAMPLE_SIZE` (default 150) sets the image side,
//! `CONVNET_EXAMPLE_EPOCHS` (default 30) the classifier's epochs.

use convnet::applications::vgg16::{preprocess_input, Vgg16};
use convnet::optimizers::RMSprop;
use convnet::Activation::{Relu, Sigmoid};
use convnet::{Dense, Dropout, Examples, FitOptions, Loss, Metric, Sequential, TargetForm, XY};
use convnet_datasets::folder::{self, FolderOptions, ImageDataset};
use convnet_tensor::{Shape, Tensor};
use std::path::Path;

/// Images as VGG16 wants them: Keras's `preprocess_input` on each batch.
struct Preprocessed<'a>(&'a ImageDataset);

impl Examples for Preprocessed<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn input_shape(&self) -> Vec<usize> {
        self.0.input_shape().to_vec()
    }
    fn has_targets(&self) -> bool {
        Examples::has_targets(self.0)
    }
    fn gather(&self, idx: &[usize], x: &mut [f32], y: Option<(&mut [f32], TargetForm)>) -> convnet::Result<()> {
        self.0.gather(idx, x, y)?;
        preprocess_input(x)
    }
}

fn env_usize(key: &str, default: usize) -> Result<usize, String> {
    std::env::var(key).map_or(Ok(default), |v| v.parse().map_err(|e| format!("{key}={v}: {e}")))
}

/// The training and validation images of `dir` at `side` x `side`.
fn load(dir: &Path, side: usize) -> Result<(ImageDataset, ImageDataset), Box<dyn std::error::Error>> {
    let opts = FolderOptions { image_size: (side, side), seed: Some(1337), ..Default::default() };
    if dir.join("train").is_dir() && dir.join("validation").is_dir() {
        return Ok((folder::load(dir.join("train"), &opts)?, folder::load(dir.join("validation"), &opts)?));
    }
    Ok(folder::load_both(dir, &FolderOptions { validation_split: Some(0.2), ..opts })?)
}

/// The labels as a `[n, 1]` tensor of 0 and 1.
fn labels(d: &ImageDataset) -> Result<Tensor, Box<dyn std::error::Error>> {
    let l: Vec<f32> = d.labels().ok_or("the folder has no labels")?.iter().map(|&k| k as f32).collect();
    Ok(Tensor::from_slice(Shape::new(&[l.len(), 1])?, &l)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: 5_3_feature_extraction DIR [VGG16_NOTOP.h5]")?;
    let weights = args.next();
    let side = env_usize("CONVNET_EXAMPLE_SIZE", 150)?;
    let epochs = env_usize("CONVNET_EXAMPLE_EPOCHS", 30)?;

    // conv_base = VGG16(weights='imagenet', include_top=False, input_shape=(150, 150, 3))
    let v = Vgg16::new().include_top(false).input_shape((side, side, 3));
    let conv_base = match &weights {
        Some(w) => v.load_imagenet(w)?,
        None => {
            eprintln!(
                "NOTE: no VGG16 weights file given: the base has RANDOM weights, so its features are not \
                 ImageNet's. Pass vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 as the second argument."
            );
            v.build()?
        }
    };
    let (train, validation) = load(Path::new(&dir), side)?;
    if train.num_classes() != 2 {
        return Err(
            format!("{dir}: {} classes; this example is binary (two class folders)", train.num_classes()).into()
        );
    }
    println!("{} training and {} validation images, classes {:?}", train.len(), validation.len(), train.class_names());

    // features = conv_base.predict(images): once, tape-free, 20 images per batch.
    let t = std::time::Instant::now();
    let train_features = conv_base.predict_examples(&Preprocessed(&train), 20)?;
    let validation_features = conv_base.predict_examples(&Preprocessed(&validation), 20)?;
    let feature_len: usize = conv_base.output_shape().iter().product();
    println!(
        "features {:?} of {} + {} images in {:.1} s",
        conv_base.output_shape(),
        train.len(),
        validation.len(),
        t.elapsed().as_secs_f64()
    );
    // train_features = np.reshape(train_features, (n, 4 * 4 * 512))
    let flat = |f: Tensor, n: usize| f.reshape(Shape::new(&[n, feature_len])?);
    let (xt, xv) = (flat(train_features, train.len())?, flat(validation_features, validation.len())?);
    let (yt, yv) = (labels(&train)?, labels(&validation)?);

    // model = models.Sequential()
    // model.add(layers.Dense(256, activation='relu', input_dim=4 * 4 * 512))
    // model.add(layers.Dropout(0.5))
    // model.add(layers.Dense(1, activation='sigmoid'))
    let mut model = Sequential::new()
        .add(Dense::new(256).activation(Relu).input_shape(feature_len))
        .add(Dropout::new(0.5))
        .add(Dense::new(1).activation(Sigmoid))
        .build()?;
    // model.compile(optimizer=optimizers.RMSprop(lr=2e-5), loss='binary_crossentropy', metrics=['acc'])
    model.compile(RMSprop::new(2e-5), Loss::BinaryCrossentropy, &[Metric::Accuracy])?;
    // history = model.fit(train_features, train_labels, epochs=30, batch_size=20,
    //                     validation_data=(validation_features, validation_labels))
    let val = XY::new(&xv, &yv)?;
    let history = model.fit(
        &xt,
        &yt,
        FitOptions { epochs, batch_size: 20, validation_data: Some(&val), ..Default::default() },
    )?;
    if let Some(last) = history.epochs.last() {
        println!("last epoch: {last:?}");
    }
    Ok(())
}

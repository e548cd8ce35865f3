//! Section 5.3 of "Deep Learning with Python", end to end: VGG16's
//! convolutional base, frozen, under a new classifier, trained on augmented
//! images; then fine-tuning: block 5 unfrozen and trained on with a low
//! learning rate. The Keras lines are the comments above the Rust lines that
//! do the same.
//!
//! ```text
//! cargo run --release -p convnet --example 5_3_fine_tuning -- DIR [VGG16_NOTOP.h5]
//! ```
//!
//! DIR is an image folder: the book's `train/` and `validation/` (each holding
//! one folder per class, two classes), or one folder of class folders (20% is
//! held out for validation). The weights are Keras's
//! `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (any Keras VGG16 notop
//! weights file); without one the base has random weights (the run shows the
//! mechanics, not the book's accuracy). `CONVNET_EXAMPLE_SIZE` (default 150)
//! sets the image side, `CONVNET_EXAMPLE_EPOCHS` (default 30 and 100, as the
//! book) the epochs of both phases.

use convnet::applications::vgg16::{preprocess_input, Vgg16};
use convnet::optimizers::RMSprop;
use convnet::Activation::{Relu, Sigmoid};
use convnet::{
    Dense, Examples, FitOptions, Flatten, FlipMode, Loss, Metric, RandomFlip, RandomRotation, RandomZoom, Sequential,
    TargetForm,
};
use convnet_datasets::folder::{self, FolderOptions, ImageDataset};
use std::path::Path;

/// Images as VGG16 wants them: Keras's `preprocess_input` on each batch
/// (before the augmentation layers warp them, which commutes with it but for
/// the constant fill, which these layers do not use).
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

fn env_usize(key: &str) -> Result<Option<usize>, String> {
    std::env::var(key).ok().map(|v| v.parse().map_err(|e| format!("{key}={v}: {e}"))).transpose()
}

fn load(dir: &Path, side: usize) -> Result<(ImageDataset, ImageDataset), Box<dyn std::error::Error>> {
    let opts = FolderOptions { image_size: (side, side), seed: Some(1337), ..Default::default() };
    if dir.join("train").is_dir() && dir.join("validation").is_dir() {
        return Ok((folder::load(dir.join("train"), &opts)?, folder::load(dir.join("validation"), &opts)?));
    }
    Ok(folder::load_both(dir, &FolderOptions { validation_split: Some(0.2), ..opts })?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: 5_3_fine_tuning DIR [VGG16_NOTOP.h5]")?;
    let weights = args.next();
    let side = env_usize("CONVNET_EXAMPLE_SIZE")?.unwrap_or(150);
    let epochs = env_usize("CONVNET_EXAMPLE_EPOCHS")?;

    // conv_base = VGG16(weights='imagenet', include_top=False, input_shape=(150, 150, 3))
    let v = Vgg16::new().include_top(false).input_shape((side, side, 3));
    let conv_base = match &weights {
        Some(w) => v.load_imagenet(w)?,
        None => {
            eprintln!(
                "NOTE: no VGG16 weights file given: the base has RANDOM weights, so this shows the mechanics, not \
                 the book's accuracy. Pass vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 as the second argument."
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

    // model = models.Sequential()
    // model.add(data_augmentation)            # RandomFlip, RandomRotation(0.1), RandomZoom(0.2)
    // model.add(conv_base)
    // model.add(layers.Flatten())
    // model.add(layers.Dense(256, activation='relu'))
    // model.add(layers.Dense(1, activation='sigmoid'))
    let mut seq = Sequential::new()
        .add(RandomFlip::new(FlipMode::Horizontal).input_shape((side, side, 3)))
        .add(RandomRotation::new(0.1f32))
        .add(RandomZoom::new(0.2f32));
    seq.layers.extend(v.sequential()?.layers);
    let seq = seq.add(Flatten::new()).add(Dense::new(256).activation(Relu)).add(Dense::new(1).activation(Sigmoid));
    let mut model = seq.build()?;
    model.copy_weights_from(&conv_base)?;
    drop(conv_base);

    // conv_base.trainable = False
    for l in v.sequential()?.layers {
        model.set_layer_trainable(l.user_name().unwrap_or_default(), false)?;
    }
    print!("{}", model.summary());

    // model.compile(loss='binary_crossentropy', optimizer=optimizers.RMSprop(lr=2e-5), metrics=['acc'])
    model.compile(RMSprop::new(2e-5), Loss::BinaryCrossentropy, &[Metric::Accuracy])?;
    let (xt, xv) = (Preprocessed(&train), Preprocessed(&validation));
    // history = model.fit(train, epochs=30, validation_data=validation)
    let opts = |epochs| FitOptions { epochs, batch_size: 20, validation_data: Some(&xv), ..Default::default() };
    model.fit_examples(&xt, opts(epochs.unwrap_or(30)))?;

    // conv_base.trainable = True
    // set_trainable = False
    // for layer in conv_base.layers:
    //     if layer.name == 'block5_conv1': set_trainable = True
    //     layer.trainable = set_trainable
    model.set_trainable_from("block5_conv1")?; // the augmentation layers before it have no weights
    print!("{}", model.summary());
    // model.compile(loss='binary_crossentropy', optimizer=optimizers.RMSprop(lr=1e-5), metrics=['acc'])
    model.compile(RMSprop::new(1e-5), Loss::BinaryCrossentropy, &[Metric::Accuracy])?;
    // history = model.fit(train, epochs=100, validation_data=validation)
    let history = model.fit_examples(&xt, opts(epochs.unwrap_or(100)))?;
    if let Some(last) = history.epochs.last() {
        println!("last epoch: {last:?}");
    }
    Ok(())
}

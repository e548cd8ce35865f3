//! Section 5.2 of "Deep Learning with Python" (first edition), "Training a
//! convnet from scratch on a small dataset", line for line: the cats-vs-dogs
//! convnet (Listings 5.5-5.10), then the same model with data augmentation
//! and dropout (5.11-5.16). The Keras lines are the comments above the Rust
//! lines that do the same.
//!
//! ```text
//! cargo run --release -p convnet --example 5_2_small_data -- cats_and_dogs_small
//! ```
//!
//! The argument is the book's `base_dir`: `train/`, `validation/` (and
//! `test/`), each holding one folder per class (`cats/`, `dogs/`). Without
//! one, the example says so and writes a tiny stand-in folder of generated
//! pictures (two classes, 24 training and 12 validation images each) to a
//! temporary directory, so it runs anywhere. `CONVNET_EXAMPLE_EPOCHS`
//! overrides the epoch counts (the book's 30 and 100) for a quick try.
//!
//! Differences from the book, each because Keras itself moved on:
//! `ImageDataGenerator(rescale=1./255)` becomes a `Rescaling(1./255)` layer
//! at the front of the model (as in the book's second edition and Keras 3),
//! and the generator's augmentation arguments become Keras 3's random
//! layers, in the same order, active only in training. The curves go to
//! `small_data_1.png` and `small_data_2.png` (both figures side by side).

use convnet::optimizers::RMSprop;
use convnet::Activation::{Relu, Sigmoid};
use convnet::{
    Conv2D, Dense, Dropout, FitOptions, Flatten, FlipMode, Loss, MaxPooling2D, Metric, RandomFlip, RandomRotation,
    RandomShear, RandomTranslation, RandomZoom, Rescaling, Sequential,
};
use convnet_datasets::folder::{self, FolderOptions, LabelMode};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base_dir = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = std::env::temp_dir().join("convnet-5_2-stand-in");
            println!(
                "No folder given (the book's cats_and_dogs_small); writing a tiny generated one to {}",
                dir.display()
            );
            write_stand_in(&dir)?;
            dir
        }
    };
    let epochs = |book: usize| -> Result<usize, String> {
        match std::env::var("CONVNET_EXAMPLE_EPOCHS") {
            Ok(s) => s.parse().map_err(|e| format!("CONVNET_EXAMPLE_EPOCHS={s:?}: {e}")),
            Err(_) => Ok(book),
        }
    };

    // Listing 5.5: instantiating a small convnet for dogs vs. cats classification
    // model = models.Sequential()
    // model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(150, 150, 3)))
    // model.add(layers.MaxPooling2D((2, 2)))
    // model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    // model.add(layers.MaxPooling2D((2, 2)))
    // model.add(layers.Conv2D(128, (3, 3), activation='relu'))
    // model.add(layers.MaxPooling2D((2, 2)))
    // model.add(layers.Conv2D(128, (3, 3), activation='relu'))
    // model.add(layers.MaxPooling2D((2, 2)))
    // model.add(layers.Flatten())
    // model.add(layers.Dense(512, activation='relu'))
    // model.add(layers.Dense(1, activation='sigmoid'))
    let mut model = Sequential::new()
        .add(Rescaling::new(1.0 / 255.0, 0.0).input_shape((150, 150, 3))) // ImageDataGenerator(rescale=1./255)
        .add(Conv2D::new(32, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(128, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(128, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Flatten::new())
        .add(Dense::new(512).activation(Relu))
        .add(Dense::new(1).activation(Sigmoid))
        .build()?;

    // model.summary()
    print!("{}", model.summary());

    // Listing 5.6: configuring the model for training
    // model.compile(loss='binary_crossentropy', optimizer=optimizers.RMSprop(lr=1e-4), metrics=['acc'])
    model.compile(RMSprop::new(1e-4), Loss::BinaryCrossentropy, &[Metric::Accuracy])?;

    // Listing 5.7: using ImageDataGenerator to read images from directories
    // train_datagen = ImageDataGenerator(rescale=1./255)        (the Rescaling layer above)
    // test_datagen = ImageDataGenerator(rescale=1./255)
    // train_generator = train_datagen.flow_from_directory(train_dir, target_size=(150, 150),
    //                                                     batch_size=20, class_mode='binary')
    // validation_generator = test_datagen.flow_from_directory(validation_dir, target_size=(150, 150),
    //                                                         batch_size=20, class_mode='binary')
    let opts = FolderOptions {
        image_size: (150, 150),
        label_mode: LabelMode::Binary,
        seed: Some(1337),
        ..FolderOptions::default()
    };
    let data = folder::load_train_validation_test(&base_dir, &opts)?;
    let validation = data.validation.ok_or_else(|| format!("{}: no validation/ folder", base_dir.display()))?;
    println!(
        "Found {} images belonging to {} classes ({}); {} validation images.",
        data.train.len(),
        data.train.num_classes(),
        data.train.class_names().join(", "),
        validation.len()
    );

    // Listing 5.8: fitting the model using a batch generator
    // history = model.fit_generator(train_generator, steps_per_epoch=100, epochs=30,
    //                               validation_data=validation_generator, validation_steps=50)
    // (steps_per_epoch * batch_size = 2,000 = one pass over the book's training folder.)
    let history = model.fit_examples(
        &data.train,
        FitOptions { epochs: epochs(30)?, batch_size: 20, validation_data: Some(&validation), ..FitOptions::default() },
    )?;

    // Listing 5.9: saving the model
    // model.save('cats_and_dogs_small_1.h5')
    model.save("cats_and_dogs_small_1.safetensors")?;

    // Listing 5.10: displaying curves of loss and accuracy during training
    // acc = history.history['acc'] ... plt.plot(epochs, acc, 'bo', label='Training acc') ... plt.show()
    history.plot("small_data_1.png")?;
    println!("curves: small_data_1.png");

    // Listing 5.11: setting up a data augmentation configuration via ImageDataGenerator
    // datagen = ImageDataGenerator(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
    //                              shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode='nearest')
    // (Keras 3's layers: a rotation of 40 degrees is a factor of 40/360 of a turn.)
    //
    // Listing 5.13: defining a new convnet that includes dropout
    // model = models.Sequential()
    // model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(150, 150, 3)))
    // ... (as Listing 5.5)
    // model.add(layers.Flatten())
    // model.add(layers.Dropout(0.5))
    // model.add(layers.Dense(512, activation='relu'))
    // model.add(layers.Dense(1, activation='sigmoid'))
    // model.compile(loss='binary_crossentropy', optimizer=optimizers.RMSprop(lr=1e-4), metrics=['acc'])
    use convnet::FillMode::Nearest;
    let mut model = Sequential::new()
        .add(Rescaling::new(1.0 / 255.0, 0.0).input_shape((150, 150, 3)))
        .add(RandomRotation::new(40.0 / 360.0).fill_mode(Nearest))
        .add(RandomTranslation::new(0.2, 0.2).fill_mode(Nearest))
        .add(RandomShear::new(0.2, 0.2).fill_mode(Nearest))
        .add(RandomZoom::new(0.2).fill_mode(Nearest))
        .add(RandomFlip::new(FlipMode::Horizontal))
        .add(Conv2D::new(32, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(128, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(128, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Flatten::new())
        .add(Dropout::new(0.5))
        .add(Dense::new(512).activation(Relu))
        .add(Dense::new(1).activation(Sigmoid))
        .build()?;
    model.compile(RMSprop::new(1e-4), Loss::BinaryCrossentropy, &[Metric::Accuracy])?;

    // Listing 5.14: training the convnet using data-augmentation generators
    // train_generator = train_datagen.flow_from_directory(train_dir, target_size=(150, 150),
    //                                                     batch_size=32, class_mode='binary')
    // history = model.fit_generator(train_generator, steps_per_epoch=100, epochs=100,
    //                               validation_data=validation_generator, validation_steps=50)
    let history = model.fit_examples(
        &data.train,
        FitOptions {
            epochs: epochs(100)?,
            batch_size: 32,
            validation_data: Some(&validation),
            ..FitOptions::default()
        },
    )?;

    // Listing 5.15: saving the model
    // model.save('cats_and_dogs_small_2.h5')
    model.save("cats_and_dogs_small_2.safetensors")?;

    // (Listing 5.10 again, for the new run.)
    history.plot("small_data_2.png")?;
    println!("curves: small_data_2.png");
    Ok(())
}

/// Writes a tiny two-class stand-in for the book's folder: `train/` (24
/// images per class) and `validation/` (12), 150x150 JPEGs of noisy
/// pictures, class `a` a bright disc and class `b` a bright square, at
/// random places and sizes.
fn write_stand_in(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = convnet_tensor::Rng::new(5);
    for (split, per_class) in [("train", 24), ("validation", 12)] {
        for (class, disc) in [("a", true), ("b", false)] {
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder)?;
            for i in 0..per_class {
                let (cx, cy) = (rng.uniform(45.0, 105.0), rng.uniform(45.0, 105.0));
                let r = rng.uniform(18.0, 40.0);
                let tint = [rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)];
                let mut img = image::RgbImage::new(150, 150);
                for (x, y, p) in img.enumerate_pixels_mut() {
                    let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                    let inside =
                        if disc { dx * dx + dy * dy < r * r } else { dx.abs() < r * 0.85 && dy.abs() < r * 0.85 };
                    let base = if inside { 220.0 } else { 40.0 };
                    for (c, v) in p.0.iter_mut().enumerate() {
                        *v = (base * tint[c] + rng.uniform(-25.0, 25.0)).clamp(0.0, 255.0) as u8;
                    }
                }
                img.save(folder.join(format!("{class}.{i}.jpg")))?;
            }
        }
    }
    Ok(())
}

//! Listing 5.1 (and 5.2-5.4) of "Deep Learning with Python", chapter 5: a
//! small convnet on MNIST, line for line. The Keras lines are the comments
//! above the Rust lines that do the same.
//!
//! ```text
//! cargo run --release -p convnet --example 5_1_mnist_convnet
//! CONVNET_EXAMPLE_LIMIT=2000 cargo run --release -p convnet --example 5_1_mnist_convnet  # quick try
//! ```
//!
//! `CONVNET_EXAMPLE_LIMIT` (or the first argument) trains on the first N
//! training images and tests on the first N test images.

use convnet::Activation::{Relu, Softmax};
use convnet::{Conv2D, Dense, FitOptions, Flatten, Loss, MaxPooling2D, Metric, Sequential};
use convnet_datasets::Mnist;
use convnet_optim::RMSprop;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limit: Option<usize> = match std::env::args().nth(1).or_else(|| std::env::var("CONVNET_EXAMPLE_LIMIT").ok()) {
        Some(s) => Some(s.parse().map_err(|e| format!("limit {s:?}: {e}"))?),
        None => None,
    };

    // model = models.Sequential()
    // model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)))
    // model.add(layers.MaxPooling2D((2, 2)))
    // model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    // model.add(layers.MaxPooling2D((2, 2)))
    // model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    // model.add(layers.Flatten())
    // model.add(layers.Dense(64, activation='relu'))
    // model.add(layers.Dense(10, activation='softmax'))
    let mut model = Sequential::new()
        .add(Conv2D::new(32, (3, 3)).activation(Relu).input_shape((28, 28, 1)))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(Flatten::new())
        .add(Dense::new(64).activation(Relu))
        .add(Dense::new(10).activation(Softmax))
        .build()?;

    // model.summary()
    print!("{}", model.summary());

    // (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    // train_images = train_images.reshape((60000, 28, 28, 1)).astype('float32') / 255
    // test_images = test_images.reshape((10000, 28, 28, 1)).astype('float32') / 255
    // train_labels = to_categorical(train_labels)
    // test_labels = to_categorical(test_labels)
    // (The Dataset keeps the bytes and converts each batch: same values, a quarter of the memory.)
    let mnist = Mnist::load_default()?;
    let (train, test) = match limit {
        Some(n) => (mnist.train.take(n), mnist.test.take(n)),
        None => (mnist.train, mnist.test),
    };

    // model.compile(optimizer='rmsprop', loss='categorical_crossentropy', metrics=['accuracy'])
    model.compile(RMSprop::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;

    // model.fit(train_images, train_labels, epochs=5, batch_size=64)
    model.fit_examples(&train, FitOptions { epochs: 5, batch_size: 64, ..FitOptions::default() })?;

    // test_loss, test_acc = model.evaluate(test_images, test_labels)
    let (_test_loss, test_acc) = model.evaluate_examples(&test, 64)?;

    // test_acc
    println!("test accuracy: {test_acc:.4}");
    Ok(())
}

//! Ready-made architectures, as Keras's `keras.applications`: [`vgg16`].
pub mod vgg16;

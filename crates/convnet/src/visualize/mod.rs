//! Looking inside a convnet, as pictures (the book's section 5.4):
//!
//! - [`activation_grids`]: what every layer computes for one image, each
//!   channel of each layer's output as a tile;
//! - [`filter_patterns`]: the input each filter of a layer responds to
//!   most, grown by gradient ascent from grey noise, all filters in one
//!   batch;
//! - [`grad_cam`]: where in an image the evidence for a class lies, as a
//!   heatmap over the image.
//!
//! Each returns [`image::RgbImage`]s (plain `u8` RGB buffers): save them with
//! `.save("x.png")` or [`save_png`] (atomic). They run on
//! [`Model::activations`](crate::Model::activations) and
//! [`Model::gradient`](crate::Model::gradient) (`gradients.rs`), which
//! any other visualisation can use too. Titles are drawn with an embedded
//! 8x8 bitmap font (`font8x8`, pure Rust). The algorithms and the pictures
//! for the chapter's MNIST model are in `docs/VISUALISE.md`.

mod activations;
mod canvas;
mod colormap;
mod filters;
mod gradcam;

pub use activations::{activation_grids, scale_channel, GridOptions, LayerGrid};
pub use canvas::{png_bytes, save_png};
pub use colormap::Colormap;
pub use filters::{deprocess, filter_patterns, FilterOptions, FilterPatterns};
pub use gradcam::{bilinear, grad_cam, last_conv_layer, GradCam, GradCamOptions};

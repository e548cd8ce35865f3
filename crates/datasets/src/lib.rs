//! `convnet-datasets`: MNIST loaded fast and safely, and seeded mini-batches.
//!
//! - [`idx`]: the IDX format of MNIST. Raw files are memory-mapped (no copy;
//!   opening the 47 MB training images is a mapping plus header checks), gzip
//!   files are decompressed into one buffer sized from a header that has been
//!   checked first.
//! - [`npy`]: `.npy` headers parsed by hand, and the Keras `mnist.npz` archive
//!   (stored or deflated entries).
//! - [`Mnist`]: [`Mnist::load`] reads any directory in MNIST's format strictly;
//!   [`Mnist::load_default`] finds MNIST as Keras's `mnist.load_data()` does
//!   (`$CONVNET_DATA`, the repository's `data/mnist`, the user cache
//!   directory) and verifies MNIST's SHA-256 digests first; with the
//!   `download` feature (off by default) it fetches the files into the cache
//!   on first use (`Mnist::download`, `Mnist::mirrors`).
//! - [`Dataset`]: `u8` images and digit labels sharing their storage, with
//!   zero-copy subsets and validation splits, and conversions to f32 NHWC
//!   tensors in `[0, 1]`, one-hot or sparse labels (Keras's preprocessing).
//! - [`BatchIter`]: seeded per-epoch shuffles, batches gathered into reused
//!   buffers and handed out as tensor views.
//! - [`folder`]: image-folder datasets as Keras's `image_dataset_from_directory`
//!   reads them (JPEG, PNG, BMP, GIF; Keras's file order, seeded split and
//!   bilinear resize), decoded in parallel once, held as `u8`, with an optional
//!   on-disk cache, and batched as f32 NHWC.
//!
//! Every malformed input is an [`Error`] naming the file and the problem; no
//! input makes the parsers panic or allocate more than the input can hold
//! (both parsers are fuzzed: see `docs/FUZZING.md`).
//!
//! Any MNIST-format data, here made in memory, split and batched:
//!
//! ```
//! use convnet_datasets::{BatchIter, Dataset};
//! let pixels: Vec<u8> = (0..10 * 784).map(|i| (i % 256) as u8).collect();
//! let data = Dataset::from_vecs(28, 28, pixels, (0..10).collect())?;
//! let (train, val) = data.split_validation(0.2)?; // the last 20% held out, as Keras does
//! let mut batches = BatchIter::new(&train, 4, Some(1))?; // seeded shuffle
//! let first = batches.next_batch().expect("8 examples make 2 batches");
//! assert_eq!(first.images.shape().dims(), &[4, 28, 28, 1]); // f32 in [0, 1]
//! assert_eq!(val.len(), 2);
//! # Ok::<(), convnet_datasets::Error>(())
//! ```
//!
//! MNIST itself, for five epochs of seeded batches:
//!
//! ```no_run
//! use convnet_datasets::{BatchIter, Mnist};
//! let mnist = Mnist::load_default()?;
//! let (train, val) = mnist.train.split_validation(0.1)?;
//! let mut batches = BatchIter::new(&train, 64, Some(1))?;
//! for epoch in 0..5 {
//!     batches.epoch(epoch);
//!     while let Some(batch) = batches.next_batch() {
//!         let (_x, _y) = (batch.images, batch.labels_onehot); // [64, 28, 28, 1], [64, 10]
//!     }
//! }
//! # let _ = val;
//! # Ok::<(), convnet_datasets::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod bytes;
mod cache;
mod dataset;
#[cfg(feature = "download")]
mod download;
mod error;
pub mod folder;
pub mod idx;
mod mnist;
pub mod npy;

pub use batch::{Batch, BatchIter, EpochOrder};
pub use bytes::file_kind;
pub use dataset::{Dataset, CLASSES};
#[cfg(feature = "download")]
pub use download::{DEFAULT_MIRRORS, MIRRORS_ENV, RAW_LEN};
pub use error::{Error, Result};
pub use mnist::{Mnist, DATA_ENV, FILES, NPZ_NAME, SHA256_GZ, SHA256_RAW, SIDE, TEST_LEN, TRAIN_LEN};

// The README's example runs as a doc test, so the front page a user reads on
// crates.io cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

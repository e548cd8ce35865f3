//! Image-folder datasets: Keras's `image_dataset_from_directory`, decoded once.
//!
//! A folder with one subfolder per class (`cats/`, `dogs/`), each holding
//! JPEG, PNG, BMP or GIF files, becomes an [`ImageDataset`]: every image
//! decoded in parallel (rayon), converted to the [`ColorMode`], resized to
//! `image_size` with TensorFlow's bilinear resize (optionally after Keras's
//! `crop_to_aspect_ratio` crop) and held as `u8` NHWC, a quarter of the memory
//! of f32. Batches come out as f32 NHWC, unscaled (as Keras's datasets give
//! them, for a `Rescaling` layer) or scaled ([`ImageBatches::scale`]).
//!
//! Which files belong to which subset follows Keras exactly ([`index`]
//! explains the order, the seeded shuffle and the split): the same folder, seed
//! and `validation_split` give the same training and validation files as Keras
//! 3 (tested against lists Keras produced). The book's layout, `train/`,
//! `validation/` and `test/` each holding the class folders, is one call:
//! [`load_train_validation_test`].
//!
//! With [`FolderOptions::cache_dir`], the decoded pixels are also written to a
//! cache file keyed by the folder's file list, sizes and modification times
//! ([`cache`]); the next load with the same setting maps that file and
//! decodes nothing.
//!
//! Every size is checked before the memory it implies is allocated
//! ([`FolderLimits`]): an image file's size, each image's decoded size (from
//! its header, so a small PNG claiming 50,000 x 50,000 pixels is refused
//! before decoding), the whole dataset's size, the number of files. Every bad
//! input is an [`Error`] naming the file: unreadable, truncated or corrupt
//! images, a class folder without images, a folder without class folders.
//!
//! ```no_run
//! use convnet_datasets::folder::{self, FolderOptions, LabelMode};
//! let opts = FolderOptions {
//!     image_size: (150, 150),
//!     label_mode: LabelMode::Binary,
//!     cache_dir: Some("target/image-cache".into()),
//!     ..FolderOptions::default()
//! };
//! let splits = folder::load_train_validation_test("cats_vs_dogs_small", &opts)?;
//! println!("{} training images of {:?}", splits.train.len(), splits.train.input_shape());
//! let mut batches = splits.train.batches(32, Some(1))?.scale(1.0 / 255.0);
//! while let Some(batch) = batches.next_batch() {
//!     let (_x, _y) = (batch.images, batch.labels); // [32, 150, 150, 3], [32, 1]
//! }
//! # Ok::<(), convnet_datasets::Error>(())
//! ```

mod batch;
pub mod cache;
mod decode;
pub mod index;
mod resize;

pub use batch::{ImageBatch, ImageBatches};
pub use cache::CacheStatus;
pub use decode::{decode, rgb_to_gray, ColorMode, DecodeLimits, Pixels};
pub use index::{index_directory, IndexedFile, Labels, Mt19937, Subset, IMAGE_EXTENSIONS};
pub use resize::{crop_box, resize_bilinear_f32, resize_bilinear_u8};

use crate::bytes::Bytes;
use crate::{Error, Result};
use convnet_tensor::{Shape, Tensor};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest image file read: 256 MiB (a photo is a few MB; a file this large
/// is almost certainly not meant as one training image).
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Largest decoded image, in the decoder's pixel format: 512 MiB (the `image`
/// crate's own default; a 11,585 x 11,585 RGBA image). Also the budget the
/// decoder is held to. Each decoding thread holds at most one such image.
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;
/// Largest dataset held (`images * height * width * channels` bytes): 4 GiB,
/// 60,000 RGB images of 150 x 150 is 4.05 GB. Raise it for larger sets on
/// larger machines.
pub const MAX_DATASET_BYTES: u64 = 4 << 30;

/// The memory bounds of a load; each field overridable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderLimits {
    /// Largest image file read ([`MAX_FILE_BYTES`]).
    pub max_file_bytes: u64,
    /// Largest decoded image ([`MAX_IMAGE_BYTES`]).
    pub max_image_bytes: u64,
    /// Largest dataset held, in bytes ([`MAX_DATASET_BYTES`]).
    pub max_dataset_bytes: u64,
}

impl Default for FolderLimits {
    fn default() -> Self {
        FolderLimits {
            max_file_bytes: MAX_FILE_BYTES,
            max_image_bytes: MAX_IMAGE_BYTES,
            max_dataset_bytes: MAX_DATASET_BYTES,
        }
    }
}

/// Keras's `label_mode`: how labels are handed to a loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LabelMode {
    /// The class index (sparse categorical cross-entropy), one value per image.
    #[default]
    Int,
    /// 0 or 1, one value per image (binary cross-entropy; exactly two classes).
    Binary,
    /// One-hot over the classes (categorical cross-entropy).
    Categorical,
}

impl LabelMode {
    /// The Keras name (`"int"`, `"binary"`, `"categorical"`).
    pub fn name(self) -> &'static str {
        match self {
            LabelMode::Int => "int",
            LabelMode::Binary => "binary",
            LabelMode::Categorical => "categorical",
        }
    }
}

/// How to read a folder: the arguments of Keras's `image_dataset_from_directory`
/// (with Keras's defaults), plus the cache and the limits.
#[derive(Clone, Debug)]
pub struct FolderOptions {
    /// Where labels come from (default: the class folders).
    pub labels: Labels,
    /// How labels are given to a loss (default `Int`).
    pub label_mode: LabelMode,
    /// The classes to read, in this order (default: every class folder, sorted).
    pub class_names: Option<Vec<String>>,
    /// Channels every image is converted to (default `Rgb`).
    pub color_mode: ColorMode,
    /// `(height, width)` every image is resized to (default `(256, 256)`).
    pub image_size: (usize, usize),
    /// Shuffle the file list as Keras does (default true).
    pub shuffle: bool,
    /// The shuffle seed, below 2^32 (required with a validation split when
    /// shuffling; without one, a seed is drawn from the clock, as Keras draws one).
    pub seed: Option<u64>,
    /// Fraction of the files held out for validation, in (0, 1).
    pub validation_split: Option<f64>,
    /// Crop the largest centred box of the target aspect ratio before resizing.
    pub crop_to_aspect_ratio: bool,
    /// Walk into symbolic links to directories (default false, as Keras).
    pub follow_links: bool,
    /// Keep decoded pixels in a cache file in this directory (default: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Memory bounds.
    pub limits: FolderLimits,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            labels: Labels::Inferred,
            label_mode: LabelMode::Int,
            class_names: None,
            color_mode: ColorMode::Rgb,
            image_size: (256, 256),
            shuffle: true,
            seed: None,
            validation_split: None,
            crop_to_aspect_ratio: false,
            follow_links: false,
            cache_dir: None,
            limits: FolderLimits::default(),
        }
    }
}

impl FolderOptions {
    /// The decoding setting, as the cache names it.
    fn setting(&self) -> String {
        format!(
            "size={}x{} color={} crop={} resize=bilinear-tf-half-pixel round=nearest",
            self.image_size.0,
            self.image_size.1,
            self.color_mode.name(),
            self.crop_to_aspect_ratio
        )
    }
}

/// Decoded images of a folder, their labels and where they came from.
///
/// Cloning shares the pixels (a reference count); subsets share them too.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    pixels: Arc<Bytes>,
    /// Byte offset of stored image 0 in `pixels`.
    start: usize,
    height: usize,
    width: usize,
    channels: usize,
    /// For each example, its position in the storage.
    items: Vec<usize>,
    /// For each example, its class index (`None`: a dataset without labels).
    labels: Option<Vec<u32>>,
    paths: Vec<PathBuf>,
    class_names: Vec<String>,
    label_mode: LabelMode,
    cache: CacheStatus,
}

impl ImageDataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `[height, width, channels]` of one image.
    pub fn input_shape(&self) -> [usize; 3] {
        [self.height, self.width, self.channels]
    }

    /// Bytes (and floats) per image.
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// The class names, label `k` being `class_names()[k]` (empty without labels).
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The label mode asked for.
    pub fn label_mode(&self) -> LabelMode {
        self.label_mode
    }

    /// Class index of each image, in dataset order (`None` without labels).
    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }

    /// The file each image was read from, in dataset order (Keras's `file_paths`).
    pub fn file_paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Whether the pixels came from the cache.
    pub fn cache_status(&self) -> &CacheStatus {
        &self.cache
    }

    /// The `u8` pixels of image `i` (NHWC, `image_len()` bytes), or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.image_len();
        let at = self.start + *self.items.get(i)? * n;
        Some(&self.pixels[at..at + n])
    }

    /// Values per label in the label mode: 1 (`Int`, `Binary`) or the class count.
    pub fn label_width(&self) -> usize {
        match self.label_mode {
            LabelMode::Categorical => self.num_classes(),
            LabelMode::Int | LabelMode::Binary => 1,
        }
    }

    /// Copies images `indices` into `out` as f32 NHWC, each value the byte
    /// value times `scale` (`None`: unscaled, 0-255, as Keras's datasets).
    pub fn gather_images(&self, indices: &[usize], scale: Option<f32>, out: &mut [f32]) -> Result<()> {
        let n = self.image_len();
        if out.len() != indices.len() * n {
            return Err(Error::InvalidArgument(format!(
                "{} floats for {} images of {n} values",
                out.len(),
                indices.len()
            )));
        }
        for (dst, &i) in out.chunks_exact_mut(n.max(1)).zip(indices) {
            let src = self.image(i).ok_or_else(|| {
                Error::InvalidArgument(format!("image index {i} outside a dataset of {}", self.len()))
            })?;
            match scale {
                None => dst.iter_mut().zip(src).for_each(|(o, &b)| *o = f32::from(b)),
                Some(s) => dst.iter_mut().zip(src).for_each(|(o, &b)| *o = f32::from(b) * s),
            }
        }
        Ok(())
    }

    /// Writes the labels of `indices` into `out` in the label mode
    /// (`label_width()` floats each: the class index, 0/1, or a one-hot row).
    pub fn gather_labels(&self, indices: &[usize], out: &mut [f32]) -> Result<()> {
        let labels =
            self.labels.as_deref().ok_or_else(|| Error::InvalidArgument("the dataset has no labels".into()))?;
        let w = self.label_width();
        if out.len() != indices.len() * w {
            return Err(Error::InvalidArgument(format!("{} floats for {} labels of {w}", out.len(), indices.len())));
        }
        for (dst, &i) in out.chunks_exact_mut(w.max(1)).zip(indices) {
            let l = *labels.get(i).ok_or_else(|| {
                Error::InvalidArgument(format!("label index {i} outside a dataset of {}", self.len()))
            })?;
            match self.label_mode {
                LabelMode::Int | LabelMode::Binary => dst[0] = l as f32,
                LabelMode::Categorical => {
                    dst.fill(0.0);
                    dst[l as usize] = 1.0;
                }
            }
        }
        Ok(())
    }

    /// All images as one f32 NHWC tensor (see [`ImageDataset::gather_images`]).
    pub fn images_f32(&self, scale: Option<f32>) -> Result<Tensor> {
        let [h, w, c] = self.input_shape();
        let shape = Shape::new(&[self.len(), h, w, c]).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut t = Tensor::zeros(shape);
        let all: Vec<usize> = (0..self.len()).collect();
        self.gather_images(&all, scale, t.data_mut())?;
        Ok(t)
    }

    /// All labels in the label mode: `[n]` class indices, `[n, 1]` (binary) or `[n, classes]`.
    pub fn labels_f32(&self) -> Result<Tensor> {
        let dims: Vec<usize> = match self.label_mode {
            LabelMode::Int => vec![self.len()],
            LabelMode::Binary => vec![self.len(), 1],
            LabelMode::Categorical => vec![self.len(), self.num_classes()],
        };
        let shape = Shape::new(&dims).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut t = Tensor::zeros(shape);
        let all: Vec<usize> = (0..self.len()).collect();
        self.gather_labels(&all, t.data_mut())?;
        Ok(t)
    }

    /// The first `min(n, len)` images, sharing the pixels (for `--limit`).
    pub fn take(&self, n: usize) -> ImageDataset {
        let n = n.min(self.len());
        let mut d = self.clone();
        d.items.truncate(n);
        d.paths.truncate(n);
        if let Some(l) = d.labels.as_mut() {
            l.truncate(n);
        }
        d
    }

    /// Seeded mini-batches of f32 images (see [`ImageBatches`]).
    pub fn batches(&self, batch_size: usize, seed: Option<u64>) -> Result<ImageBatches<'_>> {
        ImageBatches::new(self, batch_size, seed)
    }

    /// Examples at `order` (positions in this dataset) as a new dataset sharing the pixels.
    fn select(&self, order: &[usize]) -> ImageDataset {
        ImageDataset {
            items: order.iter().map(|&i| self.items[i]).collect(),
            labels: self.labels.as_ref().map(|l| order.iter().map(|&i| l[i]).collect()),
            paths: order.iter().map(|&i| self.paths[i].clone()).collect(),
            ..self.clone()
        }
    }
}

/// The three datasets of the book's layout.
#[derive(Clone, Debug)]
pub struct TrainValidationTest {
    /// `train/`.
    pub train: ImageDataset,
    /// `validation/`, when present.
    pub validation: Option<ImageDataset>,
    /// `test/`, when present.
    pub test: Option<ImageDataset>,
}

/// Reads a whole folder (no split; Keras's call without `validation_split`).
///
/// With a `validation_split` in the options this is an error: use
/// [`load_subset`] or [`load_both`].
pub fn load(dir: impl AsRef<Path>, opts: &FolderOptions) -> Result<ImageDataset> {
    let dir = dir.as_ref();
    if opts.validation_split.is_some() {
        return Err(Error::InvalidArgument(
            "validation_split is set: load a subset (load_subset) or both (load_both)".into(),
        ));
    }
    let all = load_all(dir, opts)?;
    let order = keras_order(all.len(), opts)?;
    Ok(all.select(&order))
}

/// Reads the training or the validation part of a folder, as Keras's `subset`.
pub fn load_subset(dir: impl AsRef<Path>, opts: &FolderOptions, subset: Subset) -> Result<ImageDataset> {
    let (train, val) = load_both(dir, opts)?;
    Ok(match subset {
        Subset::Training => train,
        Subset::Validation => val,
    })
}

/// Reads both parts of a split folder (Keras's `subset="both"`), decoding each
/// image once: `(training, validation)`.
pub fn load_both(dir: impl AsRef<Path>, opts: &FolderOptions) -> Result<(ImageDataset, ImageDataset)> {
    let dir = dir.as_ref();
    let split = opts
        .validation_split
        .ok_or_else(|| Error::InvalidArgument("a subset needs validation_split (Keras: set both or neither)".into()))?;
    check_split_args(opts)?;
    // Check the arguments before decoding anything.
    let (files, _) = index_directory(dir, &opts.labels, opts.class_names.as_deref(), opts.follow_links)?;
    let val = index::validation_count(dir, files.len(), split)?;
    drop(files);
    let all = load_all(dir, opts)?;
    let order = keras_order(all.len(), opts)?;
    let cut = all.len() - val;
    Ok((all.select(&order[..cut]), all.select(&order[cut..])))
}

/// Reads the book's layout: `root/train`, and `root/validation` and `root/test`
/// when present, each holding the same class folders. The class names come
/// from `train/` (or the options); the other two must have the same classes.
pub fn load_train_validation_test(root: impl AsRef<Path>, opts: &FolderOptions) -> Result<TrainValidationTest> {
    let root = root.as_ref();
    if opts.validation_split.is_some() {
        return Err(Error::InvalidArgument("validation_split does not apply to a train/validation/test layout".into()));
    }
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(Error::MissingDir { path: train_dir.display().to_string() });
    }
    let train = load(&train_dir, opts)?;
    let mut others = Vec::new();
    for name in ["validation", "test"] {
        let dir = root.join(name);
        if !dir.exists() {
            others.push(None);
            continue;
        }
        if matches!(opts.labels, Labels::Inferred) {
            let found = index::class_folders(&dir)?;
            let mut want = train.class_names().to_vec();
            want.sort();
            let mut sorted = found.clone();
            sorted.sort();
            if sorted != want {
                return Err(Error::InvalidArgument(format!(
                    "{}: class folders {found:?} differ from train/'s {:?}",
                    dir.display(),
                    train.class_names()
                )));
            }
        }
        let mut o = opts.clone();
        if matches!(opts.labels, Labels::Inferred) {
            o.class_names = Some(train.class_names().to_vec());
        }
        others.push(Some(load(&dir, &o)?));
    }
    let test = others.pop().flatten();
    let validation = others.pop().flatten();
    Ok(TrainValidationTest { train, validation, test })
}

/// The files a load would read, in Keras's order and split, with the class names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLists {
    /// Class names, label `k` being `class_names[k]`.
    pub class_names: Vec<String>,
    /// The training files (every file when there is no validation split), in order.
    pub training: Vec<IndexedFile>,
    /// The validation files (empty without a validation split), in order.
    pub validation: Vec<IndexedFile>,
}

/// Lists the files Keras would read for `opts` and which subset each falls in,
/// without decoding anything (what `image_dataset_from_directory`'s
/// `file_paths` attributes hold).
///
/// ```no_run
/// use convnet_datasets::folder::{file_lists, FolderOptions};
/// let opts = FolderOptions { validation_split: Some(0.2), seed: Some(1337), ..FolderOptions::default() };
/// let lists = file_lists("photos", &opts)?;
/// println!("{} training, {} validation files", lists.training.len(), lists.validation.len());
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
pub fn file_lists(dir: impl AsRef<Path>, opts: &FolderOptions) -> Result<FileLists> {
    let dir = dir.as_ref();
    check_split_args(opts)?;
    let (files, class_names) = index_directory(dir, &opts.labels, opts.class_names.as_deref(), opts.follow_links)?;
    let order = keras_order(files.len(), opts)?;
    let cut = match opts.validation_split {
        Some(split) => files.len() - index::validation_count(dir, files.len(), split)?,
        None => files.len(),
    };
    let pick = |range: &[usize]| range.iter().map(|&i| files[i].clone()).collect();
    Ok(FileLists { class_names, training: pick(&order[..cut]), validation: pick(&order[cut..]) })
}

/// Keras's `check_validation_split_arg` (a seed is needed to split shuffled files).
fn check_split_args(opts: &FolderOptions) -> Result<()> {
    if let Some(s) = opts.seed {
        index::keras_seed(s)?;
    }
    if opts.validation_split.is_some() && opts.shuffle && opts.seed.is_none() {
        return Err(Error::InvalidArgument(
            "a validation split of shuffled files needs a seed, so training and validation never overlap \
             (Keras requires one too)"
                .into(),
        ));
    }
    Ok(())
}

/// Keras's order of `n` indexed files: shuffled by the seed, or as indexed.
fn keras_order(n: usize, opts: &FolderOptions) -> Result<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    if opts.shuffle {
        let seed = match opts.seed {
            Some(s) => index::keras_seed(s)?,
            // Keras draws np.random.randint(1e6) when no seed is given.
            None => {
                (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0))
                    % 1_000_000
            }
        };
        Mt19937::new(seed).shuffle(&mut order);
    }
    Ok(order)
}

/// Indexes, then decodes (or maps from the cache) every file, in index order.
fn load_all(dir: &Path, opts: &FolderOptions) -> Result<ImageDataset> {
    let (height, width) = opts.image_size;
    if height == 0 || width == 0 {
        return Err(Error::InvalidArgument(format!("image_size {height}x{width} has a zero side")));
    }
    if let Some(s) = opts.seed {
        index::keras_seed(s)?;
    }
    let (files, class_names) = index_directory(dir, &opts.labels, opts.class_names.as_deref(), opts.follow_links)?;
    if opts.label_mode == LabelMode::Binary && !matches!(opts.labels, Labels::None) && class_names.len() != 2 {
        return Err(Error::InvalidArgument(format!(
            "{}: binary labels need exactly 2 classes, found {}: {class_names:?}",
            dir.display(),
            class_names.len()
        )));
    }
    if matches!(opts.labels, Labels::List(_)) && opts.label_mode != LabelMode::Int {
        if let Some(f) = files.iter().find(|f| f.label as usize >= class_names.len()) {
            return Err(Error::InvalidArgument(format!(
                "label {} of {} is not below the number of distinct labels ({})",
                f.label,
                f.path.display(),
                class_names.len()
            )));
        }
    }
    let channels = opts.color_mode.channels();
    let dims = cache::CacheDims { images: files.len(), height, width, channels };
    let limit = opts.limits.max_dataset_bytes;
    let total = dims.pixel_bytes().filter(|&b| b as u64 <= limit).ok_or_else(|| Error::DatasetTooLarge {
        dir: dir.display().to_string(),
        images: files.len(),
        height,
        width,
        channels,
        bytes: dims.pixel_bytes().map_or(u64::MAX, |b| b as u64),
        limit,
    })?;
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let setting = opts.setting();
    let mut status = CacheStatus::Off;
    let mut cached = None;
    if let Some(cache_dir) = &opts.cache_dir {
        let path = cache::cache_path(cache_dir, dir, &setting)?;
        let key = cache::cache_key(&setting, &paths)?;
        match cache::read(&path, &key, dims)? {
            Ok(bytes) => {
                cached = Some(bytes);
                status = CacheStatus::Hit;
            }
            Err(reason) => {
                status = if reason.is_empty() { CacheStatus::Written } else { CacheStatus::Rebuilt(reason) };
                let pixels = decode_all(&paths, opts, total)?;
                cache::write(&path, &key, dims, &pixels)?;
                cached = Some(Bytes::Owned(pixels));
            }
        }
    }
    let (pixels, start) = match cached {
        Some(Bytes::Mapped(m)) => (Bytes::Mapped(m), cache::HEADER_LEN),
        Some(owned) => (owned, 0),
        None => (Bytes::Owned(decode_all(&paths, opts, total)?), 0),
    };
    let labels = (!matches!(opts.labels, Labels::None)).then(|| files.iter().map(|f| f.label).collect());
    Ok(ImageDataset {
        pixels: Arc::new(pixels),
        start,
        height,
        width,
        channels,
        items: (0..files.len()).collect(),
        labels,
        paths,
        class_names,
        label_mode: opts.label_mode,
        cache: status,
    })
}

/// Decodes every file into one `total`-byte NHWC buffer, in parallel; the
/// error reported is that of the first bad file in index order.
fn decode_all(paths: &[PathBuf], opts: &FolderOptions, total: usize) -> Result<Vec<u8>> {
    let mut pixels = vec![0u8; total];
    let per = total / paths.len().max(1);
    let results: Vec<Result<()>> = pixels
        .par_chunks_mut(per.max(1))
        .zip(paths.par_iter())
        .map(|(out, path)| decode_into(path, opts, out))
        .collect();
    results.into_iter().collect::<Result<()>>()?;
    Ok(pixels)
}

/// Reads, decodes, converts, (crops and) resizes one file into `out`.
pub(crate) fn decode_into(path: &Path, opts: &FolderOptions, out: &mut [u8]) -> Result<()> {
    let limits =
        DecodeLimits { max_file_bytes: opts.limits.max_file_bytes, max_image_bytes: opts.limits.max_image_bytes };
    let bytes = decode::read_bounded(path, limits.max_file_bytes)?;
    let px = decode(path, &bytes, opts.color_mode, limits)?;
    drop(bytes);
    let target = opts.image_size;
    if opts.crop_to_aspect_ratio {
        let bx = crop_box((px.height, px.width), target);
        let cropped = resize::crop(&px.data, px.width, px.channels, bx);
        resize_bilinear_u8(&cropped, (bx.2, bx.3), px.channels, target, out);
    } else {
        resize_bilinear_u8(&px.data, (px.height, px.width), px.channels, target, out);
    }
    Ok(())
}

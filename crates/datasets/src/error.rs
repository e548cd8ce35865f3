//! The one error type of `convnet-datasets`.
//!
//! Every variant that comes from a file names that file (its path, or the name a
//! caller gave an in-memory buffer) and says what is wrong with it, so a user can
//! act on the message alone.

/// Everything that can go wrong while finding, reading, checking or batching a
/// dataset.
///
/// ```
/// use convnet_datasets::{idx, Error};
/// let err = idx::IdxLabels::from_bytes("labels.idx", vec![0, 0, 8, 3]).unwrap_err();
/// assert!(matches!(err, Error::BadMagic { .. }));
/// assert!(err.to_string().starts_with("labels.idx: "));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory does not exist (or is not a directory).
    #[error("{path}: no such directory")]
    MissingDir {
        /// The directory asked for.
        path: String,
    },
    /// The path exists but is not what was expected: a FIFO, a device, a
    /// socket, or a file where a directory was expected. Refused before it
    /// is opened (a FIFO would block, `/dev/zero` never ends).
    #[error("{path}: is {found}, not {expected}")]
    WrongFileType {
        /// The path.
        path: String,
        /// What it is (`"a FIFO (named pipe)"`).
        found: &'static str,
        /// What was expected (`"a directory or an .npz file"`).
        expected: &'static str,
    },
    /// A file the dataset needs is not there.
    #[error("{path}: no such file{hint}")]
    MissingFile {
        /// The file looked for.
        path: String,
        /// What else was tried, e.g. `" (nor the raw or .gz variant, nor mnist.npz)"`.
        hint: String,
    },
    /// No default MNIST copy was found.
    #[error(
        "no MNIST data found: looked in {looked}; set CONVNET_DATA, copy the four .gz files into data/mnist, \
         or build convnet-datasets with the `download` feature"
    )]
    NoDefaultData {
        /// The places searched, in order.
        looked: String,
    },
    /// The operating system refused an operation on the file.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The gzip stream cannot be decompressed.
    #[error("{file}: corrupt gzip stream: {source}")]
    Gzip {
        /// The file.
        file: String,
        /// What the decoder said.
        #[source]
        source: std::io::Error,
    },
    /// The IDX magic number is not the one expected (wrong file kind or not IDX at all).
    #[error("{file}: wrong magic number 0x{found:08x}, expected 0x{expected:08x} ({what})")]
    BadMagic {
        /// The file.
        file: String,
        /// The big-endian u32 at the start of the file.
        found: u32,
        /// The magic number of the expected kind.
        expected: u32,
        /// The expected kind, e.g. `"IDX images: unsigned byte, 3 dimensions"`.
        what: &'static str,
    },
    /// The IDX element type is not unsigned byte (0x08).
    #[error("{file}: element type 0x{found:02x} ({name}) is not unsigned byte (0x08)")]
    WrongElementType {
        /// The file.
        file: String,
        /// The type code found.
        found: u8,
        /// Its IDX name, or `"unknown"`.
        name: &'static str,
    },
    /// The file ends inside its header.
    #[error("{file}: truncated header: {len} bytes, the header needs {need}")]
    TruncatedHeader {
        /// The file.
        file: String,
        /// Bytes available.
        len: u64,
        /// Bytes the header needs.
        need: u64,
    },
    /// The file ends before the data its header promises.
    #[error("{file}: truncated data: the header promises {expected} bytes of data, the file holds {actual}")]
    TruncatedData {
        /// The file.
        file: String,
        /// Data bytes the header promises.
        expected: u64,
        /// Data bytes present.
        actual: u64,
    },
    /// Bytes follow the data the header describes.
    #[error("{file}: unexpected bytes after the {expected} bytes of data the header describes ({extra} or more)")]
    TrailingData {
        /// The file.
        file: String,
        /// Data bytes the header describes.
        expected: u64,
        /// Bytes beyond them (exact for raw files; for compressed streams, at
        /// least this many: counting stops after 1 MiB).
        extra: u64,
    },
    /// The product of the dimensions does not fit in memory addresses.
    #[error("{file}: dimensions {dims:?} overflow (their product exceeds {max})")]
    DimensionOverflow {
        /// The file.
        file: String,
        /// The dimensions from the header.
        dims: Vec<u64>,
        /// The largest size accepted.
        max: u64,
    },
    /// A compressed stream claims far more data than it could possibly hold.
    #[error("{file}: the header promises {claimed} bytes, but {compressed} compressed bytes can hold at most {limit}")]
    Implausible {
        /// The file.
        file: String,
        /// Bytes the header promises.
        claimed: u64,
        /// Size of the compressed input.
        compressed: u64,
        /// Most bytes that input can decompress to.
        limit: u64,
    },
    /// Image and label files disagree on the number of examples.
    #[error("{images}: {n_images} images, but {labels}: {n_labels} labels")]
    CountMismatch {
        /// The image file.
        images: String,
        /// Its number of images.
        n_images: usize,
        /// The label file.
        labels: String,
        /// Its number of labels.
        n_labels: usize,
    },
    /// A label is not a digit.
    #[error("{file}: label {label} at index {index} is not a digit 0-9")]
    BadLabel {
        /// The label file.
        file: String,
        /// Position of the first bad label.
        index: usize,
        /// Its value.
        label: u8,
    },
    /// Images are not the size MNIST uses.
    #[error("{file}: images are {rows}x{cols}, MNIST-format data must be 28x28")]
    WrongImageSize {
        /// The image file.
        file: String,
        /// Rows per image.
        rows: usize,
        /// Columns per image.
        cols: usize,
    },
    /// The zip container of an `.npz` cannot be read.
    #[error("{file}: bad zip archive: {message}")]
    Zip {
        /// The file.
        file: String,
        /// What the zip reader said.
        message: String,
    },
    /// An `.npz` lacks one of the arrays MNIST needs.
    #[error("{file}: no array `{key}` (an MNIST npz holds x_train, y_train, x_test, y_test)")]
    NpzMissingKey {
        /// The file.
        file: String,
        /// The missing key, e.g. `"x_train"`.
        key: &'static str,
    },
    /// An `.npy` array (alone or inside an `.npz`) is malformed or not what MNIST needs:
    /// bad magic or header, dtype other than `uint8`, Fortran order, wrong shape.
    #[error("{file}: {problem}")]
    Npy {
        /// The file, and for an array inside an `.npz` the entry, e.g. `"mnist.npz: x_train.npy"`.
        file: String,
        /// The problem.
        problem: String,
    },
    /// A file of the default copy does not have MNIST's SHA-256.
    #[error(
        "{file}: SHA-256 {found} is not MNIST's ({expected}); the default copy is damaged \
         (load other MNIST-format data with Mnist::load / --data DIR)"
    )]
    Digest {
        /// The file.
        file: String,
        /// The known digest.
        expected: &'static str,
        /// The digest of the file.
        found: String,
    },
    /// An image file cannot be read as an image: unreadable, truncated,
    /// corrupt, of an unknown format, or not a regular file.
    #[error("{file}: {problem}")]
    Image {
        /// The image file.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An image whose decoded pixels would exceed the per-image memory limit
    /// (a decompression bomb); refused from its header, before decoding.
    #[error(
        "{file}: a {width}x{height} image needs {bytes} bytes decoded, more than the limit of {limit} \
         (FolderLimits::max_image_bytes)"
    )]
    ImageTooLarge {
        /// The image file.
        file: String,
        /// Width its header states.
        width: u64,
        /// Height its header states.
        height: u64,
        /// Bytes the decoded image would take.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// A folder of class folders holds no class folder.
    #[error("{dir}: no class folders (expected one subfolder per class, each holding .jpg, .jpeg, .png, .bmp or .gif files)")]
    NoClasses {
        /// The folder.
        dir: String,
    },
    /// A class folder holds no image file.
    #[error("{dir}: empty class folder (no .jpg, .jpeg, .png, .bmp or .gif file in it or below it)")]
    EmptyClass {
        /// The class folder.
        dir: String,
    },
    /// A folder read without labels holds no image file.
    #[error("{dir}: no .jpg, .jpeg, .png, .bmp or .gif file in it or below it")]
    NoImages {
        /// The folder.
        dir: String,
    },
    /// The decoded dataset would exceed the dataset memory limit.
    #[error(
        "{dir}: {images} images of {height}x{width}x{channels} need {bytes} bytes, more than the limit of {limit} \
         (FolderLimits::max_dataset_bytes; smaller images or a larger limit)"
    )]
    DatasetTooLarge {
        /// The folder.
        dir: String,
        /// Number of images.
        images: usize,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Channels.
        channels: usize,
        /// Bytes needed (saturated at `u64::MAX` when the product overflows).
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// No mirror served a good copy of a file (`download` feature): the
    /// reason lists each URL tried and what went wrong (HTTP status, network
    /// error, truncated or corrupt data, wrong digest). Nothing was written.
    #[error("{file}: download failed: {reason}")]
    Download {
        /// The file that was to be written.
        file: String,
        /// What each mirror did.
        reason: String,
    },
    /// An argument a caller passed is out of range (batch size 0, a fraction outside `[0, 1]`, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

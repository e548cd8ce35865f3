//! The IDX file format of MNIST (LeCun et al., <http://yann.lecun.com/exdb/mnist/>).
//!
//! An IDX file is a 4-byte magic number, one big-endian `u32` per dimension,
//! then the elements in row-major order. The magic is `0x00 0x00 TYPE RANK`;
//! MNIST uses unsigned bytes (`TYPE = 0x08`), so images are `0x00000803`
//! (`count x rows x cols`) and labels `0x00000801` (`count`).
//!
//! Raw files are memory-mapped ([`memmap2`]): opening one is a mapping plus
//! header checks, and [`IdxImages::pixels`] is a slice into the mapping with no
//! copy. Gzip files (recognised by their content, `1f 8b`, whatever their name)
//! are decompressed with [`flate2`] into one buffer sized from the header, but
//! only after the header has been checked and found plausible: a deflate stream
//! expands at most [`MAX_DEFLATE_RATIO`]:1, so a header that promises more than
//! its compressed input could hold is refused before anything is allocated.
//!
//! Parsing is strict: wrong magic, wrong element type, truncated header or data,
//! bytes after the data and dimensions whose product overflows are all errors
//! that name the file.
//!
//! ```
//! use convnet_datasets::idx::{encode_images, encode_labels, IdxImages, IdxLabels};
//! let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
//! let images = IdxImages::from_bytes("tiny", encode_images(2, 3, 4, &pixels)?)?;
//! assert_eq!((images.len(), images.rows(), images.cols()), (2, 3, 4));
//! assert_eq!(images.image(1).unwrap(), &pixels[12..]);
//! let labels = IdxLabels::from_bytes("tiny", encode_labels(&[7, 1])?)?;
//! assert_eq!(labels.labels(), &[7, 1]);
//! # Ok::<(), convnet_datasets::Error>(())
//! ```

use crate::bytes::{map_file, Bytes};
use crate::{Error, Result};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Magic number of an IDX file of unsigned-byte images (`count x rows x cols`).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (`count`).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The IDX type code of unsigned bytes.
pub const UNSIGNED_BYTE: u8 = 0x08;
/// The most a deflate stream can expand: 258-byte matches coded in 2 bits
/// give just under 1032:1. Used to refuse headers that promise more data than
/// their compressed input can hold.
pub const MAX_DEFLATE_RATIO: u64 = 1032;
/// The largest data size accepted (bytes): anything larger overflows `isize`.
pub const MAX_DATA_BYTES: u64 = isize::MAX as u64;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// How many bytes past the expected end of a gzip stream are counted for the
/// `TrailingData` message (the count is a lower bound beyond this).
const TRAILING_COUNT_LIMIT: u64 = 1 << 20;

/// True when `bytes` start like a gzip stream.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Which kind of IDX file a parser expects.
#[derive(Clone, Copy, Debug)]
struct Kind {
    rank: u8,
    magic: u32,
    what: &'static str,
}

const IMAGES: Kind = Kind { rank: 3, magic: IMAGES_MAGIC, what: "IDX images: unsigned byte, 3 dimensions" };
const LABELS: Kind = Kind { rank: 1, magic: LABELS_MAGIC, what: "IDX labels: unsigned byte, 1 dimension" };

impl Kind {
    fn header_len(self) -> usize {
        4 + 4 * self.rank as usize
    }
}

/// A checked IDX header.
#[derive(Clone, Copy, Debug)]
struct Header {
    dims: [usize; 3],
    data_len: usize,
}

fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "short",
        0x0C => "int",
        0x0D => "float",
        0x0E => "double",
        _ => "unknown",
    }
}

/// Checks the 4-byte magic number of `kind`.
fn check_magic(file: &str, magic: [u8; 4], kind: Kind) -> Result<()> {
    if magic[0] != 0 || magic[1] != 0 || magic[3] != kind.rank {
        return Err(Error::BadMagic {
            file: file.to_string(),
            found: u32::from_be_bytes(magic),
            expected: kind.magic,
            what: kind.what,
        });
    }
    if magic[2] != UNSIGNED_BYTE {
        return Err(Error::WrongElementType { file: file.to_string(), found: magic[2], name: type_name(magic[2]) });
    }
    Ok(())
}

/// Parses the header at the start of `bytes` (which may hold only the header):
/// magic, element type, dimensions and their product.
fn parse_header(file: &str, bytes: &[u8], kind: Kind) -> Result<Header> {
    let truncated =
        || Error::TruncatedHeader { file: file.to_string(), len: bytes.len() as u64, need: kind.header_len() as u64 };
    let magic: [u8; 4] = bytes.get(..4).ok_or_else(truncated)?.try_into().expect("4 bytes");
    check_magic(file, magic, kind)?;
    let dim_bytes = bytes.get(4..kind.header_len()).ok_or_else(truncated)?;
    let mut dims64 = [1u64; 3];
    for (d, b) in dims64.iter_mut().zip(dim_bytes.chunks_exact(4)) {
        *d = u64::from(u32::from_be_bytes(b.try_into().expect("4 bytes")));
    }
    let dims64 = &dims64[..kind.rank as usize];
    let overflow = || Error::DimensionOverflow { file: file.to_string(), dims: dims64.to_vec(), max: MAX_DATA_BYTES };
    let data_len = dims64.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)?;
    if data_len > MAX_DATA_BYTES - kind.header_len() as u64 {
        return Err(overflow());
    }
    let mut dims = [1usize; 3];
    for (d, &d64) in dims.iter_mut().zip(dims64) {
        *d = usize::try_from(d64).map_err(|_| overflow())?;
    }
    Ok(Header { dims, data_len: data_len as usize })
}

/// Parses a whole IDX file held in `bytes`: the header, then exactly
/// `data_len` bytes of data.
fn parse_whole(file: &str, bytes: &[u8], kind: Kind) -> Result<Header> {
    let header = parse_header(file, bytes, kind)?;
    let actual = (bytes.len() - kind.header_len()) as u64;
    let expected = header.data_len as u64;
    if actual < expected {
        return Err(Error::TruncatedData { file: file.to_string(), expected, actual });
    }
    if actual > expected {
        return Err(Error::TrailingData { file: file.to_string(), expected, extra: actual - expected });
    }
    Ok(header)
}

/// Reads from `r` until `buf` is full or the stream ends; returns the bytes read.
fn read_up_to(file: &str, r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(Error::Gzip { file: file.to_string(), source }),
        }
    }
    Ok(filled)
}

/// Decompresses a gzip IDX file of `kind`: header first, checked and bounded
/// by what `gz` can hold, then the data into one buffer of exactly that size.
/// The returned buffer holds the decompressed file, header included.
fn decompress(file: &str, gz: &[u8], kind: Kind) -> Result<(Header, Vec<u8>)> {
    let mut dec = MultiGzDecoder::new(gz);
    let mut head = [0u8; 16];
    let head = &mut head[..kind.header_len()];
    let got = read_up_to(file, &mut dec, &mut head[..4])?;
    if got < 4 {
        return Err(Error::TruncatedHeader { file: file.to_string(), len: got as u64, need: kind.header_len() as u64 });
    }
    check_magic(file, head[..4].try_into().expect("4 bytes"), kind)?;
    let got = 4 + read_up_to(file, &mut dec, &mut head[4..])?;
    let header = parse_header(file, &head[..got], kind)?;
    let total = kind.header_len() as u64 + header.data_len as u64;
    let limit = (gz.len() as u64).saturating_mul(MAX_DEFLATE_RATIO);
    if total > limit {
        return Err(Error::Implausible { file: file.to_string(), claimed: total, compressed: gz.len() as u64, limit });
    }
    // One spare byte so that a stream longer than the header says is detected
    // without a second allocation.
    let mut out = Vec::with_capacity(total as usize + 1);
    out.extend_from_slice(head);
    (&mut dec)
        .take(header.data_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|source| Error::Gzip { file: file.to_string(), source })?;
    let actual = (out.len() - kind.header_len()) as u64;
    let expected = header.data_len as u64;
    if actual < expected {
        return Err(Error::TruncatedData { file: file.to_string(), expected, actual });
    }
    if actual > expected {
        // Count a little of the rest for the message, without keeping it and
        // without decompressing a possibly huge tail.
        let rest = std::io::copy(&mut (&mut dec).take(TRAILING_COUNT_LIMIT), &mut std::io::sink()).unwrap_or(0);
        return Err(Error::TrailingData { file: file.to_string(), expected, extra: actual - expected + rest });
    }
    Ok((header, out))
}

/// Parses `bytes` (raw IDX, or gzip which is decompressed) as `kind`.
fn parse_source(file: &str, bytes: Bytes, kind: Kind) -> Result<(Header, Arc<Bytes>)> {
    if is_gzip(&bytes) {
        let (header, out) = decompress(file, &bytes, kind)?;
        Ok((header, Arc::new(Bytes::Owned(out))))
    } else {
        let header = parse_whole(file, &bytes, kind)?;
        Ok((header, Arc::new(bytes)))
    }
}

/// An IDX file of unsigned-byte images (`count x rows x cols`, magic `0x00000803`).
///
/// Opened from a raw file, the pixels are a slice of the file's memory mapping;
/// from a gzip file, of one decompressed buffer. Cloning is cheap (a reference count).
///
/// ```no_run
/// use convnet_datasets::idx::IdxImages;
/// let images = IdxImages::open("data/mnist/train-images-idx3-ubyte.gz")?;
/// assert_eq!((images.len(), images.rows(), images.cols()), (60_000, 28, 28));
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct IdxImages {
    name: String,
    bytes: Arc<Bytes>,
    count: usize,
    rows: usize,
    cols: usize,
}

impl IdxImages {
    /// Opens an image file, raw or gzip (told apart by content, so any name works).
    ///
    /// A raw file is memory-mapped: the file must not be truncated by another
    /// process while this value (or a dataset made from it) is alive.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_storage(&path.display().to_string(), map_file(path)?)
    }

    /// Parses an image file held in memory (raw IDX or gzip); `name` is used in errors.
    ///
    /// ```
    /// use convnet_datasets::{idx::IdxImages, Error};
    /// // A header promising 2 images of 2x2 but holding 3 bytes of data.
    /// let bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3];
    /// let err = IdxImages::from_bytes("short.idx", bytes).unwrap_err();
    /// assert!(matches!(err, Error::TruncatedData { expected: 8, actual: 3, .. }));
    /// ```
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::from_storage(name, Bytes::Owned(bytes))
    }

    pub(crate) fn from_storage(name: &str, bytes: Bytes) -> Result<Self> {
        let (header, bytes) = parse_source(name, bytes, IMAGES)?;
        let [count, rows, cols] = header.dims;
        Ok(IdxImages { name: name.to_string(), bytes, count, rows, cols })
    }

    /// The file name given when opening (used in error messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the file holds no image.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Rows per image.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns per image.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// True when the pixels are a slice of a memory-mapped file (a raw file was opened).
    pub fn is_mapped(&self) -> bool {
        matches!(*self.bytes, Bytes::Mapped(_))
    }

    /// All pixels, image after image, row-major (`len * rows * cols` bytes).
    pub fn pixels(&self) -> &[u8] {
        &self.bytes[IMAGES.header_len()..]
    }

    /// The pixels of image `i`, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.rows * self.cols;
        (i < self.count).then(|| &self.pixels()[i * n..(i + 1) * n])
    }

    /// The storage and the byte offset of the first pixel.
    pub(crate) fn storage(&self) -> (Arc<Bytes>, usize) {
        (self.bytes.clone(), IMAGES.header_len())
    }
}

/// An IDX file of unsigned-byte labels (`count`, magic `0x00000801`).
///
/// Any byte value is accepted here; [`crate::Dataset`] checks that labels are digits.
///
/// ```
/// use convnet_datasets::idx::{encode_labels, IdxLabels};
/// let labels = IdxLabels::from_bytes("y", encode_labels(&[3, 1, 4])?)?;
/// assert_eq!(labels.len(), 3);
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct IdxLabels {
    name: String,
    bytes: Arc<Bytes>,
    count: usize,
}

impl IdxLabels {
    /// Opens a label file, raw or gzip (told apart by content).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_storage(&path.display().to_string(), map_file(path)?)
    }

    /// Parses a label file held in memory (raw IDX or gzip); `name` is used in errors.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::from_storage(name, Bytes::Owned(bytes))
    }

    pub(crate) fn from_storage(name: &str, bytes: Bytes) -> Result<Self> {
        let (header, bytes) = parse_source(name, bytes, LABELS)?;
        Ok(IdxLabels { name: name.to_string(), bytes, count: header.dims[0] })
    }

    /// The file name given when opening.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the file holds no label.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The labels.
    pub fn labels(&self) -> &[u8] {
        &self.bytes[LABELS.header_len()..]
    }

    /// The storage and the byte offset of the first label.
    pub(crate) fn storage(&self) -> (Arc<Bytes>, usize) {
        (self.bytes.clone(), LABELS.header_len())
    }
}

fn dim_u32(what: &str, d: usize) -> Result<[u8; 4]> {
    u32::try_from(d)
        .map(u32::to_be_bytes)
        .map_err(|_| Error::InvalidArgument(format!("IDX {what} {d} does not fit in 32 bits")))
}

/// Encodes `count` images of `rows x cols` unsigned bytes as an IDX file.
///
/// ```
/// use convnet_datasets::idx::encode_images;
/// let file = encode_images(1, 1, 2, &[10, 20])?;
/// assert_eq!(file, [0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 10, 20]);
/// assert!(encode_images(2, 1, 2, &[10, 20]).is_err()); // too few pixels
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
pub fn encode_images(count: usize, rows: usize, cols: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    let want = count.checked_mul(rows).and_then(|x| x.checked_mul(cols));
    if want != Some(pixels.len()) {
        return Err(Error::InvalidArgument(format!(
            "{count} images of {rows}x{cols} need {want:?} pixels, got {}",
            pixels.len()
        )));
    }
    let mut out = Vec::with_capacity(16 + pixels.len());
    out.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    out.extend_from_slice(&dim_u32("count", count)?);
    out.extend_from_slice(&dim_u32("rows", rows)?);
    out.extend_from_slice(&dim_u32("cols", cols)?);
    out.extend_from_slice(pixels);
    Ok(out)
}

/// Encodes labels as an IDX file.
///
/// ```
/// use convnet_datasets::idx::encode_labels;
/// assert_eq!(encode_labels(&[5])?, [0, 0, 8, 1, 0, 0, 0, 1, 5]);
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
pub fn encode_labels(labels: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&dim_u32("count", labels.len())?);
    out.extend_from_slice(labels);
    Ok(out)
}

//! The on-disk cache of a decoded image folder: a second run maps the pixels
//! instead of decoding every file again.
//!
//! One cache file per folder and decoding setting, named
//! `convnet-images-<16 hex digits>.bin` after a SHA-256 of the folder's
//! absolute path and the setting (size, colour mode, crop). It holds every
//! indexed image of the folder in index order (before any shuffle or split),
//! so one cache serves every seed and subset.
//!
//! Layout (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `b"CNVIMGC1"` (the 1 is the format version) |
//! | 8..40 | the key: SHA-256 of the setting and, for every file in index order, its path, size and modification time |
//! | 40..72 | images, height, width, channels (u64 each) |
//! | 72..80 | checksum of the pixel bytes ([`checksum`]) |
//! | 80.. | the pixels, `images * height * width * channels` bytes, NHWC |
//!
//! Read back strictly: a file whose magic, key, dimensions, exact length or
//! checksum disagree is not used (the loader decodes again and replaces it), so a
//! changed, added or removed image, a truncated or corrupt cache, or a cache
//! of another setting can never yield wrong pixels, and no byte of it can cause
//! a panic. Written atomically: a temporary file created with `create_new` in
//! the same directory, written, synced, then renamed over the old cache.
//!
//! The mapping has the one hazard of every mapped file: if another process
//! truncates the cache while a dataset maps it, reading the lost pages raises
//! SIGBUS. Nothing in convnet rewrites a cache in place (replacement is a
//! rename, which leaves existing mappings intact).

use crate::bytes::{io_error, Bytes};
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

const MAGIC: &[u8; 8] = b"CNVIMGC1";
/// Bytes before the pixels.
pub const HEADER_LEN: usize = 80;

/// The dimensions a cache must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheDims {
    pub images: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl CacheDims {
    pub(crate) fn pixel_bytes(&self) -> Option<usize> {
        self.images.checked_mul(self.height)?.checked_mul(self.width)?.checked_mul(self.channels)
    }
}

/// Why a cache was not used (kept for the caller to report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache was asked for.
    Off,
    /// The cache held this folder's images: nothing was decoded.
    Hit,
    /// There was no cache file: the images were decoded and the cache written.
    Written,
    /// A cache file was there but not valid for this folder (the reason): the
    /// images were decoded again and the cache replaced.
    Rebuilt(String),
}

/// A fast 64-bit checksum of the pixels (not cryptographic: it catches
/// corruption, not tampering; the file list is what the SHA-256 key covers).
pub fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ word).wrapping_mul(K).rotate_left(29);
    }
    for &b in chunks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    h ^ (h >> 32)
}

/// The cache file for a folder and setting, inside `cache_dir`.
pub(crate) fn cache_path(cache_dir: &Path, folder: &Path, setting: &str) -> Result<PathBuf> {
    let abs = fs::canonicalize(folder).map_err(|e| io_error(folder, e))?;
    let mut h = Sha256::new();
    h.update(abs.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(setting.as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(cache_dir.join(format!("convnet-images-{hex}.bin")))
}

/// The key: the setting and every file's path, size and modification time.
pub(crate) fn cache_key(setting: &str, files: &[PathBuf]) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update((setting.len() as u64).to_le_bytes());
    h.update(setting.as_bytes());
    h.update((files.len() as u64).to_le_bytes());
    for path in files {
        let meta = fs::metadata(path).map_err(|e| io_error(path, e))?;
        let bytes = path.as_os_str().as_encoded_bytes();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
        h.update(meta.len().to_le_bytes());
        let (secs, nanos) = match meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => (d.as_secs(), d.subsec_nanos()),
            None => (u64::MAX, u32::MAX),
        };
        h.update(secs.to_le_bytes());
        h.update(nanos.to_le_bytes());
    }
    Ok(h.finalize().into())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Maps and validates a cache; `Ok(Err(reason))` when the file is there but
/// not usable, `Ok(Ok(bytes))` (pixels at [`HEADER_LEN`]) when it is.
pub(crate) fn read(path: &Path, key: &[u8; 32], dims: CacheDims) -> Result<std::result::Result<Bytes, String>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(String::new())),
        Err(e) => return Err(io_error(path, e)),
    };
    if !meta.is_file() {
        return Err(Error::Io {
            file: path.display().to_string(),
            source: std::io::Error::other("the cache path exists and is not a regular file"),
        });
    }
    let Some(pixels) = dims.pixel_bytes() else { return Ok(Err("dimensions overflow".into())) };
    let Some(expected) = pixels.checked_add(HEADER_LEN) else { return Ok(Err("dimensions overflow".into())) };
    if meta.len() != expected as u64 {
        return Ok(Err(format!("{} bytes, expected {expected}", meta.len())));
    }
    let bytes = crate::bytes::map_file(path)?;
    if bytes.len() != expected {
        return Ok(Err(format!("{} bytes, expected {expected}", bytes.len())));
    }
    if &bytes[..8] != MAGIC {
        return Ok(Err("not a convnet image cache (bad magic)".into()));
    }
    if &bytes[8..40] != key {
        return Ok(Err("the folder's files changed since it was written".into()));
    }
    let found = [u64_at(&bytes, 40), u64_at(&bytes, 48), u64_at(&bytes, 56), u64_at(&bytes, 64)];
    let want = [dims.images, dims.height, dims.width, dims.channels].map(|v| v as u64);
    if found != want {
        return Ok(Err(format!("holds {found:?} (images, height, width, channels), expected {want:?}")));
    }
    if checksum(&bytes[HEADER_LEN..]) != u64_at(&bytes, 72) {
        return Ok(Err("checksum mismatch (corrupt pixels)".into()));
    }
    Ok(Ok(bytes))
}

/// Writes a cache atomically (temporary file, sync, rename).
pub(crate) fn write(path: &Path, key: &[u8; 32], dims: CacheDims, pixels: &[u8]) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.is_file() {
            return Err(Error::Io {
                file: path.display().to_string(),
                source: std::io::Error::other("the cache path exists and is not a regular file"),
            });
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(key);
    for v in [dims.images, dims.height, dims.width, dims.channels] {
        header.extend_from_slice(&(v as u64).to_le_bytes());
    }
    header.extend_from_slice(&checksum(pixels).to_le_bytes());
    debug_assert_eq!(header.len(), HEADER_LEN);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (tmp, mut file) = create_temp(dir, &name)?;
    let result = (|| -> std::io::Result<()> {
        file.write_all(&header)?;
        file.write_all(pixels)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(path, e));
    }
    Ok(())
}

/// A fresh temporary file beside the target, unique across processes (pid,
/// time and a counter in the name, and `create_new` so it never reuses one).
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp.{}.{nanos:x}.{n}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&tmp, e)),
        }
    }
    Err(Error::Io { file: dir.display().to_string(), source: std::io::Error::other("cannot create a temporary file") })
}

//! Shared, read-only byte storage: a memory-mapped file or an owned buffer.
//!
//! Parsed files and datasets hold an `Arc<Bytes>` plus offsets, so taking a
//! subset or a validation split clones a pointer, never the pixels.

use crate::{Error, Result};
use memmap2::Mmap;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;

/// The bytes of a file: mapped (raw files) or owned (decompressed files, npz arrays).
pub(crate) enum Bytes {
    /// A read-only mapping of a whole file.
    Mapped(Mmap),
    /// Bytes in memory.
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self, Bytes::Mapped(_)) { "Mapped" } else { "Owned" };
        write!(f, "{kind}({} bytes)", self.len())
    }
}

/// Converts an I/O error on `path` into [`Error::MissingFile`] or [`Error::Io`].
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::MissingFile { path: path.display().to_string(), hint: String::new() }
    } else {
        Error::Io { file: path.display().to_string(), source }
    }
}

/// What a file system entry is, as the noun phrase an error message needs:
/// "a directory", "a FIFO (named pipe)", "a regular file", ... The one
/// wording every crate of the workspace uses when it refuses something that
/// is not a regular file (`convnet`'s atomic writer uses it too).
///
/// ```
/// let ft = std::fs::metadata(std::env::temp_dir()).unwrap().file_type();
/// assert_eq!(convnet_datasets::file_kind(&ft), "a directory");
/// ```
pub fn file_kind(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Maps `path` read-only (an empty file becomes an empty owned buffer, since
/// zero-length mappings are not portable). Anything but a regular file
/// (symbolic links followed) is refused before it is opened: opening a FIFO
/// blocks until a writer comes, and a device has no size.
pub(crate) fn map_file(path: &Path) -> Result<Bytes> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(Error::WrongFileType {
            path: path.display().to_string(),
            found: file_kind(&meta.file_type()),
            expected: "a regular file",
        });
    }
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let opened = file.metadata().map_err(|e| io_error(path, e))?;
    if !opened.is_file() {
        return Err(Error::WrongFileType {
            path: path.display().to_string(),
            found: file_kind(&opened.file_type()),
            expected: "a regular file",
        });
    }
    let len = opened.len();
    if len == 0 {
        return Ok(Bytes::Owned(Vec::new()));
    }
    // SAFETY: the mapping is read-only and only ever read as plain bytes (every
    // bit pattern is a valid u8), so no invariant depends on its contents. The
    // one hazard of any file mapping remains: if another process truncates the
    // file while it is mapped, touching the lost pages raises SIGBUS. Datasets
    // are not rewritten while training reads them; this is the documented
    // contract of `IdxImages::open` and `Mnist::load`.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&file) }.map_err(|e| io_error(path, e))?;
    Ok(Bytes::Mapped(map))
}

//! Reading and writing files safely: bounded reads of regular files only, and
//! atomic saves that never replace anything but a regular file.
//!
//! **Reads** ([`read_regular_file`]) look at the file's metadata first: a
//! FIFO, a device, a socket or a directory is refused before it is opened
//! (opening a FIFO for reading blocks until a writer comes; `/dev/zero` never
//! ends), and a file larger than the caller's limit is refused before one
//! byte is read. The read itself stops one byte past the size the metadata
//! gave, so a file that grows while it is read is an error, not an unbounded
//! read.
//!
//! **Saves** ([`write_atomic`]) write a temporary file beside the target,
//! fsync it, rename it over the target and fsync the directory, so a crash
//! leaves either the old file or the new one. The temporary name is
//! `.<target name>.tmp.<16 random hex digits>`, created with `create_new`
//! (`O_EXCL`): unique across processes and PID namespaces (two containers
//! both running as PID 1 saving to one shared directory do not collide), and
//! never an existing file. A save killed with SIGKILL leaves its temporary
//! file behind; the next save to the same target removes every file matching
//! that pattern whose modification time is older than the current process's
//! start (so a concurrent save's temporary file, which is newer, is left
//! alone). The target itself must be absent or a regular file: a FIFO, a
//! device, a directory or a socket at the path is refused rather than
//! replaced; a symbolic link is followed and the file it points to is
//! replaced (the link stays a link).

use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

fn io_err(path: &Path, kind: std::io::ErrorKind, msg: impl Into<String>) -> Error {
    Error::io(path, std::io::Error::new(kind, msg.into()))
}

/// Reads the whole of `path`, which must be a regular file (symbolic links
/// followed) of at most `max_bytes` bytes. The type and size come from the
/// file's metadata, checked before the file is opened; the read stops one
/// byte past that size.
///
/// ```
/// use convnet::files::read_regular_file;
/// let err = read_regular_file(std::env::temp_dir(), 1 << 20).unwrap_err();
/// assert!(err.to_string().contains("is a directory, not a regular file"), "{err}");
/// ```
pub fn read_regular_file(path: impl AsRef<Path>, max_bytes: u64) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    check_regular(path, &meta.file_type())?;
    let len = meta.len();
    if len > max_bytes {
        return Err(io_err(
            path,
            std::io::ErrorKind::InvalidData,
            format!(
                "the file is {len} bytes, more than the limit of {max_bytes} ({}; see docs/LIMITS.md)",
                crate::limits::ENV_MAX_FILE_BYTES
            ),
        ));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // Between the metadata and the open, the path may have been replaced:
    // check the opened file itself too.
    let opened = file.metadata().map_err(|e| Error::io(path, e))?;
    check_regular(path, &opened.file_type())?;
    let expect = opened.len().min(len);
    let cap = usize::try_from(expect).map_err(|_| io_err(path, std::io::ErrorKind::InvalidData, "file too large"))?;
    let mut bytes = Vec::with_capacity(cap);
    file.take(expect + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 != expect || opened.len() != len {
        return Err(io_err(path, std::io::ErrorKind::InvalidData, "the file changed size while it was read"));
    }
    Ok(bytes)
}

/// `Err` unless `ft` is a regular file, naming what it is instead.
pub(crate) fn check_regular(path: &Path, ft: &std::fs::FileType) -> Result<()> {
    if ft.is_file() {
        Ok(())
    } else {
        Err(io_err(
            path,
            std::io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", convnet_datasets::file_kind(ft)),
        ))
    }
}

/// Where a save to `path` really goes: `path` itself, or the file a symbolic
/// link at `path` points to. `Err` when something other than a regular file
/// (or a link to one) is there, or the link dangles.
pub(crate) fn resolve_save_target(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() || path.file_name().is_none() {
        return Err(io_err(path, std::io::ErrorKind::InvalidInput, "not a file path"));
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(e) => Err(Error::io(path, e)),
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::canonicalize(path).map_err(|e| {
                io_err(path, e.kind(), format!("is a symbolic link that cannot be followed ({e}); not replaced"))
            })?;
            let tm = std::fs::metadata(&target).map_err(|e| Error::io(&target, e))?;
            if !tm.file_type().is_file() {
                return Err(io_err(
                    path,
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "is a symbolic link to {}, which is {}; refusing to replace it",
                        target.display(),
                        convnet_datasets::file_kind(&tm.file_type())
                    ),
                ));
            }
            Ok(target)
        }
        Ok(m) if m.file_type().is_file() => Ok(path.to_path_buf()),
        Ok(m) => Err(io_err(
            path,
            std::io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file; refusing to replace it", convnet_datasets::file_kind(&m.file_type())),
        )),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// 64 random bits: the OS-seeded keys of std's `RandomState` (fresh per
/// call), mixed with the time, the process id and a counter.
fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// The prefix of every temporary file of a save to a file named `name`.
fn temp_prefix(name: &std::ffi::OsStr) -> String {
    format!(".{}.tmp.", name.to_string_lossy())
}

/// Whether `file_name` is `<prefix>` followed by exactly 16 lowercase hex
/// digits (this version's names), or by a decimal process id of 1 to 10
/// digits (the names earlier versions used, `.<name>.tmp.<pid>`).
fn is_temp_name(file_name: &str, prefix: &str) -> bool {
    file_name.strip_prefix(prefix).is_some_and(|rest| {
        let hex = rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let pid = (1..=10).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_digit());
        hex || pid
    })
}

/// When this process started (Linux: from `/proc/self/stat` and the boot
/// time in `/proc/stat`, both in whole clock ticks of 1/100 s, rounded down);
/// `None` where that cannot be read, and then no stale file is ever removed.
fn process_start() -> Option<SystemTime> {
    static START: std::sync::OnceLock<Option<SystemTime>> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        // rest starts with field 3 (state); starttime is field 22.
        let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
        let btime: u64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        // USER_HZ is 100 on every Linux architecture's user ABI.
        let secs = btime.checked_add(ticks / 100)?;
        let nanos = (ticks % 100) * 10_000_000;
        SystemTime::UNIX_EPOCH
            .checked_add(std::time::Duration::from_secs(secs) + std::time::Duration::from_nanos(nanos))
    })
}

/// Removes temporary files of earlier, killed saves to `target`: names
/// matching `.<name>.tmp.<16 hex>` (or earlier versions' `.<name>.tmp.<pid>`) in its directory, regular files, last
/// modified before this process started. Returns how many were removed.
/// Errors are ignored (a file another process removes first is fine).
pub(crate) fn remove_stale_temps(target: &Path) -> usize {
    let (Some(start), Some(name)) = (process_start(), target.file_name()) else { return 0 };
    let prefix = temp_prefix(name);
    let Ok(entries) = std::fs::read_dir(parent_dir(target)) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let fname = e.file_name();
        let Some(fname) = fname.to_str() else { continue };
        if !is_temp_name(fname, &prefix) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else { continue };
        let old = meta.modified().is_ok_and(|m| m < start);
        if meta.file_type().is_file() && old && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Creates a new, empty temporary file beside `target` (never an existing
/// file: `create_new`), returning it and its path.
fn create_temp(target: &Path) -> std::io::Result<(File, PathBuf)> {
    let dir = parent_dir(target);
    let prefix = temp_prefix(target.file_name().unwrap_or_default());
    let mut last = None;
    for _ in 0..16 {
        let tmp = dir.join(format!("{prefix}{:016x}", random_u64()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

/// Checks, before any long work, that a later [`write_atomic`] to `path` can
/// succeed as far as it can be known now: the target is absent or a regular
/// file (or a link to one), and its directory exists and accepts a new file
/// (a temporary file is created and removed).
///
/// ```
/// let err = convnet::files::check_writable("/no/such/dir/model.safetensors").unwrap_err();
/// assert!(err.to_string().contains("/no/such/dir"), "{err}");
/// ```
pub fn check_writable(path: impl AsRef<Path>) -> Result<()> {
    let target = resolve_save_target(path.as_ref())?;
    let dir = parent_dir(&target);
    let (file, tmp) = create_temp(&target).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => io_err(&dir, e.kind(), "no such directory"),
        _ => Error::io(&dir, e),
    })?;
    drop(file);
    std::fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically: a new temporary file beside it
/// (random name, `create_new`), write, fsync, rename over the target, fsync
/// the directory. The target must be absent or a regular file (a symbolic
/// link to one is followed); anything else is refused and left alone. Stale
/// temporary files of killed saves to the same target are removed first.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let target = resolve_save_target(path)?;
    remove_stale_temps(&target);
    let dir = parent_dir(&target);
    let (mut f, tmp) = create_temp(&target).map_err(|e| Error::io(path, e))?;
    let result = (|| -> std::io::Result<()> {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        // Re-check just before the rename: something other than a regular
        // file may have appeared at the target meanwhile.
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            if !m.file_type().is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "is {}, not a regular file; refusing to replace it",
                        convnet_datasets::file_kind(&m.file_type())
                    ),
                ));
            }
        }
        std::fs::rename(&tmp, &target)?;
        // Persist the rename itself; directories cannot be opened for sync on every platform.
        #[cfg(unix)]
        File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_match_only_the_pattern() {
        let p = temp_prefix(std::ffi::OsStr::new("m.st"));
        assert_eq!(p, ".m.st.tmp.");
        assert!(is_temp_name(".m.st.tmp.0123456789abcdef", &p));
        assert!(!is_temp_name(".m.st.tmp.0123456789abcde", &p));
        assert!(!is_temp_name(".m.st.tmp.0123456789ABCDEF", &p));
        assert!(is_temp_name(".m.st.tmp.12345", &p)); // earlier versions' pid names
        assert!(!is_temp_name(".m.st.tmp.12345x", &p));
        assert!(!is_temp_name(".m.st.tmp.", &p));
        assert!(!is_temp_name("m.st", &p));
        assert_ne!(random_u64(), random_u64());
    }

    #[test]
    fn the_process_start_is_in_the_past() {
        if let Some(t) = process_start() {
            assert!(t <= SystemTime::now());
            assert!(SystemTime::now().duration_since(t).unwrap().as_secs() < 24 * 3600);
        }
    }
}

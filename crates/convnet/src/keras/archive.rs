//! The `.keras` archive: a zip holding `config.json` (the architecture),
//! `model.weights.h5` (the weights, Keras 3 layout) and `metadata.json`.
//! Keras stores the members uncompressed; deflated members are read too.
//!
//! Every member's size is checked before it is read: against a fixed cap
//! (config) or [`Limits::max_file_bytes`](super::Limits), and against what the
//! archive's own bytes can hold (a stored member exactly its bytes, a deflated
//! one at most deflate's 1032:1 ratio), and reads are bounded by `take`, so a
//! member that lies about its size costs nothing.

use super::Limits;
use std::io::Read;

/// The largest `config.json` read (a VGG16 config is 30 KB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Deflate expands at most 1032:1; a member claiming more is a lie.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The two members convnet needs from a `.keras` archive.
pub(crate) struct Archive {
    /// `config.json`, as text.
    pub config: String,
    /// `model.weights.h5`, whole.
    pub weights: Vec<u8>,
}

/// Opens a `.keras` archive held in memory.
pub(crate) fn read(bytes: &[u8], limits: &Limits) -> Result<Archive, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable .keras archive (zip): {e}"))?;
    let config = member(&mut zip, "config.json", MAX_CONFIG_BYTES)?;
    let config = String::from_utf8(config).map_err(|_| "config.json is not UTF-8 text".to_string())?;
    let weights = member(&mut zip, "model.weights.h5", limits.max_file_bytes)?;
    Ok(Archive { config, weights })
}

fn member(zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str, cap: u64) -> Result<Vec<u8>, String> {
    let mut f = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(format!("the archive has no {name} (is it a .keras file written by Keras 3?)"))
        }
        Err(e) => return Err(format!("{name}: {e}")),
    };
    let size = f.size();
    let packed = f.compressed_size();
    let holds = match f.compression() {
        zip::CompressionMethod::Stored => packed,
        zip::CompressionMethod::Deflated => packed.saturating_mul(MAX_DEFLATE_RATIO),
        other => return Err(format!("{name} is compressed with {other}, which convnet does not read")),
    };
    if size > cap {
        return Err(format!("{name} is {size} bytes, more than the limit of {cap}"));
    }
    if size > holds {
        return Err(format!("{name} claims {size} bytes but its {packed} stored bytes cannot hold them"));
    }
    // `size <= cap` and `size <= holds`: the allocation is bounded by the input.
    let mut out = Vec::with_capacity(size as usize);
    (&mut f).take(size + 1).read_to_end(&mut out).map_err(|e| format!("{name} is truncated or corrupt: {e}"))?;
    if out.len() as u64 != size {
        return Err(format!("{name} holds {} bytes, its header says {size}", out.len()));
    }
    Ok(out)
}

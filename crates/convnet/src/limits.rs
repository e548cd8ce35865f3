//! Resource limits: the largest model, file, image and benchmark shape
//! convnet accepts by default, each a named constant with its reason.
//!
//! Every size an input implies is computed with checked arithmetic and
//! compared with these limits **before** the allocation or the file read it
//! would cause: a model's layer count, parameter count and activation memory
//! before anything is built ([`Sequential::build_with`](crate::Sequential::build_with)),
//! a file's size from its metadata before it is read, an image's dimensions
//! (and the resize buffer they imply) before it is decoded. The policy, with
//! the reasoning behind each number, is `docs/LIMITS.md`.
//!
//! A library user raises a limit with [`Limits`]' fields or builder methods;
//! the `convnet` command line reads [`Limits::from_env`] (an environment
//! variable per limit, e.g. `CONVNET_MAX_PARAMS=1000000000`).
//!
//! ```
//! use convnet::{limits::Limits, mnist_convnet};
//! // A tight budget: the chapter's model (93,322 parameters) no longer fits.
//! let tight = Limits::default().max_params(50_000);
//! let err = mnist_convnet().build_with(&tight).unwrap_err();
//! // conv2d_2's 36,928 parameters bring the model to 55,744.
//! assert!(err.to_string().contains("layer conv2d_2: 36928 parameters bring the model to 55744"), "{err}");
//! ```

use crate::{Error, Result};

/// Most layers in one model: 1,048,576. Building is linear in the layer
/// count (about a microsecond per layer), so this only stops a model file
/// from asking for millions of layers' bookkeeping (~200 bytes each).
pub const MAX_LAYERS: usize = 1 << 20;

/// Most parameters in one model: 2^28 = 268,435,456, i.e. 1 GiB of f32
/// values (plus as much again for their gradients). VGG16, the largest
/// model the book uses, has 138,357,544.
pub const MAX_PARAMS: usize = 1 << 28;

/// Most activation values per example, summed over the input and every
/// layer's output: 2^26 = 67,108,864 (256 MiB of f32 per example). Training
/// keeps every layer's output (and its gradient) for the whole batch, so this
/// bounds the memory of one example of a training or inference batch. VGG16
/// on 224x224x3 images needs 15.2 million; the chapter's model 19,184.
pub const MAX_ACTIVATIONS: usize = 1 << 26;

/// Largest weights or model file read: 2^32 bytes (4 GiB) = the data of
/// [`MAX_PARAMS`] f32 parameters four times over; safetensors headers are
/// capped at 100 MB by the format itself.
pub const MAX_FILE_BYTES: u64 = 1 << 32;

/// Largest image `predict` decodes, in pixels: 2^26 = 67,108,864 (8192 x
/// 8192; a 64-megapixel photo fits). Decoded as 8-bit grey that is 64 MiB.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;

/// Largest allocation the image decoder may make: 512 MiB (the
/// [`MAX_IMAGE_PIXELS`] image at 8 bytes per pixel, 16-bit RGBA).
pub const MAX_IMAGE_DECODE_BYTES: u64 = 512 << 20;

/// Largest intermediate buffer of the resize to the model's input size:
/// 64 MiB. The resize filters columns first into a `width x 28` buffer of
/// four f32 channels (16 bytes a pixel), so a 10,000,000 x 1 image, tiny
/// when decoded (10 MB), would need 4.5 GB there; this admits widths up to
/// about 150,000 pixels.
pub const MAX_RESIZE_BYTES: u64 = 64 << 20;

/// Largest total of the buffers `convnet bench conv` allocates (input,
/// filter, output and, with `--backward`, their gradients), and of the
/// estimate `convnet bench step` checks (the input batch plus its activations
/// three times for a training step, twice with `--inference`): 2 GiB. VGG16's
/// largest layer at batch 8 (8x224x224x64->64) needs 206 MB with `--backward`;
/// the book's VGG16 fine-tuning step at batch 20 and 150x150x3 (issue 11's
/// benchmark) is estimated at 1.6 GB, so it runs without raising the limit
/// (its measured peak RSS is below 0.9 GB).
pub const MAX_BENCH_BYTES: u64 = 2 << 30;

/// Activation memory of one `evaluate` / `predict` batch in the `convnet`
/// command line: 256 MiB. The batch size (64) is lowered, never below 1, so
/// that the batch's activations fit ([`Model::inference_batch`](crate::Model::inference_batch));
/// results do not depend on the batch size. The chapter's model needs
/// 150 KiB per example, so it keeps batches of 64.
pub const INFERENCE_BATCH_BYTES: u64 = 256 << 20;

/// `--threads` is capped at this many threads per core: the kernels split
/// work into fixed chunks and never block, so threads beyond the cores only
/// add context switches (1024 threads on 2 cores ran a training step 260x
/// slower than 2). Twice the cores leaves room for SMT siblings that
/// `available_parallelism` may not count.
pub const MAX_THREADS_PER_CORE: usize = 2;

/// Environment variable overriding [`MAX_LAYERS`].
pub const ENV_MAX_LAYERS: &str = "CONVNET_MAX_LAYERS";
/// Environment variable overriding [`MAX_PARAMS`].
pub const ENV_MAX_PARAMS: &str = "CONVNET_MAX_PARAMS";
/// Environment variable overriding [`MAX_ACTIVATIONS`].
pub const ENV_MAX_ACTIVATIONS: &str = "CONVNET_MAX_ACTIVATIONS";
/// Environment variable overriding [`MAX_FILE_BYTES`].
pub const ENV_MAX_FILE_BYTES: &str = "CONVNET_MAX_FILE_BYTES";
/// Environment variable overriding [`MAX_IMAGE_PIXELS`].
pub const ENV_MAX_IMAGE_PIXELS: &str = "CONVNET_MAX_IMAGE_PIXELS";
/// Environment variable overriding [`MAX_RESIZE_BYTES`].
pub const ENV_MAX_RESIZE_BYTES: &str = "CONVNET_MAX_RESIZE_BYTES";
/// Environment variable overriding [`MAX_BENCH_BYTES`].
pub const ENV_MAX_BENCH_BYTES: &str = "CONVNET_MAX_BENCH_BYTES";

/// The limits in force; [`Limits::default`] holds the constants of this
/// module. Raise one with its builder method or by setting the field.
///
/// ```
/// use convnet::limits::{Limits, MAX_PARAMS};
/// let big = Limits::default().max_params(2 * MAX_PARAMS);
/// assert_eq!(big.max_params, 2 * MAX_PARAMS);
/// assert_eq!(Limits { max_layers: 10, ..Limits::default() }.max_layers, 10);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// See [`MAX_LAYERS`].
    pub max_layers: usize,
    /// See [`MAX_PARAMS`].
    pub max_params: usize,
    /// See [`MAX_ACTIVATIONS`].
    pub max_activations: usize,
    /// See [`MAX_FILE_BYTES`].
    pub max_file_bytes: u64,
    /// See [`MAX_IMAGE_PIXELS`].
    pub max_image_pixels: u64,
    /// See [`MAX_IMAGE_DECODE_BYTES`] (no environment variable: it follows
    /// from the pixel limit).
    pub max_image_decode_bytes: u64,
    /// See [`MAX_RESIZE_BYTES`].
    pub max_resize_bytes: u64,
    /// See [`MAX_BENCH_BYTES`].
    pub max_bench_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layers: MAX_LAYERS,
            max_params: MAX_PARAMS,
            max_activations: MAX_ACTIVATIONS,
            max_file_bytes: MAX_FILE_BYTES,
            max_image_pixels: MAX_IMAGE_PIXELS,
            max_image_decode_bytes: MAX_IMAGE_DECODE_BYTES,
            max_resize_bytes: MAX_RESIZE_BYTES,
            max_bench_bytes: MAX_BENCH_BYTES,
        }
    }
}

fn parse_env(name: &str) -> Result<Option<u64>> {
    let Some(raw) = std::env::var_os(name) else { return Ok(None) };
    let text = raw.to_string_lossy();
    let t = text.trim().replace('_', "");
    // Plain integers, or powers of two written as 2^N / 1<<N.
    let v = if let Some(e) = t.strip_prefix("2^").or_else(|| t.strip_prefix("1<<")) {
        e.parse::<u32>().ok().and_then(|e| 1u64.checked_shl(e))
    } else {
        t.parse::<u64>().ok()
    };
    match v {
        Some(v) if v > 0 => Ok(Some(v)),
        _ => Err(Error::invalid(
            format!("environment variable {name}"),
            format!("{text:?} is not a positive integer (e.g. 1000000000 or 2^30)"),
        )),
    }
}

fn to_usize(name: &str, v: u64) -> Result<usize> {
    usize::try_from(v)
        .map_err(|_| Error::invalid(format!("environment variable {name}"), format!("{v} does not fit this machine")))
}

impl Limits {
    /// The defaults, overridden by any of the `CONVNET_MAX_*` environment
    /// variables that is set (a positive integer, or `2^N`). A malformed
    /// value is an [`Error::Invalid`] naming the variable.
    pub fn from_env() -> Result<Limits> {
        let mut l = Limits::default();
        if let Some(v) = parse_env(ENV_MAX_LAYERS)? {
            l.max_layers = to_usize(ENV_MAX_LAYERS, v)?;
        }
        if let Some(v) = parse_env(ENV_MAX_PARAMS)? {
            l.max_params = to_usize(ENV_MAX_PARAMS, v)?;
        }
        if let Some(v) = parse_env(ENV_MAX_ACTIVATIONS)? {
            l.max_activations = to_usize(ENV_MAX_ACTIVATIONS, v)?;
        }
        if let Some(v) = parse_env(ENV_MAX_FILE_BYTES)? {
            l.max_file_bytes = v;
        }
        if let Some(v) = parse_env(ENV_MAX_IMAGE_PIXELS)? {
            l.max_image_pixels = v;
            // The decoder's budget follows the pixel budget (8 bytes a pixel).
            l.max_image_decode_bytes = l.max_image_decode_bytes.max(v.saturating_mul(8));
        }
        if let Some(v) = parse_env(ENV_MAX_RESIZE_BYTES)? {
            l.max_resize_bytes = v;
        }
        if let Some(v) = parse_env(ENV_MAX_BENCH_BYTES)? {
            l.max_bench_bytes = v;
        }
        Ok(l)
    }

    /// Sets [`Limits::max_layers`].
    pub fn max_layers(mut self, n: usize) -> Self {
        self.max_layers = n;
        self
    }
    /// Sets [`Limits::max_params`].
    pub fn max_params(mut self, n: usize) -> Self {
        self.max_params = n;
        self
    }
    /// Sets [`Limits::max_activations`].
    pub fn max_activations(mut self, n: usize) -> Self {
        self.max_activations = n;
        self
    }
    /// Sets [`Limits::max_file_bytes`].
    pub fn max_file_bytes(mut self, n: u64) -> Self {
        self.max_file_bytes = n;
        self
    }
    /// Sets [`Limits::max_image_pixels`].
    pub fn max_image_pixels(mut self, n: u64) -> Self {
        self.max_image_pixels = n;
        self
    }
    /// Sets [`Limits::max_resize_bytes`].
    pub fn max_resize_bytes(mut self, n: u64) -> Self {
        self.max_resize_bytes = n;
        self
    }
    /// Sets [`Limits::max_bench_bytes`].
    pub fn max_bench_bytes(mut self, n: u64) -> Self {
        self.max_bench_bytes = n;
        self
    }
}

/// The thread count to use for a request of `requested` threads on a
/// machine with `cores` cores: at most [`MAX_THREADS_PER_CORE`] per core.
/// Returns the count and whether it was capped.
///
/// ```
/// assert_eq!(convnet::limits::cap_threads(1024, 2), (4, true));
/// assert_eq!(convnet::limits::cap_threads(3, 2), (3, false));
/// ```
pub fn cap_threads(requested: usize, cores: usize) -> (usize, bool) {
    let cap = cores.max(1).saturating_mul(MAX_THREADS_PER_CORE);
    if requested > cap {
        (cap, true)
    } else {
        (requested.max(1), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_parse_or_name_the_variable() {
        // Uses a variable no other test sets, so tests running in parallel do not interfere.
        let name = "CONVNET_TEST_LIMIT_PARSE";
        for (raw, want) in [("12", Some(12)), ("1_000", Some(1000)), ("2^30", Some(1 << 30)), (" 1<<4 ", Some(16))] {
            std::env::set_var(name, raw);
            assert_eq!(parse_env(name).unwrap(), want, "{raw}");
        }
        for raw in ["0", "-1", "ten", "2^99", ""] {
            std::env::set_var(name, raw);
            let err = parse_env(name).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("positive integer"), "{err}");
        }
        std::env::remove_var(name);
        assert_eq!(parse_env(name).unwrap(), None);
    }
}

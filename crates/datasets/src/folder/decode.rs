//! Bounded image decoding and Keras's colour conversions.
//!
//! A file is checked before it costs memory: it must be a regular file (after
//! following links) of at most `max_file_bytes`, and the decoder's header must
//! promise an image whose decoded pixels fit `max_image_bytes`; the `image`
//! crate's [`image::Limits`] then hold the decoder itself to that budget. A
//! PNG of a few kilobytes that claims 50,000 x 50,000 pixels is refused from its
//! header, before any pixel buffer exists.
//!
//! The format comes from the file's content (as TensorFlow's `decode_image`
//! sniffs it), not its extension. GIFs give their first frame (Keras's
//! `expand_animations=False`). 16-bit samples are scaled to 8 bits with
//! rounding (libpng's `png_set_scale_16`, as TensorFlow decodes them).
//!
//! Channels are converted as TensorFlow's decoders do for Keras's `color_mode`:
//! grey to RGB repeats the grey value; a missing alpha is 255; an alpha channel
//! is dropped for `rgb` and `grayscale`, never composited; RGB to grey is
//! libpng's `png_set_rgb_to_gray(.., 0.299, 0.587)` as TensorFlow's PNG decoder
//! calls it: fixed-point weights 9797, 19234 and 3737 (of 32768), the sum
//! truncated, and a grey pixel (r = g = b) kept exactly. Matched on 4,096
//! random colours against `tf.image.decode_image(png, channels=1)` (TF 2.21).
//! TensorFlow reads a JPEG's luma directly and refuses grey BMP and GIF
//! decodes and RGBA JPEGs; here every format goes through the same conversion.

use crate::{Error, Result};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

/// Keras's `color_mode`: the channels every image is converted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum ColorMode {
    /// One channel.
    Grayscale,
    /// Three channels (Keras's default).
    #[default]
    Rgb,
    /// Four channels.
    Rgba,
}

impl ColorMode {
    /// Channels per pixel: 1, 3 or 4.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Grayscale => 1,
            ColorMode::Rgb => 3,
            ColorMode::Rgba => 4,
        }
    }

    /// The Keras name (`"grayscale"`, `"rgb"`, `"rgba"`).
    pub fn name(self) -> &'static str {
        match self {
            ColorMode::Grayscale => "grayscale",
            ColorMode::Rgb => "rgb",
            ColorMode::Rgba => "rgba",
        }
    }
}

impl std::str::FromStr for ColorMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "grayscale" => Ok(ColorMode::Grayscale),
            "rgb" => Ok(ColorMode::Rgb),
            "rgba" => Ok(ColorMode::Rgba),
            _ => Err(Error::InvalidArgument(format!("color mode {s:?} is not one of grayscale, rgb, rgba"))),
        }
    }
}

/// A decoded image: `height x width x channels` bytes, row-major, interleaved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pixels {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels per pixel (1, 3 or 4).
    pub channels: usize,
    /// The samples.
    pub data: Vec<u8>,
}

/// Byte budgets of one decode.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest file read.
    pub max_file_bytes: u64,
    /// Largest decoded image, in the decoder's own pixel format.
    pub max_image_bytes: u64,
}

fn image_error(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Image { file: path.display().to_string(), problem: problem.to_string() }
}

/// Reads a regular file of at most `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| crate::bytes::io_error(path, e))?;
    if !meta.is_file() {
        return Err(image_error(path, "not a regular file"));
    }
    if meta.len() > max {
        return Err(image_error(
            path,
            format!("{} bytes, more than the {max} bytes an image file may have", meta.len()),
        ));
    }
    let file = File::open(path).map_err(|e| crate::bytes::io_error(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // take(max + 1): a file that grew since its metadata was read is still bounded.
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| crate::bytes::io_error(path, e))?;
    if bytes.len() as u64 > max {
        return Err(image_error(path, format!("more than the {max} bytes an image file may have")));
    }
    Ok(bytes)
}

/// Decodes `bytes` (the content of `path`) and converts them to `mode`.
pub fn decode(path: &Path, bytes: &[u8], mode: ColorMode, limits: DecodeLimits) -> Result<Pixels> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| image_error(path, e))?;
    if reader.format().is_none() {
        return Err(image_error(path, "not a JPEG, PNG, BMP or GIF image (unrecognised content)"));
    }
    let mut image_limits = Limits::default();
    image_limits.max_alloc = Some(limits.max_image_bytes);
    let mut reader = reader;
    reader.limits(image_limits);
    let decoder = reader.into_decoder().map_err(|e| describe(path, e))?;
    let (w, h) = decoder.dimensions();
    let total = decoder.total_bytes();
    if total > limits.max_image_bytes {
        return Err(Error::ImageTooLarge {
            file: path.display().to_string(),
            width: u64::from(w),
            height: u64::from(h),
            bytes: total,
            limit: limits.max_image_bytes,
        });
    }
    if w == 0 || h == 0 {
        return Err(image_error(path, format!("the image is {w}x{h} pixels")));
    }
    let image = DynamicImage::from_decoder(decoder).map_err(|e| describe(path, e))?;
    Ok(convert(image, mode))
}

fn describe(path: &Path, e: image::ImageError) -> Error {
    match e {
        image::ImageError::Limits(l) => image_error(path, format!("decoding would exceed the memory limit ({l})")),
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            image_error(path, "truncated image (the data ends early)")
        }
        other => image_error(path, format!("cannot decode: {other}")),
    }
}

/// libpng's RGB to grey as TensorFlow's PNG decoder uses it (see the module doc).
#[inline]
pub fn rgb_to_gray(r: u8, g: u8, b: u8) -> u8 {
    if r == g && g == b {
        return r;
    }
    ((9797 * u32::from(r) + 19234 * u32::from(g) + 3737 * u32::from(b)) >> 15) as u8
}

/// 16-bit to 8-bit with rounding (libpng's `png_set_scale_16`).
#[inline]
fn scale16(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32767) / 65535) as u8
}

/// Converts any decoded image to 8-bit `mode` pixels.
fn convert(image: DynamicImage, mode: ColorMode) -> Pixels {
    let (width, height) = (image.width() as usize, image.height() as usize);
    // Bring every source to 8-bit L, LA, RGB or RGBA without colour changes.
    let (src_channels, src): (usize, Vec<u8>) = match image {
        DynamicImage::ImageLuma8(b) => (1, b.into_raw()),
        DynamicImage::ImageLumaA8(b) => (2, b.into_raw()),
        DynamicImage::ImageRgb8(b) => (3, b.into_raw()),
        DynamicImage::ImageRgba8(b) => (4, b.into_raw()),
        DynamicImage::ImageLuma16(b) => (1, b.into_raw().into_iter().map(scale16).collect()),
        DynamicImage::ImageLumaA16(b) => (2, b.into_raw().into_iter().map(scale16).collect()),
        DynamicImage::ImageRgb16(b) => (3, b.into_raw().into_iter().map(scale16).collect()),
        DynamicImage::ImageRgba16(b) => (4, b.into_raw().into_iter().map(scale16).collect()),
        other => (4, other.to_rgba8().into_raw()),
    };
    let channels = mode.channels();
    let data = if src_channels == channels {
        src
    } else {
        let mut out = Vec::with_capacity(width * height * channels);
        for px in src.chunks_exact(src_channels) {
            let (r, g, b, a) = match src_channels {
                1 => (px[0], px[0], px[0], 255),
                2 => (px[0], px[0], px[0], px[1]),
                3 => (px[0], px[1], px[2], 255),
                _ => (px[0], px[1], px[2], px[3]),
            };
            match mode {
                ColorMode::Grayscale => out.push(if src_channels <= 2 { r } else { rgb_to_gray(r, g, b) }),
                ColorMode::Rgb => out.extend_from_slice(&[r, g, b]),
                ColorMode::Rgba => out.extend_from_slice(&[r, g, b, a]),
            }
        }
        out
    };
    Pixels { height, width, channels, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_weights_are_libpngs() {
        assert_eq!(rgb_to_gray(255, 0, 0), 76);
        assert_eq!(rgb_to_gray(0, 255, 0), 149);
        assert_eq!(rgb_to_gray(0, 0, 255), 29);
        assert_eq!(rgb_to_gray(10, 200, 77), 129);
        assert_eq!(rgb_to_gray(255, 255, 255), 255);
        assert_eq!(scale16(30000), 117);
        assert_eq!(scale16(65535), 255);
    }
}

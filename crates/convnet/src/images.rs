//! Images as a model's input: what `convnet predict` reads, with every size
//! checked before it costs memory.
//!
//! [`decode_grey`] takes the bytes of a PNG, JPEG, BMP, GIF (its first frame)
//! or PNM (PBM/PGM/PPM/PAM) file and returns `h * w` grey levels in `[0, 1]`:
//!
//! 1. **Dimensions first.** The header alone gives the width and height; the
//!    pixel count must be within [`Limits::max_image_pixels`], and the
//!    buffer the resize to `h x w` will allocate (a `width x h` float image
//!    of four channels, 16 bytes a pixel, filtered columns first) within
//!    [`Limits::max_resize_bytes`]. A 10 KB PNG of 10,000,000 x 1 pixels
//!    decodes to 10 MB but would need 4.5 GB there: it is refused here. The
//!    decoder itself runs under [`Limits::max_image_decode_bytes`].
//! 2. **Strict formats.** A PNG whose pixels index past its palette is an
//!    error (the PNG specification calls it one; decoders quietly paint such
//!    pixels black). A PNM file with data after its image (a second image
//!    of a multi-image stream, or garbage) is an error: only the first image
//!    would be classified, silently. Trailing whitespace is accepted.
//! 3. **Transparency is composited, with a note.** A pixel's alpha is not
//!    simply dropped (a digit drawn on a transparent canvas would vanish
//!    into its background colour, often black): the image is composited
//!    over the background the model expects, black (white with `invert`,
//!    which turns it black), and [`Decoded::notes`] says so. A fully opaque
//!    alpha channel is dropped without a note: nothing is lost.
//! 4. Grey conversion (the `image` crate's luma weights), resize with the
//!    triangle filter when the size differs, scale by 1/255, optional
//!    inversion (MNIST digits are white on black).
//!
//! [`decode_for_model`] (what `convnet predict` uses) makes the same checks
//! (1-3) and then prepares the image as the image-folder loader prepares a
//! training image: its colour conversion and TensorFlow's bilinear resize,
//! to any channel count, with MNIST's digit centring ([`center_digit`]) on
//! request.

use crate::files::read_regular_file;
use crate::limits::{Limits, ENV_MAX_IMAGE_PIXELS, ENV_MAX_RESIZE_BYTES};
use crate::{Error, Result};
use image::{DynamicImage, ImageFormat};
use std::io::Cursor;
use std::path::Path;

/// Options of [`decode_grey`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Invert the grey levels (for dark digits on a light background).
    pub invert: bool,
    /// Size limits (pixels, decoder memory, resize buffer; the file size for [`load_grey`]).
    pub limits: Limits,
}

/// A decoded, resized grey image.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// `h * w` grey levels in `[0, 1]`, row-major.
    pub pixels: Vec<f32>,
    /// Things the user should know (transparency composited), one sentence each.
    pub notes: Vec<String>,
}

fn bad(name: &str, reason: impl Into<String>) -> Error {
    Error::Image { name: name.to_string(), reason: reason.into() }
}

/// Bytes of the resize's intermediate buffer for a `width x height` image
/// resized to `out_h x out_w` (`None` on overflow); 0 when no resize happens.
pub fn resize_buffer_bytes(width: u32, height: u32, out_h: u32, out_w: u32) -> Option<u64> {
    if (width, height) == (out_w, out_h) {
        return Some(0);
    }
    // image::imageops::resize: vertical pass into a width x out_h Rgba32F
    // buffer (16 bytes a pixel), then the out_w x out_h output.
    let tmp = u64::from(width).checked_mul(u64::from(out_h))?.checked_mul(16)?;
    tmp.checked_add(u64::from(out_w) * u64::from(out_h) * 16)
}

/// Reads `path` (a regular file within `opts.limits.max_file_bytes`) and
/// decodes it with [`decode_grey`]; errors name the file.
pub fn load_grey(path: impl AsRef<Path>, out_h: u32, out_w: u32, opts: &ImageOptions) -> Result<Decoded> {
    let path = path.as_ref();
    let bytes = read_regular_file(path, opts.limits.max_file_bytes)?;
    decode_grey(&path.display().to_string(), &bytes, out_h, out_w, opts)
}

/// Steps 1 and 2 of the module doc: the header's size checks, the strict
/// format checks, then the decode under the decoder's memory limit. Returns
/// the image and its pixel count.
fn decode_checked(name: &str, bytes: &[u8], out_h: u32, out_w: u32, limits: &Limits) -> Result<(DynamicImage, u64)> {
    if out_h == 0 || out_w == 0 {
        return Err(Error::invalid("image size", format!("{out_h}x{out_w} has no pixels")));
    }
    let format = image::guess_format(bytes)
        .map_err(|_| bad(name, "not a PNG, JPEG, BMP, GIF or PNM (PBM/PGM/PPM/PAM) image"))?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Pnm | ImageFormat::Jpeg | ImageFormat::Bmp | ImageFormat::Gif)
    {
        return Err(bad(name, format!("{format:?} images are not supported (PNG, JPEG, BMP, GIF or PNM)")));
    }
    let reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) =
        reader.into_dimensions().map_err(|e| bad(name, format!("cannot read the image header: {e}")))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_image_pixels {
        return Err(bad(
            name,
            format!(
                "{width}x{height} is {pixels} pixels, more than the limit of {} ({ENV_MAX_IMAGE_PIXELS}; docs/LIMITS.md)",
                limits.max_image_pixels
            ),
        ));
    }
    let resize = resize_buffer_bytes(width, height, out_h, out_w).unwrap_or(u64::MAX);
    if resize > limits.max_resize_bytes {
        return Err(bad(
            name,
            format!(
                "resizing {width}x{height} to {out_w}x{out_h} needs a {resize}-byte buffer, more than the limit of {} \
                 ({ENV_MAX_RESIZE_BYTES}; docs/LIMITS.md); crop or shrink the image first",
                limits.max_resize_bytes
            ),
        ));
    }
    match format {
        ImageFormat::Png => check_png_palette(name, bytes, limits)?,
        ImageFormat::Pnm => check_pnm_trailing(name, bytes)?,
        _ => {}
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut dl = image::Limits::default();
    dl.max_image_width = Some(width);
    dl.max_image_height = Some(height);
    dl.max_alloc = Some(limits.max_image_decode_bytes);
    reader.limits(dl);
    let img = reader.decode().map_err(|e| bad(name, format!("cannot decode the image: {e}")))?;
    Ok((img, pixels))
}

/// Decodes a PNG, JPEG, BMP, GIF or PNM image from `bytes` into `out_h * out_w` grey levels
/// in `[0, 1]` (see the module documentation for every check); `name` is
/// used in errors.
///
/// ```
/// use convnet::images::{decode_grey, ImageOptions};
/// let pgm = b"P5 2 1 255\n\x00\xff";
/// let d = decode_grey("two.pgm", pgm, 1, 2, &ImageOptions::default())?;
/// assert_eq!(d.pixels, vec![0.0, 1.0]);
/// let err = decode_grey("two.pgm", b"P5 2 1 255\n\x00\xffjunk", 1, 2, &ImageOptions::default()).unwrap_err();
/// assert!(err.to_string().contains("4 bytes after"), "{err}");
/// # Ok::<(), convnet::Error>(())
/// ```
pub fn decode_grey(name: &str, bytes: &[u8], out_h: u32, out_w: u32, opts: &ImageOptions) -> Result<Decoded> {
    let (img, pixels) = decode_checked(name, bytes, out_h, out_w, &opts.limits)?;
    let (width, height) = (img.width(), img.height());
    let mut notes = Vec::new();
    let grey = if img.color().has_alpha() {
        let rgba = img.into_rgba8();
        let background: u8 = if opts.invert { 255 } else { 0 };
        let translucent = rgba.pixels().filter(|p| p.0[3] != 255).count();
        if translucent > 0 {
            notes.push(format!(
                "{name}: {translucent} of {pixels} pixels are not opaque; composited over a {} background (the \
                 model's background{})",
                if opts.invert { "white" } else { "black" },
                if opts.invert { " after --invert" } else { "" }
            ));
        }
        let mut out = image::GrayImage::new(width, height);
        for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
            let [r, g, b, a] = p.0;
            // Rec. 601 luma, as image's own conversion, then "over" the background.
            let luma = (299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b) + 500) / 1000;
            let a = u32::from(a);
            o.0[0] = ((luma * a + u32::from(background) * (255 - a) + 127) / 255) as u8;
        }
        out
    } else {
        DynamicImage::into_luma8(img)
    };
    let grey = if grey.dimensions() == (out_w, out_h) {
        grey
    } else {
        image::imageops::resize(&grey, out_w, out_h, image::imageops::FilterType::Triangle)
    };
    let pixels =
        grey.into_raw().into_iter().map(|p| f32::from(if opts.invert { 255 - p } else { p }) / 255.0).collect();
    Ok(Decoded { pixels, notes })
}

/// An indexed PNG must not index past its palette (PNG specification,
/// 11.2.3: "any out-of-range pixel value found in the image data is an
/// error"). Decodes the raw indices (the dimensions are already checked).
/// An image as a model's input: `height * width * channels` samples
/// (0-255, interleaved), at the model's input size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelImage {
    /// The samples, row-major, channels interleaved.
    pub pixels: Vec<u8>,
    /// Things the user should know (transparency composited), one sentence each.
    pub notes: Vec<String>,
}

/// How [`decode_for_model`] prepares an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelImageOptions {
    /// Channels of the model's input: 1 (grey), 3 (RGB) or 4 (RGBA).
    pub channels: usize,
    /// Invert the colour samples (not alpha): dark ink on light paper
    /// becomes MNIST's white on black.
    pub invert: bool,
    /// MNIST's digit preprocessing (grey only; see [`center_digit`]).
    pub center: bool,
    /// Size limits, as [`ImageOptions::limits`].
    pub limits: Limits,
}

/// Decodes a PNG, JPEG, BMP, GIF or PNM image of any size and colour into
/// the model's input: with the checks of the module doc (steps 1-3, the
/// transparency of an RGB or grey target composited over black, white with
/// `invert`, with a note), the colour conversion of the image-folder loader
/// (`convnet_datasets::folder`: TensorFlow's grey weights, grey repeated
/// into RGB, alpha 255 added), optional inversion and [`center_digit`],
/// then the loader's TensorFlow bilinear resize to `out_h x out_w`, rounded
/// to `u8` as the loader holds its images: a file goes through `predict`
/// exactly as it would have gone through training.
///
/// ```
/// use convnet::images::{decode_for_model, ModelImageOptions};
/// let ppm = b"P6 2 1 255\n\xff\x00\x00\x00\x00\xff"; // a red and a blue pixel
/// let opts = ModelImageOptions { channels: 3, ..ModelImageOptions::default() };
/// let img = decode_for_model("rb.ppm", ppm, 1, 2, &opts)?;
/// assert_eq!(img.pixels, vec![255, 0, 0, 0, 0, 255]);
/// let grey = decode_for_model("rb.ppm", ppm, 1, 1, &ModelImageOptions { channels: 1, ..opts })?;
/// assert_eq!(grey.pixels, vec![53]); // grey 76 and 29, blended half and half, rounded
/// # Ok::<(), convnet::Error>(())
/// ```
pub fn decode_for_model(
    name: &str,
    bytes: &[u8],
    out_h: u32,
    out_w: u32,
    opts: &ModelImageOptions,
) -> Result<ModelImage> {
    let channels = opts.channels;
    if !matches!(channels, 1 | 3 | 4) {
        return Err(Error::invalid("channels", format!("{channels}: images have 1, 3 or 4 channels")));
    }
    if opts.center && channels != 1 {
        return Err(Error::invalid("--center", format!("applies to grey (1-channel) models, not {channels} channels")));
    }
    let (img, pixels) = decode_checked(name, bytes, out_h, out_w, &opts.limits)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let mut notes = Vec::new();
    let rgba = img.into_rgba8().into_raw();
    let background: u32 = if opts.invert { 255 } else { 0 };
    if channels != 4 {
        let translucent = rgba.chunks_exact(4).filter(|p| p[3] != 255).count();
        if translucent > 0 {
            notes.push(format!(
                "{name}: {translucent} of {pixels} pixels are not opaque; composited over a {} background (the \
                 model's background{})",
                if opts.invert { "white" } else { "black" },
                if opts.invert { " after --invert" } else { "" }
            ));
        }
    }
    let over = |v: u8, a: u8| ((u32::from(v) * u32::from(a) + background * (255 - u32::from(a)) + 127) / 255) as u8;
    let flip = |v: u8| if opts.invert { 255 - v } else { v };
    let mut src = Vec::with_capacity(width * height * channels);
    for p in rgba.chunks_exact(4) {
        let [r, g, b, a] = [p[0], p[1], p[2], p[3]];
        match channels {
            1 => src.push(flip(over(convnet_datasets::folder::rgb_to_gray(r, g, b), a))),
            3 => src.extend([flip(over(r, a)), flip(over(g, a)), flip(over(b, a))]),
            _ => src.extend([flip(r), flip(g), flip(b), a]),
        }
    }
    let (mut src, mut size) = (src, (height, width));
    if opts.center {
        src = center_digit(&src, height, width);
        size = (MNIST_SIDE, MNIST_SIDE);
    }
    let out = (out_h as usize, out_w as usize);
    let pixels = if size == out {
        src
    } else {
        let mut resized = vec![0u8; out.0 * out.1 * channels];
        convnet_datasets::folder::resize_bilinear_u8(&src, size, channels, out, &mut resized);
        resized
    };
    Ok(ModelImage { pixels, notes })
}

/// Side of an MNIST image.
pub const MNIST_SIDE: usize = 28;
/// Side of the box MNIST fits each digit into before centring it.
pub const MNIST_BOX: usize = 20;

/// MNIST's digit preprocessing, as LeCun et al. describe making the set: the
/// digit's bounding box is scaled, keeping its aspect ratio and with
/// anti-aliasing, to fit a 20x20 box, then placed in a 28x28 image so that
/// its centre of mass is at the centre. `grey` is `h x w`, light ink on a
/// dark background (invert first otherwise); the result is 28x28.
///
/// The levels are first stretched so the darkest pixel is 0 and the
/// lightest 255 (a grey paper becomes MNIST's black); the bounding box is
/// that of the pixels at least half way up. An image of one level gives a
/// black 28x28 image. The scaling uses the `image` crate's triangle filter,
/// whose support widens with the scale factor (the anti-aliasing).
///
/// ```
/// use convnet::images::center_digit;
/// // A 4x4 bright square in the corner of a 100x100 canvas ends up centred.
/// let mut canvas = vec![0u8; 100 * 100];
/// for y in 0..4 { for x in 0..4 { canvas[y * 100 + x] = 255; } }
/// let out = center_digit(&canvas, 100, 100);
/// assert_eq!(out.len(), 28 * 28);
/// assert_eq!(out[14 * 28 + 14], 255);
/// assert_eq!(out[0], 0);
/// ```
pub fn center_digit(grey: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; MNIST_SIDE * MNIST_SIDE];
    let (lo, hi) = grey.iter().fold((u8::MAX, u8::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if grey.len() != h * w || hi <= lo {
        return out;
    }
    let span = u32::from(hi - lo);
    let stretched: Vec<u8> = grey.iter().map(|&v| ((u32::from(v - lo) * 255 + span / 2) / span) as u8).collect();
    let (mut top, mut bottom, mut left, mut right) = (h, 0, w, 0);
    for (y, row) in stretched.chunks_exact(w).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            if v >= 128 {
                top = top.min(y);
                bottom = bottom.max(y);
                left = left.min(x);
                right = right.max(x);
            }
        }
    }
    let (bh, bw) = (bottom + 1 - top, right + 1 - left);
    let mut crop = image::GrayImage::new(bw as u32, bh as u32);
    for (y, row) in crop.rows_mut().enumerate() {
        for (x, p) in row.enumerate() {
            p.0[0] = stretched[(top + y) * w + left + x];
        }
    }
    let (nh, nw) = if bh >= bw {
        (MNIST_BOX, ((bw * MNIST_BOX) as f64 / bh as f64).round().max(1.0) as usize)
    } else {
        (((bh * MNIST_BOX) as f64 / bw as f64).round().max(1.0) as usize, MNIST_BOX)
    };
    let digit = image::imageops::resize(&crop, nw as u32, nh as u32, image::imageops::FilterType::Triangle);
    let (mut mass, mut my, mut mx) = (0.0f64, 0.0f64, 0.0f64);
    for (y, row) in digit.rows().enumerate() {
        for (x, p) in row.enumerate() {
            let v = f64::from(p.0[0]);
            mass += v;
            my += v * (y as f64 + 0.5);
            mx += v * (x as f64 + 0.5);
        }
    }
    let half = MNIST_SIDE as f64 / 2.0;
    let (cy, cx) = if mass > 0.0 { (my / mass, mx / mass) } else { (nh as f64 / 2.0, nw as f64 / 2.0) };
    let place = |centre: f64, len: usize| ((half - centre).round().max(0.0) as usize).min(MNIST_SIDE - len);
    let (oy, ox) = (place(cy, nh), place(cx, nw));
    for (y, row) in digit.rows().enumerate() {
        for (x, p) in row.enumerate() {
            out[(oy + y) * MNIST_SIDE + ox + x] = p.0[0];
        }
    }
    out
}

fn check_png_palette(name: &str, bytes: &[u8], limits: &Limits) -> Result<()> {
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits { bytes: usize::try_from(limits.max_image_decode_bytes).unwrap_or(usize::MAX) },
    );
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| bad(name, format!("cannot decode the PNG: {e}")))?;
    let info = reader.info();
    if info.color_type != png::ColorType::Indexed {
        return Ok(());
    }
    let entries = info.palette.as_ref().map_or(0, |p| p.len() / 3);
    let depth = info.bit_depth as u8;
    let width = info.width as usize;
    let size = reader.output_buffer_size().ok_or_else(|| bad(name, "the PNG's size overflows"))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(|e| bad(name, format!("cannot decode the PNG: {e}")))?;
    let per_byte = 8 / usize::from(depth.max(1));
    let mask = ((1u16 << depth) - 1) as u8;
    for (row, line) in buf.chunks_exact(frame.line_size.max(1)).enumerate() {
        for x in 0..width {
            let byte = line[x / per_byte];
            let shift = 8 - usize::from(depth) * (x % per_byte + 1);
            let index = usize::from((byte >> shift) & mask);
            if index >= entries {
                return Err(bad(
                    name,
                    format!(
                        "pixel ({x}, {row}) has palette index {index}, but the palette has {entries} entries \
                         (a corrupt PNG)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Skips whitespace and `#` comments (to the end of their line).
fn skip_space(bytes: &[u8], pos: &mut usize) {
    loop {
        while *pos < bytes.len() && bytes[*pos].is_ascii_whitespace() {
            *pos += 1;
        }
        if *pos < bytes.len() && bytes[*pos] == b'#' {
            while *pos < bytes.len() && bytes[*pos] != b'\n' && bytes[*pos] != b'\r' {
                *pos += 1;
            }
            continue;
        }
        break;
    }
}

/// The next PNM token (skipping whitespace and `#` comments) from `bytes[*pos..]`.
fn pnm_token<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    skip_space(bytes, pos);
    let start = *pos;
    while *pos < bytes.len() && !bytes[*pos].is_ascii_whitespace() && bytes[*pos] != b'#' {
        *pos += 1;
    }
    (start < *pos).then(|| &bytes[start..*pos])
}

fn pnm_number(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    std::str::from_utf8(pnm_token(bytes, pos)?).ok()?.parse().ok()
}

/// A PNM file must hold one image and nothing after it but whitespace
/// (Netpbm allows a stream of several images in one file; classifying only
/// the first, silently, would be wrong). The header was already parsed by
/// the decoder; this computes where the first image ends. `Ok` when the
/// header cannot be parsed here (the decoder reports that).
fn check_pnm_trailing(name: &str, bytes: &[u8]) -> Result<()> {
    let mut pos = 2;
    let end = match bytes.get(..2) {
        Some(b"P4") | Some(b"P5") | Some(b"P6") => {
            let (Some(w), Some(h)) = (pnm_number(bytes, &mut pos), pnm_number(bytes, &mut pos)) else { return Ok(()) };
            let (channels, bits) = match bytes[1] {
                b'4' => (1, 1),
                magic => {
                    let Some(maxval) = pnm_number(bytes, &mut pos) else { return Ok(()) };
                    (if magic == b'6' { 3 } else { 1 }, if maxval < 256 { 8 } else { 16 })
                }
            };
            // Exactly one whitespace byte separates the header from the raster.
            let row_bits = w.checked_mul(channels * bits);
            let raster = row_bits.and_then(|r| r.div_ceil(8).checked_mul(h));
            let Some(raster) = raster else { return Ok(()) };
            (pos as u64 + 1).checked_add(raster)
        }
        Some(b"P7") => {
            let (mut w, mut h, mut depth, mut maxval) = (None, None, None, None);
            loop {
                match pnm_token(bytes, &mut pos) {
                    Some(b"WIDTH") => w = pnm_number(bytes, &mut pos),
                    Some(b"HEIGHT") => h = pnm_number(bytes, &mut pos),
                    Some(b"DEPTH") => depth = pnm_number(bytes, &mut pos),
                    Some(b"MAXVAL") => maxval = pnm_number(bytes, &mut pos),
                    Some(b"ENDHDR") => break,
                    Some(_) => {}
                    None => return Ok(()),
                }
            }
            let (Some(w), Some(h), Some(d), Some(m)) = (w, h, depth, maxval) else { return Ok(()) };
            let raster =
                w.checked_mul(h).and_then(|x| x.checked_mul(d)).and_then(|x| x.checked_mul(1 + u64::from(m > 255)));
            let Some(raster) = raster else { return Ok(()) };
            (pos as u64 + 1).checked_add(raster)
        }
        Some(b"P1") | Some(b"P2") | Some(b"P3") => {
            let (Some(w), Some(h)) = (pnm_number(bytes, &mut pos), pnm_number(bytes, &mut pos)) else { return Ok(()) };
            let channels = if bytes[1] == b'3' { 3 } else { 1 };
            if bytes[1] != b'1' && pnm_number(bytes, &mut pos).is_none() {
                return Ok(());
            }
            let Some(samples) = w.checked_mul(h).and_then(|x| x.checked_mul(channels)) else { return Ok(()) };
            // Plain PBM samples are single digits that need no separator.
            for _ in 0..samples {
                if bytes[1] == b'1' {
                    skip_space(bytes, &mut pos);
                    if pos >= bytes.len() {
                        return Ok(()); // truncated: the decoder says so
                    }
                    pos += 1;
                } else if pnm_token(bytes, &mut pos).is_none() {
                    return Ok(());
                }
            }
            Some(pos as u64)
        }
        _ => return Ok(()),
    };
    let Some(end) = end else { return Ok(()) };
    let len = bytes.len() as u64;
    if len > end {
        let rest = &bytes[end as usize..];
        if !rest.iter().all(u8::is_ascii_whitespace) {
            return Err(bad(
                name,
                format!(
                    "{} bytes after the first image (a second image of a multi-image file, or trailing garbage); \
                     convnet reads one image per file",
                    rest.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(name: &str, bytes: &[u8], h: u32, w: u32) -> Result<Decoded> {
        decode_grey(name, bytes, h, w, &ImageOptions::default())
    }

    #[test]
    fn pnm_with_one_image_and_whitespace_is_accepted() {
        assert_eq!(grey("a", b"P5 2 1 255\n\x00\xff\n", 1, 2).unwrap().pixels, vec![0.0, 1.0]);
        assert_eq!(grey("a", b"P2\n# c\n2 1\n255\n0 255\n\n", 1, 2).unwrap().pixels, vec![0.0, 1.0]);
        assert_eq!(grey("a", b"P1 3 1 010", 1, 3).unwrap().pixels.len(), 3);
        assert_eq!(grey("a", b"P4 3 1\n\xa0", 1, 3).unwrap().pixels.len(), 3);
    }

    #[test]
    fn pnm_with_data_after_the_image_is_refused() {
        for (bytes, extra) in [
            (&b"P5 2 1 255\n\x00\xffP5 2 1 255\n\x00\xff"[..], 13),
            (b"P2 2 1 255 0 255 7", 2),
            (b"P1 2 1 0 1 1", 2),
            (b"P5 1 1 65535\n\x00\x01\x02", 1),
            (b"P6 1 1 255\n\x01\x02\x03X", 1),
        ] {
            let err = grey("t.pgm", bytes, 1, 2).unwrap_err().to_string();
            assert!(err.contains(&format!("{extra} bytes after the first image")), "{err}");
        }
    }
}

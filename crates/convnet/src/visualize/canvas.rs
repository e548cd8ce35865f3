//! Drawing on an [`RgbImage`]: tiles scaled up by an integer zoom, titles in
//! an 8x8 bitmap font (`font8x8`'s public-domain glyphs, pure Rust, no system
//! library), and PNG encoding.

use crate::{Error, Result};
use image::{Rgb, RgbImage};

/// The background of grids and title bars.
pub(crate) const BACKGROUND: Rgb<u8> = Rgb([24, 24, 24]);
/// Title text.
pub(crate) const TEXT: Rgb<u8> = Rgb([235, 235, 235]);
/// Pixels between tiles and around the grid.
pub(crate) const GAP: u32 = 2;

/// The largest picture any of these functions draws, in pixels per side.
pub(crate) const MAX_SIDE: u32 = 16_384;

/// A canvas of `width x height`, filled with the background, or an error
/// when either side is over [`MAX_SIDE`].
pub(crate) fn canvas(width: usize, height: usize, what: &str) -> Result<RgbImage> {
    let fits = |v: usize| u32::try_from(v).ok().filter(|&v| v > 0 && v <= MAX_SIDE);
    match (fits(width), fits(height)) {
        (Some(w), Some(h)) => Ok(RgbImage::from_pixel(w, h, BACKGROUND)),
        _ => Err(Error::invalid(what, format!("a {width}x{height} picture is over the {MAX_SIDE}-pixel side limit"))),
    }
}

/// Width in pixels of `text` at `scale` (8 pixels per character).
pub(crate) fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 8 * scale
}

/// Draws `text` with its top-left corner at `(x, y)`, each font pixel a
/// `scale x scale` square; characters outside ASCII print as `?`; whatever
/// falls outside the image is clipped.
pub(crate) fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, color: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() { ch as usize } else { '?' as usize };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                // font8x8: bit 0 is the leftmost pixel.
                if bits >> col & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = x + (i as u32 * 8 + col) * scale + dx;
                        let py = y + row as u32 * scale + dy;
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, color);
                        }
                    }
                }
            }
        }
    }
}

/// Copies `tile` (`h x w` colours, row-major) into `img` at `(x, y)`, each
/// pixel a `zoom x zoom` square (nearest neighbour, so single values stay
/// visible as blocks).
pub(crate) fn blit(img: &mut RgbImage, x: u32, y: u32, tile: &[[u8; 3]], h: usize, w: usize, zoom: u32) {
    for (r, row) in tile.chunks_exact(w).take(h).enumerate() {
        for (c, &rgb) in row.iter().enumerate() {
            for dy in 0..zoom {
                for dx in 0..zoom {
                    let (px, py) = (x + c as u32 * zoom + dx, y + r as u32 * zoom + dy);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, Rgb(rgb));
                    }
                }
            }
        }
    }
}

/// The integer zoom that makes an `h x w` tile at least `min_side` pixels
/// on its longer side (1 when it already is).
pub(crate) fn zoom_for(h: usize, w: usize, min_side: usize) -> u32 {
    let side = h.max(w).max(1);
    (min_side.div_ceil(side)).clamp(1, 64) as u32
}

/// `img` encoded as PNG.
///
/// ```
/// let img = image::RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3]));
/// let png = convnet::visualize::png_bytes(&img)?;
/// assert_eq!(&png[1..4], b"PNG");
/// # Ok::<(), convnet::Error>(())
/// ```
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| Error::Data(format!("PNG encoding: {e}")))?;
    Ok(out.into_inner())
}

/// Writes `img` as a PNG file atomically (a temporary file, fsync, rename).
pub fn save_png(img: &RgbImage, path: impl AsRef<std::path::Path>) -> Result<()> {
    crate::files::write_atomic(path.as_ref(), &png_bytes(img)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_left_to_right_and_clipped() {
        let mut img = RgbImage::from_pixel(20, 10, BACKGROUND);
        draw_text(&mut img, 0, 0, "L1", 1, TEXT);
        // 'L' has its vertical stroke on the left: column 0 or 1 lit in its top row.
        let lit = |x: u32, y: u32| img.get_pixel(x, y) == &TEXT;
        assert!((0..8).any(|y| lit(0, y) || lit(1, y)), "no stroke on the left of L");
        assert!(!(0..8).any(|y| lit(7, y)), "L reaches its right edge");
        // The '1' starts at column 8; the part past 20 pixels is clipped, no panic.
        assert!((8..16).any(|x| (0..8).any(|y| lit(x, y))));
        draw_text(&mut img, 15, 5, "wide text", 2, TEXT);
        assert_eq!(text_width("abc", 2), 48);
        assert!(canvas(20_000, 10, "grid").unwrap_err().to_string().contains("side limit"));
    }
}

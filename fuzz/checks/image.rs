// The properties the `image` fuzz target checks, shared with the stable
// replay test (`crates/convnet/tests/fuzz_corpus.rs` includes this file).
//
// Any bytes given to `predict`'s image path (decode, checks, alpha
// compositing, grey conversion, resize to 28x28) must give `Ok` or `Err`,
// never a panic and never an allocation beyond the limits. On `Ok` there are
// exactly 28 x 28 grey levels in [0, 1], and inverting gives 1 - x.

/// Limits lowered so each execution stays fast (the defaults allow 64 MP).
fn image_fuzz_limits() -> convnet::limits::Limits {
    let mut l = convnet::limits::Limits::default().max_image_pixels(1 << 20).max_resize_bytes(16 << 20);
    l.max_image_decode_bytes = 64 << 20;
    l
}

fn check_image(data: &[u8]) {
    use convnet::images::{decode_grey, ImageOptions};
    let limits = image_fuzz_limits();
    let plain = decode_grey("fuzz", data, 28, 28, &ImageOptions { invert: false, limits });
    let inverted = decode_grey("fuzz", data, 28, 28, &ImageOptions { invert: true, limits });
    match (&plain, &inverted) {
        (Ok(p), Ok(i)) => {
            assert_eq!(p.pixels.len(), 28 * 28);
            assert_eq!(i.pixels.len(), 28 * 28);
            assert!(p.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
            // Without transparency, inverting commutes with the resize.
            if p.notes.is_empty() {
                for (a, b) in p.pixels.iter().zip(&i.pixels) {
                    assert!((a + b - 1.0).abs() < 1.5 / 255.0, "{a} + {b} != 1");
                }
            }
        }
        (Err(_), Err(_)) => {}
        _ => panic!("invert changed whether the image decodes: {:?} vs {:?}", plain.is_ok(), inverted.is_ok()),
    }
}

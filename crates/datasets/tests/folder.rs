//! Image-folder datasets: Keras's file order and split, Keras's pixels, every
//! bad input, the cache, batching, the book's layout. Folders are written by
//! the tests (or are the small committed fixtures of `fixtures/folder/`,
//! regenerated from real Keras by `fixtures/folder/gen_keras_folder.py`).

mod common;

use common::temp_dir;
use convnet_datasets::folder::{
    self, crop_box, resize_bilinear_f32, CacheStatus, ColorMode, DecodeLimits, FolderLimits, FolderOptions, LabelMode,
    Labels, Subset,
};
use convnet_datasets::Error;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/folder").join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// Writes an RGB image whose pixels follow a formula, in the format of the extension.
fn write_image(path: &Path, w: u32, h: u32, salt: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7 + y * 3 + salt) as u8, (x * y + salt * 5) as u8, (y * 11 + salt) as u8])
    });
    img.save(path).unwrap();
}

fn opts(size: (usize, usize)) -> FolderOptions {
    FolderOptions { image_size: size, shuffle: false, ..FolderOptions::default() }
}

// ---------------------------------------------------------------- Keras's split

#[test]
fn file_order_and_split_equal_keras() {
    let v = json("keras_split.json");
    let dir = temp_dir("split");
    for rel in strs(&v["tree"]) {
        let path = dir.join(&rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }
    let rel = |files: &[folder::IndexedFile]| -> Vec<String> {
        files.iter().map(|f| f.path.strip_prefix(&dir).unwrap().to_str().unwrap().to_string()).collect()
    };
    // Unshuffled: Keras's index order (classes sorted, walk order, case-insensitive extensions).
    let lists = folder::file_lists(&dir, &FolderOptions { shuffle: false, ..FolderOptions::default() }).unwrap();
    let order = strs(&v["unshuffled"]["files"]);
    assert_eq!(lists.class_names, strs(&v["unshuffled"]["class_names"]));
    assert_eq!(rel(&lists.training), order);
    for f in &lists.training {
        let class = f.path.strip_prefix(&dir).unwrap().iter().next().unwrap().to_str().unwrap();
        assert_eq!(lists.class_names[f.label as usize], class);
    }
    // Seeded splits: the same files in the same subset, in the same order.
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 30);
    for case in cases {
        let seed = case["seed"].as_u64().unwrap();
        let split = case["validation_split"].as_f64().unwrap();
        let o = FolderOptions { seed: Some(seed), validation_split: Some(split), ..FolderOptions::default() };
        let lists = folder::file_lists(&dir, &o).unwrap();
        let pick = |key: &str| -> Vec<String> {
            case[key].as_array().unwrap().iter().map(|p| order[p.as_u64().unwrap() as usize].clone()).collect()
        };
        assert_eq!(rel(&lists.training), pick("training"), "seed {seed}, split {split}: training");
        assert_eq!(rel(&lists.validation), pick("validation"), "seed {seed}, split {split}: validation");
    }
    // A class_names subset, in the user's order.
    let case = &v["class_names_case"];
    let o = FolderOptions {
        seed: case["seed"].as_u64(),
        validation_split: case["validation_split"].as_f64(),
        class_names: Some(strs(&case["class_names"])),
        ..FolderOptions::default()
    };
    let lists = folder::file_lists(&dir, &o).unwrap();
    assert_eq!(lists.class_names, ["dogs", "cats"]);
    assert_eq!(rel(&lists.training), strs(&case["training"]));
    assert!(lists.training.iter().all(|f| f.path.starts_with(dir.join(&lists.class_names[f.label as usize]))));
}

// ---------------------------------------------------------------- Keras's pixels

struct Case {
    path: PathBuf,
    mode: ColorMode,
    crop: bool,
    expected: Vec<f32>,
}

fn pixel_cases() -> Vec<Case> {
    let v = json("keras_pixels.json");
    assert_eq!(v["image_size"], serde_json::json!([4, 5]));
    v["results"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, values)| {
            let mut parts = key.split(' ');
            let (file, mode, crop) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            Case {
                path: fixture("images").join(file),
                mode: mode.parse().unwrap(),
                crop: crop == "crop=True",
                expected: values.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect(),
            }
        })
        .collect()
}

/// Keras's JPEG decoder (libjpeg-turbo) and ours (zune-jpeg) round their
/// inverse DCT and chroma upsampling differently (and TensorFlow's grey JPEG
/// is the decoder's luma, ours the converted RGB): at most 3.5 levels apart
/// after the resize on this 24x30 file (measured; the test prints it).
const JPEG_TOLERANCE: f32 = 4.0;

/// TensorFlow's PNG decoder gives an opaque palette image stored at 4 bits per
/// index an alpha of 15 (`2^bit_depth - 1`) in `channels=4`; this crate gives
/// 255 (opaque), as for every other image without transparency. The colour
/// channels agree.
fn is_tf_palette_alpha_quirk(case: &Case) -> bool {
    case.mode == ColorMode::Rgba && case.path.ends_with("palette.png")
}

#[test]
fn decode_and_resize_equal_keras_in_f32() {
    let cases = pixel_cases();
    assert!(cases.len() >= 50);
    let limits = DecodeLimits { max_file_bytes: 1 << 20, max_image_bytes: 1 << 20 };
    let mut worst_jpeg = 0f32;
    for case in &cases {
        let bytes = fs::read(&case.path).unwrap();
        let px = folder::decode(&case.path, &bytes, case.mode, limits).unwrap();
        let (src, size) = if case.crop {
            let (top, left, h, w) = crop_box((px.height, px.width), (4, 5));
            let mut out = Vec::new();
            for row in top..top + h {
                out.extend_from_slice(&px.data[(row * px.width + left) * px.channels..][..w * px.channels]);
            }
            (out, (h, w))
        } else {
            (px.data.clone(), (px.height, px.width))
        };
        let mut ours = resize_bilinear_f32(&src, size, px.channels, (4, 5));
        assert_eq!(ours.len(), case.expected.len(), "{}", case.path.display());
        if is_tf_palette_alpha_quirk(case) {
            for (o, e) in ours.chunks_mut(4).zip(case.expected.chunks(4)) {
                assert_eq!((o[3], e[3]), (255.0, 15.0));
                o[3] = e[3];
            }
        }
        let diff = ours.iter().zip(&case.expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        if case.path.extension().unwrap() == "jpg" {
            worst_jpeg = worst_jpeg.max(diff);
            assert!(diff <= JPEG_TOLERANCE, "{} {:?}: {diff}", case.path.display(), case.mode);
        } else {
            assert!(diff <= 2e-5, "{} {:?} crop={}: max diff {diff}", case.path.display(), case.mode, case.crop);
        }
    }
    assert!(worst_jpeg > 0.0, "the JPEG cases ran");
    eprintln!("largest JPEG difference from Keras: {worst_jpeg}");
}

#[test]
fn loaded_u8_pixels_are_keras_values_rounded() {
    let cases = pixel_cases();
    for mode in [ColorMode::Grayscale, ColorMode::Rgb, ColorMode::Rgba] {
        for crop in [false, true] {
            let o = FolderOptions { color_mode: mode, crop_to_aspect_ratio: crop, ..opts((4, 5)) };
            let ds = folder::load(fixture("images"), &o).unwrap();
            assert_eq!(ds.len(), 11);
            assert_eq!(ds.input_shape(), [4, 5, mode.channels()]);
            assert_eq!(ds.class_names(), ["a_rgb", "b_other"]);
            let mut compared = 0;
            for case in cases.iter().filter(|c| c.mode == mode && c.crop == crop) {
                let i = ds.file_paths().iter().position(|p| p == &case.path).unwrap();
                let tol = if case.path.extension().unwrap() == "jpg" { JPEG_TOLERANCE + 0.5 } else { 0.5 + 1e-4 };
                for (k, (&a, &b)) in ds.image(i).unwrap().iter().zip(&case.expected).enumerate() {
                    if is_tf_palette_alpha_quirk(case) && k % 4 == 3 {
                        assert_eq!((a, b), (255, 15.0));
                        continue;
                    }
                    assert!((f32::from(a) - b).abs() <= tol, "{}: {a} vs {b}", case.path.display());
                }
                compared += 1;
            }
            assert!(compared >= 8, "{mode:?} crop={crop}: {compared}");
        }
    }
}

// ---------------------------------------------------------------- formats, modes, junk

#[test]
fn png_jpeg_bmp_gif_grey_rgba_nested_and_junk() {
    let dir = temp_dir("formats");
    write_image(&dir.join("cat/a.png"), 33, 17, 1);
    write_image(&dir.join("cat/deep/er/b.JPG"), 40, 35, 2);
    write_image(&dir.join("cat/c.bmp"), 5, 9, 3);
    fs::create_dir_all(dir.join("dog")).unwrap();
    image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y) as u8])).save(dir.join("dog/grey.png")).unwrap();
    image::RgbaImage::from_fn(7, 3, |x, _| image::Rgba([200, 100, x as u8, 9]))
        .save(dir.join("dog/alpha.png"))
        .unwrap();
    write_image(&dir.join("dog/anim.gif"), 6, 6, 4);
    fs::write(dir.join("cat/notes.txt"), b"not an image").unwrap();
    fs::write(dir.join("cat/deep/readme.md"), b"# hi").unwrap();
    fs::write(dir.join("loose.png"), b"ignored: not in a class folder").unwrap();
    fs::create_dir_all(dir.join(".cache/x")).unwrap();
    fs::write(dir.join(".cache/x/y.png"), b"ignored: hidden class").unwrap();
    for (mode, c) in [(ColorMode::Grayscale, 1), (ColorMode::Rgb, 3), (ColorMode::Rgba, 4)] {
        let ds = folder::load(&dir, &FolderOptions { color_mode: mode, ..opts((6, 7)) }).unwrap();
        assert_eq!(ds.len(), 6);
        assert_eq!(ds.class_names(), ["cat", "dog"]);
        assert_eq!(ds.labels().unwrap(), [0, 0, 0, 1, 1, 1]);
        assert_eq!(ds.input_shape(), [6, 7, c]);
        let names: Vec<_> = ds.file_paths().iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["a.png", "c.bmp", "b.JPG", "alpha.png", "anim.gif", "grey.png"]);
        // The RGBA source keeps its alpha only in rgba mode; grey sources are opaque.
        if mode == ColorMode::Rgba {
            assert!(ds.image(3).unwrap().chunks(4).all(|p| p[3] == 9));
            assert!(ds.image(5).unwrap().chunks(4).all(|p| p[3] == 255 && p[0] == p[1] && p[1] == p[2]));
        }
    }
    // At the source's own size the resize is the identity: grey values are
    // exactly the RGB-to-grey conversion, the alpha dropped.
    let ds = folder::load(&dir, &FolderOptions { color_mode: ColorMode::Grayscale, ..opts((3, 7)) }).unwrap();
    let want: Vec<u8> = (0..21).map(|k| folder::rgb_to_gray(200, 100, (k % 7) as u8)).collect();
    assert_eq!(ds.image(3).unwrap(), &want[..]);
}

// ---------------------------------------------------------------- bad input

fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(w, h).write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn load_err(dir: &Path, o: &FolderOptions) -> Error {
    folder::load(dir, o).expect_err("must fail")
}

#[test]
fn bad_images_are_errors_naming_the_file() {
    let dir = temp_dir("bad");
    write_image(&dir.join("a/good.png"), 4, 4, 0);
    // Truncated PNG.
    let png = png_bytes(64, 64);
    fs::write(dir.join("a/truncated.png"), &png[..png.len() / 2]).unwrap();
    let err = load_err(&dir, &opts((4, 4)));
    assert!(matches!(err, Error::Image { .. }), "{err}");
    assert!(err.to_string().contains("truncated.png"), "{err}");
    fs::remove_file(dir.join("a/truncated.png")).unwrap();
    // Not an image at all.
    fs::write(dir.join("a/text.jpg"), b"hello, this is text").unwrap();
    let err = load_err(&dir, &opts((4, 4)));
    assert!(err.to_string().contains("text.jpg") && err.to_string().contains("not a JPEG"), "{err}");
    fs::remove_file(dir.join("a/text.jpg")).unwrap();
    // A JPEG cut short.
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 9]))
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let jpeg = jpeg.into_inner();
    fs::write(dir.join("a/cut.jpeg"), &jpeg[..40]).unwrap();
    let err = load_err(&dir, &opts((4, 4)));
    assert!(matches!(&err, Error::Image { file, .. } if file.ends_with("cut.jpeg")), "{err}");
    fs::remove_file(dir.join("a/cut.jpeg")).unwrap();
    // An empty file.
    fs::write(dir.join("a/empty.png"), b"").unwrap();
    let err = load_err(&dir, &opts((4, 4)));
    assert!(err.to_string().contains("empty.png"), "{err}");
    fs::remove_file(dir.join("a/empty.png")).unwrap();
    assert_eq!(folder::load(&dir, &opts((4, 4))).unwrap().len(), 1);
}

/// A valid 1x1 PNG whose header is patched to claim `w x h` pixels (CRC fixed).
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut png = png_bytes(1, 1);
    // Signature (8), IHDR length (4) and type (4), then width and height.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    png
}

#[test]
fn decompression_bomb_is_refused_from_the_header() {
    let dir = temp_dir("bomb");
    write_image(&dir.join("a/good.png"), 4, 4, 0);
    let bomb = bomb_png(50_000, 50_000);
    assert!(bomb.len() < 200);
    fs::write(dir.join("a/bomb.png"), &bomb).unwrap();
    let err = load_err(&dir, &opts((4, 4)));
    match &err {
        Error::ImageTooLarge { file, width, height, bytes, limit } => {
            assert!(file.ends_with("bomb.png"));
            assert_eq!((*width, *height), (50_000, 50_000));
            assert_eq!(*bytes, 50_000 * 50_000 * 3);
            assert_eq!(*limit, folder::MAX_IMAGE_BYTES);
        }
        other => panic!("expected ImageTooLarge, got {other}"),
    }
    // A smaller claim under a tighter, user-set limit.
    fs::write(dir.join("a/bomb.png"), bomb_png(2000, 2000)).unwrap();
    let o =
        FolderOptions { limits: FolderLimits { max_image_bytes: 1 << 20, ..FolderLimits::default() }, ..opts((4, 4)) };
    assert!(matches!(load_err(&dir, &o), Error::ImageTooLarge { .. }));
}

#[test]
fn folder_structure_errors() {
    let dir = temp_dir("structure");
    // No class folders at all.
    fs::write(dir.join("x.png"), png_bytes(2, 2)).unwrap();
    assert!(matches!(load_err(&dir, &opts((4, 4))), Error::NoClasses { .. }));
    // An empty class folder (only junk in it).
    write_image(&dir.join("cats/1.png"), 3, 3, 0);
    fs::create_dir_all(dir.join("dogs/sub")).unwrap();
    fs::write(dir.join("dogs/sub/readme.txt"), b"x").unwrap();
    let err = load_err(&dir, &opts((4, 4)));
    assert!(matches!(&err, Error::EmptyClass { dir } if dir.ends_with("dogs")), "{err}");
    // A missing folder.
    assert!(folder::load(dir.join("nope"), &opts((4, 4))).is_err());
    // A file, not a folder.
    assert!(matches!(load_err(&dir.join("x.png"), &opts((4, 4))), Error::MissingDir { .. }));
    // A class name that is not a folder.
    let o = FolderOptions { class_names: Some(vec!["cats".into(), "birds".into()]), ..opts((4, 4)) };
    assert!(load_err(&dir, &o).to_string().contains("birds"));
    // Labels without classes: every image below the folder.
    let o = FolderOptions { labels: Labels::None, ..opts((4, 4)) };
    let ds = folder::load(&dir, &o).unwrap();
    assert_eq!((ds.len(), ds.labels()), (2, None));
}

#[test]
fn argument_errors() {
    let dir = temp_dir("args");
    for (i, class) in ["a", "b", "c"].iter().enumerate() {
        for k in 0..4 {
            write_image(&dir.join(format!("{class}/{k}.png")), 3, 3, (i * 4 + k) as u32);
        }
    }
    let bad = |o: FolderOptions| -> String { load_err(&dir, &o).to_string() };
    assert!(bad(FolderOptions { label_mode: LabelMode::Binary, ..opts((4, 4)) }).contains("exactly 2"));
    assert!(bad(opts((0, 4))).contains("zero"));
    assert!(bad(FolderOptions { seed: Some(1 << 32), shuffle: true, ..opts((4, 4)) }).contains("2^32"));
    assert!(bad(FolderOptions { validation_split: Some(0.2), ..opts((4, 4)) }).contains("load_subset"));
    let split = |s: f64, seed: Option<u64>| {
        let o = FolderOptions { validation_split: Some(s), seed, shuffle: true, ..opts((4, 4)) };
        folder::load_both(&dir, &o).map(|(t, v)| (t.len(), v.len()))
    };
    assert_eq!(split(0.25, Some(3)).unwrap(), (9, 3));
    assert!(split(0.25, None).unwrap_err().to_string().contains("seed"));
    assert!(split(0.05, Some(3)).unwrap_err().to_string().contains("0 for validation"));
    assert!(split(1.0, Some(3)).is_err());
    // Memory limits, checked before anything is decoded or allocated.
    let o = FolderOptions {
        limits: FolderLimits { max_dataset_bytes: 12 * 100 * 100 * 3 - 1, ..FolderLimits::default() },
        ..opts((100, 100))
    };
    assert!(matches!(load_err(&dir, &o), Error::DatasetTooLarge { images: 12, bytes: 360_000, .. }));
    let o = FolderOptions { image_size: (usize::MAX / 2, 3), ..opts((4, 4)) };
    assert!(matches!(load_err(&dir, &o), Error::DatasetTooLarge { bytes: u64::MAX, .. }));
    let o = FolderOptions { limits: FolderLimits { max_file_bytes: 10, ..FolderLimits::default() }, ..opts((4, 4)) };
    assert!(load_err(&dir, &o).to_string().contains("more than the 10 bytes"));
}

#[cfg(unix)]
#[test]
fn a_fifo_with_an_image_name_is_refused_not_read() {
    let dir = temp_dir("fifo");
    write_image(&dir.join("a/good.png"), 3, 3, 0);
    let fifo = dir.join("a/pipe.png");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !status.map(|s| s.success()).unwrap_or(false) {
        eprintln!("mkfifo unavailable: skipped");
        return;
    }
    let err = load_err(&dir, &opts((4, 4)));
    assert!(err.to_string().contains("pipe.png") && err.to_string().contains("not a regular file"), "{err}");
}

// ---------------------------------------------------------------- cache

fn cache_file(cache: &Path) -> PathBuf {
    let files: Vec<_> = fs::read_dir(cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn cache_hit_miss_and_corruption() {
    let dir = temp_dir("cache");
    let cache = temp_dir("cache-store");
    for k in 0..5 {
        write_image(&dir.join(format!("{}/{k}.png", ["x", "y"][k % 2])), 10 + k as u32, 7, k as u32);
    }
    let o = FolderOptions { cache_dir: Some(cache.clone()), ..opts((6, 5)) };
    let decoded = folder::load(&dir, &o).unwrap();
    assert_eq!(decoded.cache_status(), &CacheStatus::Written);
    let pixels =
        |ds: &folder::ImageDataset| -> Vec<u8> { (0..ds.len()).flat_map(|i| ds.image(i).unwrap().to_vec()).collect() };
    let uncached = folder::load(&dir, &opts((6, 5))).unwrap();
    assert_eq!(uncached.cache_status(), &CacheStatus::Off);
    assert_eq!(pixels(&decoded), pixels(&uncached));
    let hit = folder::load(&dir, &o).unwrap();
    assert_eq!(hit.cache_status(), &CacheStatus::Hit);
    assert_eq!(pixels(&hit), pixels(&uncached));
    assert_eq!(hit.labels(), uncached.labels());
    let file = cache_file(&cache);
    let good = fs::read(&file).unwrap();
    let rebuilt = |expect: &str| {
        let ds = folder::load(&dir, &o).unwrap();
        match ds.cache_status() {
            CacheStatus::Rebuilt(reason) => assert!(reason.contains(expect), "{reason}"),
            other => panic!("expected a rebuild ({expect}), got {other:?}"),
        }
        assert_eq!(pixels(&ds), pixels(&uncached));
        assert_eq!(fs::read(&file).unwrap(), good, "the rebuilt cache is the good one");
    };
    // A flipped pixel byte, a truncated file, a bad magic, wrong dimensions.
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x40;
    fs::write(&file, &bad).unwrap();
    rebuilt("checksum");
    fs::write(&file, &good[..good.len() - 1]).unwrap();
    rebuilt("bytes");
    fs::write(&file, &good[..10]).unwrap();
    rebuilt("bytes");
    let mut bad = good.clone();
    bad[0] = b'X';
    fs::write(&file, &bad).unwrap();
    rebuilt("magic");
    let mut bad = good.clone();
    bad[40] ^= 1; // image count
    fs::write(&file, &bad).unwrap();
    rebuilt("holds");
    // A changed image (new content and mtime): the key no longer matches.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_image(&dir.join("x/0.png"), 10, 7, 99);
    let ds = folder::load(&dir, &o).unwrap();
    assert!(matches!(ds.cache_status(), CacheStatus::Rebuilt(r) if r.contains("changed")));
    assert_ne!(pixels(&ds), pixels(&uncached));
    assert_eq!(folder::load(&dir, &o).unwrap().cache_status(), &CacheStatus::Hit);
    // Another setting gets its own cache file.
    let o2 = FolderOptions { color_mode: ColorMode::Grayscale, ..o.clone() };
    assert_eq!(folder::load(&dir, &o2).unwrap().cache_status(), &CacheStatus::Written);
    assert_eq!(fs::read_dir(&cache).unwrap().count(), 2);
    // A cache path that is not a regular file is an error, not replaced.
    fs::remove_file(&file).unwrap();
    fs::create_dir(&file).unwrap();
    assert!(folder::load(&dir, &o).unwrap_err().to_string().contains("not a regular file"));
}

// ---------------------------------------------------------------- batches and layouts

#[test]
fn batches_are_f32_nhwc_in_every_label_mode() {
    let dir = temp_dir("batches");
    for k in 0..7 {
        write_image(&dir.join(format!("{}/{k}.png", ["neg", "pos"][k % 2])), 5, 4, k as u32);
    }
    for (mode, dims) in
        [(LabelMode::Int, vec![3]), (LabelMode::Binary, vec![3, 1]), (LabelMode::Categorical, vec![3, 2])]
    {
        let ds = folder::load(&dir, &FolderOptions { label_mode: mode, ..opts((4, 5)) }).unwrap();
        let mut it = ds.batches(3, Some(5)).unwrap().scale(0.5);
        assert_eq!(it.batches_per_epoch(), 3);
        let mut seen = Vec::new();
        while let Some(b) = it.next_batch() {
            assert_eq!(b.images.shape().dims()[1..], [4, 5, 3]);
            for (k, &i) in b.indices.iter().enumerate() {
                let got = &b.images.data()[k * 60..(k + 1) * 60];
                let want: Vec<f32> = ds.image(i).unwrap().iter().map(|&v| f32::from(v) * 0.5).collect();
                assert_eq!(got, &want[..]);
                let label = ds.labels().unwrap()[i];
                assert_eq!(b.labels_sparse[k], label);
                let y = b.labels.unwrap();
                match mode {
                    LabelMode::Categorical => assert_eq!(y.data()[k * 2 + label as usize], 1.0),
                    _ => assert_eq!(y.data()[k], label as f32),
                }
            }
            if b.len() == 3 {
                assert_eq!(b.labels.unwrap().shape().dims(), &dims[..]);
            }
            seen.extend_from_slice(b.indices);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }
    let ds = folder::load(&dir, &opts((4, 5))).unwrap();
    let x = ds.images_f32(None).unwrap();
    assert_eq!(x.shape().dims(), &[7, 4, 5, 3]);
    assert_eq!(x.data()[0], f32::from(ds.image(0).unwrap()[0]));
    assert_eq!(ds.labels_f32().unwrap().shape().dims(), &[7]);
}

#[test]
fn subsets_share_the_decode_and_never_overlap() {
    let dir = temp_dir("subsets");
    for k in 0..10 {
        write_image(&dir.join(format!("{}/{k}.png", ["a", "b"][k % 2])), 4, 4, k as u32);
    }
    let o = FolderOptions { validation_split: Some(0.3), seed: Some(1337), shuffle: true, ..opts((4, 4)) };
    let (train, val) = folder::load_both(&dir, &o).unwrap();
    assert_eq!((train.len(), val.len()), (7, 3));
    let t = folder::load_subset(&dir, &o, Subset::Training).unwrap();
    let v = folder::load_subset(&dir, &o, Subset::Validation).unwrap();
    assert_eq!(t.file_paths(), train.file_paths());
    assert_eq!(v.file_paths(), val.file_paths());
    let lists = folder::file_lists(&dir, &o).unwrap();
    let paths: Vec<_> = lists.validation.iter().map(|f| f.path.clone()).collect();
    assert_eq!(val.file_paths(), &paths[..]);
    assert!(train.file_paths().iter().all(|p| !val.file_paths().contains(p)));
    // Labels follow their files through the shuffle.
    for (p, &l) in train.file_paths().iter().zip(train.labels().unwrap()) {
        assert!(p.starts_with(dir.join(["a", "b"][l as usize])));
    }
}

#[test]
fn the_books_train_validation_test_layout_in_one_call() {
    let root = temp_dir("book");
    for (split, n) in [("train", 6), ("validation", 4), ("test", 2)] {
        for k in 0..n {
            write_image(&root.join(format!("{split}/{}/{k}.jpg", ["cats", "dogs"][k % 2])), 20, 15, k as u32);
        }
    }
    let o = FolderOptions { label_mode: LabelMode::Binary, ..opts((8, 8)) };
    let s = folder::load_train_validation_test(&root, &o).unwrap();
    assert_eq!(s.train.len(), 6);
    assert_eq!(s.validation.as_ref().unwrap().len(), 4);
    assert_eq!(s.test.as_ref().unwrap().len(), 2);
    assert_eq!(s.test.as_ref().unwrap().class_names(), ["cats", "dogs"]);
    fs::remove_dir_all(root.join("test")).unwrap();
    fs::create_dir_all(root.join("validation/birds")).unwrap();
    write_image(&root.join("validation/birds/0.png"), 3, 3, 0);
    let err = folder::load_train_validation_test(&root, &o).unwrap_err();
    assert!(err.to_string().contains("differ from train"), "{err}");
    fs::remove_dir_all(root.join("validation/birds")).unwrap();
    let s = folder::load_train_validation_test(&root, &o).unwrap();
    assert!(s.test.is_none());
    assert!(folder::load_train_validation_test(root.join("train"), &o).is_err());
}

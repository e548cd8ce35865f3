//! Every malformed input is an `Err` that names the file and the problem: no
//! panic, no huge allocation. Each test writes small files into a fresh temp dir.

mod common;

use common::{gzip, npy_bytes, temp_dir, zip_bytes, TempDir};
use convnet_datasets::idx::{encode_images, encode_labels, IdxImages, IdxLabels};
use convnet_datasets::{Error, Mnist};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn images(n: usize, side: usize) -> Vec<u8> {
    let pixels: Vec<u8> = (0..n * side * side).map(|i| (i * 7) as u8).collect();
    encode_images(n, side, side, &pixels).unwrap()
}

fn labels(n: usize) -> Vec<u8> {
    encode_labels(&(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>()).unwrap()
}

/// Writes a complete 28x28 MNIST-format dir with `n_train`/`n_test` examples.
fn mnist_dir(tag: &str, n_train: usize, n_test: usize, gz: bool) -> TempDir {
    let dir = temp_dir(tag);
    let ext = if gz { ".gz" } else { "" };
    let enc = |b: Vec<u8>| if gz { gzip(&b) } else { b };
    write(&dir, &format!("train-images-idx3-ubyte{ext}"), &enc(images(n_train, 28)));
    write(&dir, &format!("train-labels-idx1-ubyte{ext}"), &enc(labels(n_train)));
    write(&dir, &format!("t10k-images-idx3-ubyte{ext}"), &enc(images(n_test, 28)));
    write(&dir, &format!("t10k-labels-idx1-ubyte{ext}"), &enc(labels(n_test)));
    dir
}

/// Asserts `err`'s message starts with the file's path.
fn names(err: &Error, path: &Path) {
    let msg = err.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "error does not name {}: {msg}", path.display());
}

#[test]
fn well_formed_small_dirs_load_raw_and_gz() {
    for gz in [false, true] {
        let dir = mnist_dir("ok", 12, 5, gz);
        let m = Mnist::load(&dir).unwrap();
        assert_eq!((m.train.len(), m.test.len()), (12, 5));
        assert_eq!(m.train.labels()[..3], [0, 1, 2]);
        assert_eq!(m.test.image(1).unwrap(), &images(5, 28)[16 + 784..16 + 2 * 784]);
    }
}

#[test]
fn wrong_magic() {
    let dir = temp_dir("magic");
    let path = write(&dir, "x", &labels(3)); // a label file where images are expected
    let err = IdxImages::open(&path).unwrap_err();
    assert!(matches!(err, Error::BadMagic { found: 0x801, expected: 0x803, .. }), "{err}");
    names(&err, &path);
    let path = write(&dir, "y", b"GIF89a and so on, long enough");
    let err = IdxLabels::open(&path).unwrap_err();
    assert!(matches!(err, Error::BadMagic { expected: 0x801, .. }), "{err}");
    names(&err, &path);
    // Same through gzip.
    let path = write(&dir, "z.gz", &gzip(&images(2, 3)));
    let err = IdxLabels::open(&path).unwrap_err();
    assert!(matches!(err, Error::BadMagic { found: 0x803, .. }), "{err}");
}

#[test]
fn wrong_element_type() {
    let dir = temp_dir("type");
    let mut bytes = images(1, 2);
    bytes[2] = 0x0D; // float
    let path = write(&dir, "floats", &bytes);
    let err = IdxImages::open(&path).unwrap_err();
    assert!(matches!(err, Error::WrongElementType { found: 0x0D, name: "float", .. }), "{err}");
    names(&err, &path);
    let path = write(&dir, "floats.gz", &gzip(&bytes));
    assert!(matches!(IdxImages::open(&path).unwrap_err(), Error::WrongElementType { .. }));
}

#[test]
fn truncated_header() {
    let dir = temp_dir("header");
    for len in [0, 3, 4, 10, 15] {
        let path = write(&dir, &format!("h{len}"), &images(1, 2)[..len]);
        let err = IdxImages::open(&path).unwrap_err();
        assert!(matches!(err, Error::TruncatedHeader { need: 16, .. }), "{len}: {err}");
        names(&err, &path);
        let path = write(&dir, &format!("h{len}.gz"), &gzip(&images(1, 2)[..len]));
        let err = IdxImages::open(&path).unwrap_err();
        assert!(matches!(err, Error::TruncatedHeader { need: 16, .. }), "{len}: {err}");
    }
    let path = write(&dir, "labels", &labels(4)[..6]);
    assert!(matches!(IdxLabels::open(&path).unwrap_err(), Error::TruncatedHeader { len: 6, need: 8, .. }));
}

#[test]
fn truncated_data() {
    let dir = temp_dir("data");
    let full = images(3, 4);
    let path = write(&dir, "short", &full[..full.len() - 5]);
    let err = IdxImages::open(&path).unwrap_err();
    assert!(matches!(err, Error::TruncatedData { expected: 48, actual: 43, .. }), "{err}");
    names(&err, &path);
    let path = write(&dir, "short.gz", &gzip(&full[..full.len() - 5]));
    assert!(matches!(IdxImages::open(&path).unwrap_err(), Error::TruncatedData { expected: 48, actual: 43, .. }));
    // A gzip stream cut short is an error too (corrupt stream or short data).
    let gz = gzip(&full);
    let path = write(&dir, "cut.gz", &gz[..gz.len() / 2]);
    let err = IdxImages::open(&path).unwrap_err();
    assert!(matches!(err, Error::Gzip { .. } | Error::TruncatedData { .. }), "{err}");
    names(&err, &path);
}

#[test]
fn trailing_data() {
    let dir = temp_dir("trailing");
    let mut bytes = labels(4);
    bytes.extend_from_slice(&[1, 2, 3]);
    let path = write(&dir, "long", &bytes);
    let err = IdxLabels::open(&path).unwrap_err();
    assert!(matches!(err, Error::TrailingData { expected: 4, extra: 3, .. }), "{err}");
    names(&err, &path);
    let path = write(&dir, "long.gz", &gzip(&bytes));
    assert!(matches!(IdxLabels::open(&path).unwrap_err(), Error::TrailingData { expected: 4, extra: 3, .. }));
}

#[test]
fn dimensions_that_overflow_or_exceed_the_file() {
    let dir = temp_dir("dims");
    let mut header = vec![0, 0, 8, 3];
    for d in [u32::MAX, u32::MAX, u32::MAX] {
        header.extend_from_slice(&d.to_be_bytes());
    }
    let path = write(&dir, "overflow", &header);
    let err = IdxImages::open(&path).unwrap_err();
    assert!(matches!(err, Error::DimensionOverflow { .. }), "{err}");
    names(&err, &path);
    // 60000 x 28 x 28 claimed, 10 bytes present: no 47 MB allocation, an error.
    let mut claim = vec![0, 0, 8, 3];
    for d in [60_000u32, 28, 28] {
        claim.extend_from_slice(&d.to_be_bytes());
    }
    claim.extend_from_slice(&[0; 10]);
    let path = write(&dir, "exceeds", &claim);
    assert!(matches!(
        IdxImages::open(&path).unwrap_err(),
        Error::TruncatedData { expected: 47_040_000, actual: 10, .. }
    ));
    // Through gzip: 4 G x 4 G x 64 K would need 2^80 bytes; a huge but
    // non-overflowing claim is refused before allocating anything.
    let path = write(&dir, "overflow.gz", &gzip(&header));
    assert!(matches!(IdxImages::open(&path).unwrap_err(), Error::DimensionOverflow { .. }));
    let mut huge = vec![0, 0, 8, 3];
    for d in [1_000_000u32, 1000, 1000] {
        huge.extend_from_slice(&d.to_be_bytes());
    }
    let path = write(&dir, "huge.gz", &gzip(&huge));
    let err = IdxImages::open(&path).unwrap_err();
    assert!(matches!(err, Error::Implausible { claimed: 1_000_000_000_016, .. }), "{err}");
    names(&err, &path);
}

#[test]
fn corrupt_gzip() {
    let dir = temp_dir("gzip");
    let mut gz = gzip(&images(2, 5));
    let mid = gz.len() / 2;
    for b in &mut gz[12..mid] {
        *b ^= 0x5A;
    }
    let path = write(&dir, "bad.gz", &gz);
    let err = IdxImages::open(&path).unwrap_err();
    assert!(matches!(err, Error::Gzip { .. } | Error::BadMagic { .. } | Error::TruncatedHeader { .. }), "{err}");
    names(&err, &path);
}

#[test]
fn image_and_label_counts_disagree() {
    let dir = mnist_dir("count", 6, 3, false);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels(5)).unwrap();
    let err = Mnist::load(&dir).unwrap_err();
    assert!(matches!(err, Error::CountMismatch { n_images: 6, n_labels: 5, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("train-images-idx3-ubyte") && msg.contains("train-labels-idx1-ubyte"), "{msg}");
}

#[test]
fn label_out_of_range() {
    let dir = mnist_dir("label", 4, 3, true);
    let bad = encode_labels(&[1, 2, 10]).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gzip(&bad)).unwrap();
    let err = Mnist::load(&dir).unwrap_err();
    assert!(matches!(err, Error::BadLabel { index: 2, label: 10, .. }), "{err}");
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte.gz"), "{err}");
}

#[test]
fn images_not_28x28() {
    let dir = mnist_dir("size", 2, 2, false);
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images(2, 27)).unwrap();
    let err = Mnist::load(&dir).unwrap_err();
    assert!(matches!(err, Error::WrongImageSize { rows: 27, cols: 27, .. }), "{err}");
}

#[test]
fn missing_directory_and_files() {
    let dir = temp_dir("missing").join("nope");
    let err = Mnist::load(&dir).unwrap_err();
    assert!(matches!(err, Error::MissingDir { .. }), "{err}");
    names(&err, &dir);
    let dir = mnist_dir("missing-file", 2, 2, true);
    std::fs::remove_file(dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let err = Mnist::load(&dir).unwrap_err();
    assert!(matches!(err, Error::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("t10k-images-idx3-ubyte"), "{err}");
    let err = IdxImages::open(dir.join("absent")).unwrap_err();
    assert!(matches!(err, Error::MissingFile { .. }), "{err}");
}

fn npz_arrays(n: usize, m: usize) -> Vec<(&'static str, Vec<u8>)> {
    let px = |n: usize| (0..n * 784).map(|i| i as u8).collect::<Vec<_>>();
    let lb = |n: usize| (0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>();
    vec![
        ("x_train.npy", npy_bytes("|u1", false, &format!("({n}, 28, 28)"), &px(n))),
        ("y_train.npy", npy_bytes("|u1", false, &format!("({n},)"), &lb(n))),
        ("x_test.npy", npy_bytes("|u1", false, &format!("({m}, 28, 28)"), &px(m))),
        ("y_test.npy", npy_bytes("|u1", false, &format!("({m},)"), &lb(m))),
    ]
}

fn npz_err(tag: &str, entries: &[(&str, Vec<u8>)], deflate: bool) -> (Error, PathBuf) {
    let dir = temp_dir(tag);
    let path = write(&dir, "mnist.npz", &zip_bytes(entries, deflate));
    let err = Mnist::load(&dir).unwrap_err();
    names(&err, &path);
    (err, path)
}

#[test]
fn npz_well_formed_loads_stored_and_deflated() {
    for deflate in [false, true] {
        let dir = temp_dir("npz-ok");
        let path = write(&dir, "mnist.npz", &zip_bytes(&npz_arrays(3, 2), deflate));
        let from_dir = Mnist::load(&dir).unwrap();
        let from_file = Mnist::load(&path).unwrap();
        assert_eq!((from_dir.train.len(), from_dir.test.len()), (3, 2));
        assert_eq!(from_dir.train.pixels(), from_file.train.pixels());
        assert_eq!(from_dir.test.labels(), &[0, 1]);
    }
}

#[test]
fn npz_missing_key() {
    let mut entries = npz_arrays(2, 1);
    entries.remove(3);
    let (err, _) = npz_err("npz-key", &entries, true);
    assert!(matches!(err, Error::NpzMissingKey { key: "y_test", .. }), "{err}");
}

#[test]
fn npz_wrong_dtype() {
    let mut entries = npz_arrays(2, 1);
    entries[0].1 = npy_bytes("<f4", false, "(2, 28, 28)", &[0; 2 * 784 * 4]);
    let (err, _) = npz_err("npz-dtype", &entries, false);
    assert!(matches!(err, Error::Npy { .. }), "{err}");
    assert!(err.to_string().contains("x_train.npy: dtype '<f4' is not uint8"), "{err}");
}

#[test]
fn npz_wrong_shape_and_fortran_order() {
    let mut entries = npz_arrays(2, 1);
    entries[2].1 = npy_bytes("|u1", false, "(1, 784)", &[0; 784]);
    let (err, _) = npz_err("npz-shape", &entries, true);
    assert!(err.to_string().contains("x_test.npy: shape [1, 784] is not (n, 28, 28)"), "{err}");
    let mut entries = npz_arrays(2, 1);
    entries[0].1 = npy_bytes("|u1", true, "(2, 28, 28)", &[0; 2 * 784]);
    let (err, _) = npz_err("npz-fortran", &entries, false);
    assert!(err.to_string().contains("Fortran"), "{err}");
}

#[test]
fn npz_counts_labels_and_truncation() {
    let mut entries = npz_arrays(3, 2);
    entries[1].1 = npy_bytes("|u1", false, "(2,)", &[1, 2]);
    let (err, _) = npz_err("npz-count", &entries, false);
    assert!(matches!(err, Error::CountMismatch { n_images: 3, n_labels: 2, .. }), "{err}");
    let mut entries = npz_arrays(3, 2);
    entries[3].1 = npy_bytes("|u1", false, "(2,)", &[1, 200]);
    let (err, _) = npz_err("npz-label", &entries, true);
    assert!(matches!(err, Error::BadLabel { index: 1, label: 200, .. }), "{err}");
    // The header promises 3 images, the entry holds 2.
    let mut entries = npz_arrays(3, 2);
    let x = entries[0].1.clone();
    entries[0].1 = x[..x.len() - 784].to_vec();
    let (err, _) = npz_err("npz-trunc", &entries, true);
    assert!(matches!(err, Error::TruncatedData { expected: 2352, actual: 1568, .. }), "{err}");
    // A header dict that is not the three NumPy keys.
    let mut entries = npz_arrays(1, 1);
    entries[1].1 = npy_bytes("|u1", false, "(1,), 'extra': 1", &[1]);
    let (err, _) = npz_err("npz-dict", &entries, false);
    assert!(err.to_string().contains("unexpected key 'extra'"), "{err}");
    // Not an npy at all.
    let mut entries = npz_arrays(1, 1);
    entries[2].1 = b"PK definitely not numpy".to_vec();
    let (err, _) = npz_err("npz-magic", &entries, true);
    assert!(err.to_string().contains("not an .npy array"), "{err}");
}

#[test]
fn npz_not_a_zip() {
    let dir = temp_dir("npz-zip");
    let path = write(&dir, "mnist.npz", b"this is not a zip archive at all");
    let err = Mnist::load(&path).unwrap_err();
    assert!(matches!(err, Error::Zip { .. }), "{err}");
    names(&err, &path);
    let path = write(&dir, "empty.npz", b"");
    assert!(matches!(Mnist::load(&path).unwrap_err(), Error::Zip { .. }));
}

#[test]
fn npy_header_corner_cases() {
    use convnet_datasets::npy::{parse, parse_header};
    assert!(parse("v9.npy", b"\x93NUMPY\x09\x00\x10\x00")
        .unwrap_err()
        .to_string()
        .contains("unsupported .npy version 9"));
    assert!(parse_header("short.npy", b"\x93NUMPY\x01").is_err());
    // A v2 header claiming 4 GiB of dict is refused before reading it.
    let err = parse_header("big.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\xff").unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    // Shapes whose product overflows.
    let file = npy_bytes("|u1", false, "(4294967296, 4294967296, 4294967296)", &[]);
    assert!(parse("o.npy", &file).unwrap_err().to_string().contains("overflows"));
    let file = npy_bytes("|u1", false, "(99999999999999999999999,)", &[]);
    assert!(parse("o.npy", &file).unwrap_err().to_string().contains("too large"));
    // Versions 2 and 3: a u32 header length (v3 allows UTF-8 in the dict).
    for major in [2u8, 3] {
        let dict = b"{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }\n";
        let mut file = vec![0x93, b'N', b'U', b'M', b'P', b'Y', major, 0];
        file.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        file.extend_from_slice(dict);
        file.extend_from_slice(&[4, 5, 6]);
        let header = parse_header("v.npy", &file).unwrap();
        assert_eq!((header.version, header.len), ((major, 0), 12 + dict.len()));
        assert_eq!(parse("v.npy", &file).unwrap(), (vec![3], vec![4, 5, 6]));
    }
    // Scalars and 1-tuples, Python 2 longs.
    assert_eq!(parse("s.npy", &npy_bytes("|u1", false, "()", &[9])).unwrap(), (vec![], vec![9]));
    assert_eq!(parse("l.npy", &npy_bytes("|u1", false, "(2L,)", &[1, 2])).unwrap(), (vec![2], vec![1, 2]));
}

//! MNIST: finding it, checking it, loading it.
//!
//! [`Mnist::load`] reads any directory in MNIST's format: the four files named
//! as MNIST names them, each raw (memory-mapped) or gzip, or else a Keras
//! `mnist.npz`. It parses strictly and checks that images are 28x28, counts
//! agree and labels are digits, but does not compare digests, so any dataset in
//! the format loads.
//!
//! [`Mnist::load_default`] finds MNIST as Keras's `mnist.load_data()` does:
//! the directory `$CONVNET_DATA` names, else the copy shipped in the
//! repository's `data/mnist`, else the user's cache directory (where the
//! `download` feature fetches it on first use). It checks every file against
//! MNIST's known SHA-256 digests before use, hashing exactly the bytes it then
//! parses.

use crate::bytes::{map_file, Bytes};
use crate::dataset::check_labels;
use crate::idx::{IdxImages, IdxLabels};
use crate::npy::{entry_limit, read_array};
use crate::{Dataset, Error, Result};
use sha2::{Digest, Sha256};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// MNIST's image side (28 pixels).
pub const SIDE: usize = 28;
/// Examples in MNIST's training set.
pub const TRAIN_LEN: usize = 60_000;
/// Examples in MNIST's test set.
pub const TEST_LEN: usize = 10_000;
/// The environment variable that overrides where [`Mnist::load_default`] looks.
pub const DATA_ENV: &str = "CONVNET_DATA";
/// The name of a Keras MNIST archive inside a data directory.
pub const NPZ_NAME: &str = "mnist.npz";

/// The four MNIST files, in the order train images, train labels, test images, test labels.
pub const FILES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// SHA-256 of MNIST's four `.gz` files (as in `data/mnist/SHA256SUMS`), in [`FILES`] order.
pub const SHA256_GZ: [&str; 4] = [
    "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
];

/// SHA-256 of MNIST's four decompressed files, in [`FILES`] order (computed from
/// the `.gz` files above, whose decompressed MD5s match `data/mnist/MD5SUMS.raw`).
pub const SHA256_RAW: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];

/// The MNIST training and test sets (or any dataset in MNIST's format).
///
/// ```no_run
/// use convnet_datasets::Mnist;
/// let mnist = Mnist::load_default()?;
/// assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
/// let x = mnist.train.images_f32(); // [60000, 28, 28, 1], values in [0, 1]
/// let y = mnist.train.labels_onehot(); // [60000, 10]
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The training set (60,000 examples for MNIST).
    pub train: Dataset,
    /// The test set (10,000 examples for MNIST).
    pub test: Dataset,
}

/// `dir/name` or else `dir/name.gz`, if one exists; an entry that exists
/// but is not a regular file (a FIFO, a device, a directory) is an error
/// naming it, not "missing".
pub(crate) fn find_file(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() => return Ok(Some(candidate)),
            Ok(m) => {
                return Err(Error::WrongFileType {
                    path: candidate.display().to_string(),
                    found: crate::file_kind(&m.file_type()),
                    expected: "a regular file",
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { file: candidate.display().to_string(), source: e }),
        }
    }
    Ok(None)
}

/// What `path` is: `Ok(true)` for a directory, `Ok(false)` for a regular
/// file; `MissingDir` when nothing is there, `WrongFileType` for a FIFO or a
/// device, `Io` for anything else the system reports (a symbolic-link loop).
fn dir_or_file(path: &Path, shown: String) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(m) if m.is_file() => Ok(false),
        Ok(m) => Err(Error::WrongFileType {
            path: shown,
            found: crate::file_kind(&m.file_type()),
            expected: "a directory or an .npz file",
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::MissingDir { path: shown }),
        Err(e) => Err(Error::Io { file: shown, source: e }),
    }
}

fn check_side(images: &IdxImages) -> Result<()> {
    if images.rows() != SIDE || images.cols() != SIDE {
        return Err(Error::WrongImageSize {
            file: images.name().to_string(),
            rows: images.rows(),
            cols: images.cols(),
        });
    }
    Ok(())
}

/// Lower-case hexadecimal, as `sha256sum` prints digests.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Mnist {
    /// Loads a directory holding MNIST-format data, parsed strictly (no digest
    /// check): the four files named as MNIST names them (raw files preferred to
    /// `.gz` where both exist), or else `mnist.npz`. `path` may also be the
    /// `.npz` file itself (any file is read as an npz).
    ///
    /// ```
    /// use convnet_datasets::{Error, Mnist};
    /// let err = Mnist::load("no/such/dir").unwrap_err();
    /// assert!(matches!(err, Error::MissingDir { .. }));
    /// assert_eq!(err.to_string(), "no/such/dir: no such directory");
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Mnist> {
        let path = path.as_ref();
        if !dir_or_file(path, path.display().to_string())? {
            return Mnist::load_npz(path);
        }
        let found: Vec<Option<PathBuf>> = FILES.iter().map(|name| find_file(path, name)).collect::<Result<_>>()?;
        if let [Some(a), Some(b), Some(c), Some(d)] = &found[..] {
            return Mnist::from_idx_files([a, b, c, d], false);
        }
        let npz = path.join(NPZ_NAME);
        if npz.exists() {
            return Mnist::load_npz(&npz); // a FIFO or device there is refused by name
        }
        let missing = FILES.iter().zip(&found).find(|(_, f)| f.is_none()).map(|(n, _)| *n).unwrap_or(FILES[0]);
        Err(Error::MissingFile {
            path: path.join(missing).display().to_string(),
            hint: format!(" (nor {missing}.gz, nor {NPZ_NAME})"),
        })
    }

    /// The directory [`Mnist::load_default`] reads, first found of:
    ///
    /// 1. `$CONVNET_DATA` ([`DATA_ENV`]) if set: it must be a directory (an
    ///    explicit choice is never passed over);
    /// 2. `data/mnist` under the current directory, then `data/mnist` in this
    ///    repository (found from the crate's build-time location): the copy
    ///    the repository ships, so a checkout works offline;
    /// 3. the user cache directory ([`Mnist::cache_dir`]) if it exists, or,
    ///    with the `download` feature, even if it does not yet (it is where
    ///    the files are fetched to).
    ///
    /// None of these is an [`Error::NoDefaultData`] listing the places tried.
    pub fn default_dir() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os(DATA_ENV).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            if !dir_or_file(&dir, format!("{} (from {DATA_ENV})", dir.display()))? {
                return Err(Error::WrongFileType {
                    path: format!("{} (from {DATA_ENV})", dir.display()),
                    found: "a regular file",
                    expected: "a directory",
                });
            }
            return Ok(dir);
        }
        let here = PathBuf::from("data/mnist");
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
        for dir in [&here, &checkout] {
            if dir.is_dir() {
                return Ok(dir.clone());
            }
        }
        let cache = Mnist::cache_dir();
        if let Some(cache) = &cache {
            if cache.is_dir() || cfg!(feature = "download") {
                return Ok(cache.clone());
            }
        }
        let cache = match cache {
            Some(c) => format!("{} (no copy there)", c.display()),
            None => "no user cache directory (HOME unset)".to_string(),
        };
        Err(Error::NoDefaultData {
            looked: format!("${DATA_ENV} (unset), {}, {}, {cache}", here.display(), checkout.display()),
        })
    }

    /// The user cache directory for MNIST: `$XDG_CACHE_HOME/convnet/mnist`
    /// or `~/.cache/convnet/mnist` on Linux, `~/Library/Caches/convnet/mnist`
    /// on macOS, `%LOCALAPPDATA%\convnet\mnist` on Windows; `None` when the
    /// environment names no home or cache directory.
    pub fn cache_dir() -> Option<PathBuf> {
        crate::cache::mnist_cache_dir()
    }

    /// Loads the default MNIST copy ([`Mnist::default_dir`]) after checking each
    /// file against MNIST's SHA-256 ([`SHA256_GZ`] for `.gz` files, [`SHA256_RAW`]
    /// for raw ones); a file that differs is an [`Error::Digest`].
    ///
    /// With the `download` feature, files the directory lacks are first
    /// fetched into it from `Mnist::mirrors()` (see `Mnist::download`), as
    /// Keras's `mnist.load_data()` downloads on first use; without it, a
    /// missing file is an [`Error::MissingFile`].
    pub fn load_default() -> Result<Mnist> {
        let dir = Mnist::default_dir()?;
        #[cfg(feature = "download")]
        if FILES.iter().any(|name| !matches!(find_file(&dir, name), Ok(Some(_)))) {
            Mnist::download(&dir, &Mnist::mirrors())?;
        }
        let mut paths = Vec::with_capacity(4);
        for name in FILES {
            let path = find_file(&dir, name)?.ok_or_else(|| Error::MissingFile {
                path: dir.join(format!("{name}.gz")).display().to_string(),
                hint: if cfg!(feature = "download") {
                    " (the default MNIST copy needs all four files)".to_string()
                } else {
                    " (the default MNIST copy needs all four files; the `download` feature of \
                     convnet-datasets fetches them)"
                        .to_string()
                },
            })?;
            paths.push(path);
        }
        Mnist::from_idx_files([&paths[0], &paths[1], &paths[2], &paths[3]], true)
    }

    /// Reads the four IDX files; with `verify`, checks each against MNIST's digest first.
    fn from_idx_files(paths: [&PathBuf; 4], verify: bool) -> Result<Mnist> {
        let mut sources = Vec::with_capacity(4);
        for (i, path) in paths.iter().enumerate() {
            let bytes = map_file(path)?;
            let name = path.display().to_string();
            if verify {
                let gz = crate::idx::is_gzip(&bytes);
                let expected = if gz { SHA256_GZ[i] } else { SHA256_RAW[i] };
                let found = hex(&Sha256::digest(&*bytes));
                if found != expected {
                    return Err(Error::Digest { file: name, expected, found });
                }
            }
            sources.push((name, bytes));
        }
        let mut it = sources.into_iter();
        let mut next = || it.next().expect("four sources");
        let split = |images: (String, Bytes), labels: (String, Bytes)| -> Result<Dataset> {
            let images = IdxImages::from_storage(&images.0, images.1)?;
            let labels = IdxLabels::from_storage(&labels.0, labels.1)?;
            check_side(&images)?;
            Dataset::new(&images, &labels)
        };
        let train = split(next(), next())?;
        let test = split(next(), next())?;
        Ok(Mnist { train, test })
    }

    /// Loads a Keras `mnist.npz` (arrays `x_train`, `y_train`, `x_test`,
    /// `y_test`, `uint8`, C order; entries stored or deflated).
    pub fn load_npz(path: impl AsRef<Path>) -> Result<Mnist> {
        let path = path.as_ref();
        let bytes = map_file(path)?;
        Mnist::from_npz_bytes(&path.display().to_string(), &bytes)
    }

    /// Parses a Keras MNIST `.npz` held in memory; `name` is used in errors.
    ///
    /// ```
    /// use convnet_datasets::{Error, Mnist};
    /// let err = Mnist::from_npz_bytes("junk.npz", b"not a zip").unwrap_err();
    /// assert!(matches!(err, Error::Zip { .. }));
    /// ```
    pub fn from_npz_bytes(name: &str, bytes: &[u8]) -> Result<Mnist> {
        let zip_err = |e: zip::result::ZipError| Error::Zip { file: name.to_string(), message: e.to_string() };
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_err)?;
        let mut read = |key: &'static str| -> Result<(String, Vec<usize>, Vec<u8>)> {
            let entry_name = [format!("{key}.npy"), key.to_string()]
                .into_iter()
                .find(|n| archive.index_for_name(n).is_some())
                .ok_or(Error::NpzMissingKey { file: name.to_string(), key })?;
            let mut entry = archive.by_name(&entry_name).map_err(zip_err)?;
            let file = format!("{name}: {entry_name}");
            if entry.compressed_size() > bytes.len() as u64 {
                return Err(Error::Zip {
                    file: name.to_string(),
                    message: format!("{entry_name} claims {} compressed bytes", entry.compressed_size()),
                });
            }
            let limit = entry_limit(entry.compression(), entry.compressed_size());
            let declared = entry.size();
            let (header, data) = read_array(&file, &mut entry, declared, limit)?;
            Ok((file, header.shape, data))
        };
        let x_train = read("x_train")?;
        let y_train = read("y_train")?;
        let x_test = read("x_test")?;
        let y_test = read("y_test")?;
        Ok(Mnist { train: npz_dataset(x_train, y_train)?, test: npz_dataset(x_test, y_test)? })
    }
}

/// Pairs an images array `(n, 28, 28)` with a labels array `(n,)`.
fn npz_dataset(x: (String, Vec<usize>, Vec<u8>), y: (String, Vec<usize>, Vec<u8>)) -> Result<Dataset> {
    let (x_file, x_shape, pixels) = x;
    let (y_file, y_shape, labels) = y;
    let n = match x_shape[..] {
        [n, SIDE, SIDE] => n,
        _ => {
            return Err(Error::Npy { file: x_file, problem: format!("shape {x_shape:?} is not (n, 28, 28)") });
        }
    };
    let [m] = y_shape[..] else {
        return Err(Error::Npy { file: y_file, problem: format!("shape {y_shape:?} is not (n,)") });
    };
    if n != m {
        return Err(Error::CountMismatch { images: x_file, n_images: n, labels: y_file, n_labels: m });
    }
    check_labels(&y_file, &labels)?;
    Dataset::from_vecs(SIDE, SIDE, pixels, labels)
}

impl Mnist {
    /// Writes the four arrays as a Keras-style `.npz` (`x_train`, `y_train`,
    /// `x_test`, `y_test`, `uint8`), stored like `np.savez` or deflated like
    /// `np.savez_compressed`. The file is written atomically: to a temporary
    /// name beside `path`, synced, then renamed over it.
    ///
    /// ```
    /// use convnet_datasets::{Dataset, Mnist};
    /// let ds = Dataset::from_vecs(28, 28, vec![7; 2 * 784], vec![1, 2])?;
    /// let mnist = Mnist { train: ds.clone(), test: ds.take(1) };
    /// let path = std::env::temp_dir().join(format!("doc-mnist-{}.npz", std::process::id()));
    /// mnist.write_npz(&path, true)?;
    /// let back = Mnist::load(&path)?;
    /// assert_eq!(back.test.labels(), &[1]);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), convnet_datasets::Error>(())
    /// ```
    pub fn write_npz(&self, path: impl AsRef<Path>, compressed: bool) -> Result<()> {
        use std::io::Write;
        let path = path.as_ref();
        let io = |source: std::io::Error| Error::Io { file: path.display().to_string(), source };
        let zip_err =
            |e: zip::result::ZipError| Error::Zip { file: path.display().to_string(), message: e.to_string() };
        let tmp = path.with_extension("npz.tmp");
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let method = if compressed { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let options = zip::write::SimpleFileOptions::default().compression_method(method).large_file(true);
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let (tr, te) = (&self.train, &self.test);
        let arrays: [(&str, Vec<usize>, &[u8]); 4] = [
            ("x_train.npy", vec![tr.len(), tr.rows(), tr.cols()], tr.pixels()),
            ("y_train.npy", vec![tr.len()], tr.labels()),
            ("x_test.npy", vec![te.len(), te.rows(), te.cols()], te.pixels()),
            ("y_test.npy", vec![te.len()], te.labels()),
        ];
        for (name, shape, data) in arrays {
            zip.start_file(name, options).map_err(zip_err)?;
            zip.write_all(&crate::npy::encode(&shape, data)?).map_err(io)?;
        }
        let file = zip.finish().map_err(zip_err)?.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)
    }
}

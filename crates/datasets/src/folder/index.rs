//! Which files an image folder holds, in Keras's order, and Keras's split.
//!
//! This reproduces `keras.utils.image_dataset_from_directory` (Keras 3.15,
//! `keras/src/utils/dataset_utils.py`: `index_directory`,
//! `iter_valid_files`, `index_subdirectory`, `get_training_or_validation_split`
//! and `check_validation_split_arg`), so the same folder, seed and
//! `validation_split` put the same files in the same subset as Keras does:
//!
//! 1. Classes are the entries of the folder that are directories (following
//!    symbolic links) and do not start with `.`, sorted by name; or the list the
//!    user gives, in the user's order (each must be such a directory).
//! 2. Each class folder is walked recursively (`os.walk`, not descending into
//!    symbolic links to directories unless `follow_links`); the directories are
//!    visited sorted by their full path, and in each the file names sorted;
//!    names whose lower-cased form ends in `.bmp`, `.gif`, `.jpeg`, `.jpg` or
//!    `.png` are kept (hidden files too, as Keras keeps them). Files of class 0
//!    come first, then class 1, and so on.
//! 3. With `shuffle` the list is permuted by NumPy's legacy
//!    `np.random.RandomState(seed).shuffle` (MT19937 seeded by `init_genrand`,
//!    a Fisher-Yates pass from the end drawing `j` by masked rejection
//!    sampling), exactly; [`Mt19937`] is that generator.
//! 4. `validation_split` takes `int(validation_split * n)` files (truncated) off
//!    the *end* of that list for validation; training gets the rest.
//!
//! Names are compared as Python compares `str`: by code point, which for UTF-8
//! names is byte order (names that are not UTF-8 are compared by their bytes;
//! Python would compare its surrogate escapes, a case not worth the difference).
//!
//! Where this deliberately differs from Keras (each an error here, where Keras
//! silently does something surprising): a split that leaves 0 validation files
//! (Keras then returns *every* file as validation and none for training); a
//! class folder with no image (Keras just has no example of that class); a file
//! with an image extension that is not a regular file (a FIFO would hang Keras).

use crate::{Error, Result};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// File extensions read, as Keras's `ALLOWLIST_FORMATS` (compared lower-cased).
pub const IMAGE_EXTENSIONS: [&str; 5] = [".bmp", ".gif", ".jpeg", ".jpg", ".png"];

/// Most image files one folder may hold (a bound on the index's memory, about
/// 100 bytes a file: 16.7 million files is about 1.7 GB of paths, far beyond any
/// dataset held in memory as pixels).
pub const MAX_FILES: usize = 1 << 24;

/// Deepest directory nesting walked below a class folder (a bound that also
/// stops symbolic-link loops when links are followed).
pub const MAX_DEPTH: usize = 64;

/// One image file of the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedFile {
    /// Full path (the folder joined with the class and the path below it).
    pub path: PathBuf,
    /// Class index (into the class names), `0` when the dataset has no labels.
    pub label: u32,
}

/// Sort key of a path as Python sorts `str`: UTF-8 bytes are in code-point order.
fn key(p: &std::ffi::OsStr) -> &[u8] {
    p.as_encoded_bytes()
}

fn has_image_extension(name: &std::ffi::OsStr) -> bool {
    let lower = name.to_string_lossy().to_lowercase();
    IMAGE_EXTENSIONS.iter().any(|ext| lower.ends_with(ext))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(OsString, fs::FileType, PathBuf)>> {
    let io = |e| Error::Io { file: dir.display().to_string(), source: e };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let file_type = entry.file_type().map_err(io)?;
        entries.push((entry.file_name(), file_type, entry.path()));
    }
    entries.sort_by(|a, b| key(&a.0).cmp(key(&b.0)));
    Ok(entries)
}

/// The class folders of `dir`, as Keras lists them: directory entries (links
/// followed) whose names do not start with `.`, sorted.
pub fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let meta = fs::metadata(dir).map_err(|e| crate::bytes::io_error(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::MissingDir { path: dir.display().to_string() });
    }
    let mut names = Vec::new();
    for (name, _, path) in read_dir_sorted(dir)? {
        if path.is_dir() && !name.as_encoded_bytes().starts_with(b".") {
            names.push(name.into_string().map_err(|n| {
                Error::InvalidArgument(format!("{}: class folder name {:?} is not UTF-8", dir.display(), n))
            })?);
        }
    }
    Ok(names)
}

/// The image files below `class_dir`, in Keras's order (`iter_valid_files`).
fn walk_class(class_dir: &Path, follow_links: bool, limit: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    // Every directory with its listing, then sorted by full path as Keras
    // sorts os.walk's tuples.
    let mut dirs: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    let mut stack = vec![(class_dir.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let mut files = Vec::new();
        for (name, file_type, path) in read_dir_sorted(&dir)? {
            // os.walk classifies with is_dir(), which follows links.
            let is_dir = file_type.is_dir() || (file_type.is_symlink() && path.is_dir());
            if is_dir {
                if file_type.is_symlink() && !follow_links {
                    continue;
                }
                if depth + 1 > MAX_DEPTH {
                    return Err(Error::InvalidArgument(format!(
                        "{}: folders nested more than {MAX_DEPTH} deep (a symbolic-link loop?)",
                        path.display()
                    )));
                }
                stack.push((path, depth + 1));
            } else if has_image_extension(&name) {
                files.push(path);
            }
        }
        dirs.push((dir, files));
    }
    dirs.sort_by(|a, b| key(a.0.as_os_str()).cmp(key(b.0.as_os_str())));
    for (_, files) in dirs {
        if out.len() + files.len() > limit {
            return Err(Error::InvalidArgument(format!(
                "{}: more than {limit} image files (the limit MAX_FILES)",
                class_dir.display()
            )));
        }
        out.extend(files);
    }
    Ok(())
}

/// Where labels come from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Labels {
    /// From the class folders (Keras's `labels="inferred"`).
    #[default]
    Inferred,
    /// No labels: every image below the folder, at any depth (Keras's `labels=None`).
    None,
    /// One label per image file, in the sorted order of the files below the
    /// folder (Keras's `labels=[...]`); the class names are the sorted distinct labels.
    List(Vec<u32>),
}

/// The files of a folder in Keras's order before shuffling, and the class names.
pub fn index_directory(
    dir: &Path,
    labels: &Labels,
    class_names: Option<&[String]>,
    follow_links: bool,
) -> Result<(Vec<IndexedFile>, Vec<String>)> {
    match labels {
        Labels::Inferred => {
            let subdirs = class_folders(dir)?;
            let names = match class_names {
                Some(given) => {
                    if let Some(bad) = given.iter().find(|n| !subdirs.contains(n)) {
                        return Err(Error::InvalidArgument(format!(
                            "{}: class name {bad:?} is not one of its class folders {subdirs:?}",
                            dir.display()
                        )));
                    }
                    for (i, n) in given.iter().enumerate() {
                        if given[..i].contains(n) {
                            return Err(Error::InvalidArgument(format!("class name {n:?} is given twice")));
                        }
                    }
                    given.to_vec()
                }
                None => subdirs,
            };
            if names.is_empty() {
                return Err(Error::NoClasses { dir: dir.display().to_string() });
            }
            let mut files = Vec::new();
            for (label, name) in names.iter().enumerate() {
                let class_dir = dir.join(name);
                let before = files.len();
                let mut paths = Vec::new();
                walk_class(&class_dir, follow_links, MAX_FILES - before, &mut paths)?;
                if paths.is_empty() {
                    return Err(Error::EmptyClass { dir: class_dir.display().to_string() });
                }
                files.extend(paths.into_iter().map(|path| IndexedFile { path, label: label as u32 }));
            }
            Ok((files, names))
        }
        Labels::None | Labels::List(_) => {
            if class_names.is_some() {
                return Err(Error::InvalidArgument(
                    "class names can only be given when labels are inferred from the class folders".into(),
                ));
            }
            let meta = fs::metadata(dir).map_err(|e| crate::bytes::io_error(dir, e))?;
            if !meta.is_dir() {
                return Err(Error::MissingDir { path: dir.display().to_string() });
            }
            let mut paths = Vec::new();
            walk_class(dir, follow_links, MAX_FILES, &mut paths)?;
            if paths.is_empty() {
                return Err(Error::NoImages { dir: dir.display().to_string() });
            }
            match labels {
                Labels::List(list) => {
                    if list.len() != paths.len() {
                        return Err(Error::InvalidArgument(format!(
                            "{}: {} labels given for {} image files",
                            dir.display(),
                            list.len(),
                            paths.len()
                        )));
                    }
                    let mut distinct = list.clone();
                    distinct.sort_unstable();
                    distinct.dedup();
                    // Keras's class names are the sorted distinct labels; the
                    // labels themselves stay as given (a one-hot width comes
                    // from the largest label).
                    let names = distinct.iter().map(u32::to_string).collect();
                    let files = paths.into_iter().zip(list).map(|(path, &label)| IndexedFile { path, label }).collect();
                    Ok((files, names))
                }
                _ => Ok((paths.into_iter().map(|path| IndexedFile { path, label: 0 }).collect(), Vec::new())),
            }
        }
    }
}

/// NumPy's MT19937 as `np.random.RandomState(seed)` seeds and draws it.
///
/// ```
/// use convnet_datasets::folder::Mt19937;
/// // Seeded with 5489, MT19937's first output is 3499211612 (mt19937ar.c).
/// let mut rng = Mt19937::new(5489);
/// assert_eq!(rng.next_u32(), 3_499_211_612);
/// ```
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; 624],
    pos: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mt19937 {{ pos: {} }}", self.pos)
    }
}

impl Mt19937 {
    /// Seeded as NumPy's legacy seeding of an integer seed (`init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, pos: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= MATRIX_A;
            }
            self.state[i] = next;
        }
        self.pos = 0;
    }

    /// The next tempered 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform integer in `0..=max` (NumPy's `random_interval` for `max < 2^32`:
    /// the smallest all-ones mask covering `max`, drawing until the masked value fits).
    pub fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        loop {
            let value = self.next_u32() & mask;
            if value <= max {
                return value;
            }
        }
    }

    /// Permutes `items` as `RandomState.shuffle` does (Fisher-Yates from the end).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.interval(i as u32) as usize;
            items.swap(i, j);
        }
    }
}

/// Which part of a split folder to load (Keras's `subset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subset {
    /// All but the last `int(validation_split * n)` files of the shuffled list.
    Training,
    /// The last `int(validation_split * n)` files.
    Validation,
}

/// Keras's split point: how many of `n` files go to validation, checked.
pub fn validation_count(dir: &Path, n: usize, validation_split: f64) -> Result<usize> {
    if !(validation_split > 0.0 && validation_split < 1.0) {
        return Err(Error::InvalidArgument(format!(
            "validation_split must be between 0 and 1, got {validation_split}"
        )));
    }
    // Python: int(validation_split * len(samples)), a double product truncated.
    let val = (validation_split * n as f64) as usize;
    if val == 0 || val >= n {
        return Err(Error::InvalidArgument(format!(
            "{}: validation_split {validation_split} of {n} files leaves {} for validation and {} for training; \
             both need at least one",
            dir.display(),
            val,
            n - val.min(n)
        )));
    }
    Ok(val)
}

/// Keras's seed check: NumPy's `RandomState` takes seeds in `0..2^32`.
pub fn keras_seed(seed: u64) -> Result<u32> {
    u32::try_from(seed)
        .map_err(|_| Error::InvalidArgument(format!("seed {seed} is not below 2^32 (NumPy's RandomState)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_outputs() {
        // Matsumoto & Nishimura's mt19937ar.c, init_genrand(5489): the first
        // outputs, and the 10000th as quoted by the C++ standard
        // ([rand.predef]: mt19937's 10000th invocation yields 4123659995).
        let mut rng = Mt19937::new(5489);
        assert_eq!([rng.next_u32(), rng.next_u32(), rng.next_u32()], [3_499_211_612, 581_869_302, 3_890_346_734]);
        let mut rng = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = rng.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn interval_stays_in_range_and_shuffle_permutes() {
        let mut rng = Mt19937::new(7);
        for max in [1u32, 2, 3, 5, 1000, u32::MAX] {
            for _ in 0..50 {
                assert!(rng.interval(max) <= max);
            }
        }
        let mut v: Vec<usize> = (0..100).collect();
        rng.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }

    #[test]
    fn validation_count_truncates_like_python() {
        let d = Path::new("d");
        assert_eq!(validation_count(d, 10, 0.25).unwrap(), 2);
        assert_eq!(validation_count(d, 2000, 0.2).unwrap(), 400);
        assert!(validation_count(d, 3, 0.2).is_err()); // int(0.6) = 0
        assert!(validation_count(d, 10, 1.0).is_err());
        assert!(validation_count(d, 10, f64::NAN).is_err());
        assert!(keras_seed(1 << 32).is_err());
    }
}

//! Where a user's MNIST copy lives when the repository's `data/mnist` is not
//! beside the code (a crate from crates.io): the platform's cache directory,
//! as Keras keeps its datasets under `~/.keras/datasets`.
//!
//! - Linux and other Unix: `$XDG_CACHE_HOME/convnet/mnist` when
//!   `XDG_CACHE_HOME` is an absolute path, else `$HOME/.cache/convnet/mnist`;
//! - macOS: `$HOME/Library/Caches/convnet/mnist`;
//! - Windows: `%LOCALAPPDATA%\convnet\mnist`.
//!
//! `$CONVNET_DATA`, when set, takes the place of all of these (see
//! [`Mnist::default_dir`](crate::Mnist::default_dir)).

use std::path::PathBuf;

/// The platform's per-user cache directory, if the environment names one.
fn platform_cache_root() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if cfg!(windows) {
        return var("LOCALAPPDATA");
    }
    if cfg!(target_os = "macos") {
        return var("HOME").map(|h| h.join("Library").join("Caches"));
    }
    var("XDG_CACHE_HOME").filter(|p| p.is_absolute()).or_else(|| var("HOME").map(|h| h.join(".cache")))
}

/// `<platform cache>/convnet/mnist`, or `None` when the environment names no
/// cache directory (no `HOME` / `LOCALAPPDATA`).
pub(crate) fn mnist_cache_dir() -> Option<PathBuf> {
    platform_cache_root().map(|root| root.join("convnet").join("mnist"))
}

//! Fetching MNIST into a cache directory (the `download` feature), as Keras's
//! `mnist.load_data()` fetches `mnist.npz` on first use.
//!
//! Each of the four files is fetched as `<mirror><name>.gz` from the first
//! mirror that serves a good copy: the body is read with a size limit,
//! decompressed with a size limit, and its SHA-256 compared with MNIST's
//! known digest of the decompressed file ([`SHA256_RAW`]); only then is the
//! raw file written, atomically (a temporary file in the same directory,
//! fsynced, renamed over the target, the directory fsynced), so the cache
//! never holds a partial or unverified file and later loads memory-map it.
//! The raw digest is the one to check because mirrors recompress: the same
//! images reach users in `.gz` files of different bytes.
//!
//! Mirrors: [`DEFAULT_MIRRORS`], or the whitespace- or comma-separated base
//! URLs in `$CONVNET_MNIST_MIRRORS` ([`MIRRORS_ENV`]), or a list given to
//! [`Mnist::download`]. HTTPS goes through rustls with the Mozilla root
//! certificates; proxies come from the usual environment variables
//! (`HTTPS_PROXY`, `NO_PROXY`, ...), except for loopback addresses.

use crate::mnist::{find_file, hex};
use crate::{Error, Mnist, Result, FILES, SHA256_RAW};
use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Public mirrors of the four MNIST `.gz` files, tried in order.
pub const DEFAULT_MIRRORS: [&str; 2] =
    ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"];

/// The environment variable that replaces [`DEFAULT_MIRRORS`]: base URLs
/// separated by whitespace or commas, each followed by a file name to fetch.
pub const MIRRORS_ENV: &str = "CONVNET_MNIST_MIRRORS";

/// Sizes of the four decompressed files, in [`FILES`] order (the IDX header
/// plus one byte per pixel or label).
pub const RAW_LEN: [u64; 4] = [16 + 60_000 * 784, 8 + 60_000, 16 + 10_000 * 784, 8 + 10_000];

/// The largest compressed body accepted: gzip never makes MNIST larger than
/// this (the raw training images are 47 MB).
const MAX_GZ_LEN: u64 = 64 << 20;

/// One file from one mirror: its decompressed, verified bytes.
fn fetch(agent: &ureq::Agent, url: &str, index: usize) -> std::result::Result<Vec<u8>, String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let gz = response
        .body_mut()
        .with_config()
        .limit(MAX_GZ_LEN)
        .read_to_vec()
        .map_err(|e| format!("the response body is incomplete or unreadable: {e}"))?;
    let expected = RAW_LEN[index];
    let mut raw = Vec::with_capacity(expected as usize);
    MultiGzDecoder::new(&gz[..])
        .take(expected + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("corrupt or truncated gzip stream ({} bytes received): {e}", gz.len()))?;
    if raw.len() as u64 > expected {
        return Err(format!("decompresses to more than the {expected} bytes of MNIST's file"));
    }
    if (raw.len() as u64) < expected {
        return Err(format!("decompresses to {} bytes, MNIST's file has {expected}", raw.len()));
    }
    let found = hex(&Sha256::digest(&raw));
    if found != SHA256_RAW[index] {
        return Err(format!("SHA-256 of the decompressed file is {found}, not MNIST's {}", SHA256_RAW[index]));
    }
    Ok(raw)
}

/// Writes `bytes` to `path` atomically; on any error no file is left behind.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.download.{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io { file: path.display().to_string(), source }
    })
}

/// True for URLs naming the loopback interface (never sent through a proxy).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn agent(direct: bool) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_global(Some(Duration::from_secs(600)))
        .http_status_as_error(true);
    if direct {
        config = config.proxy(None);
    }
    config.build().into()
}

impl Mnist {
    /// The mirrors [`Mnist::load_default`] downloads from: the base URLs in
    /// `$CONVNET_MNIST_MIRRORS` ([`MIRRORS_ENV`]) if set and not empty, else
    /// [`DEFAULT_MIRRORS`].
    ///
    /// ```
    /// let mirrors = convnet_datasets::Mnist::mirrors();
    /// assert!(!mirrors.is_empty());
    /// ```
    pub fn mirrors() -> Vec<String> {
        let from_env: Vec<String> = std::env::var(MIRRORS_ENV)
            .unwrap_or_default()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if from_env.is_empty() {
            DEFAULT_MIRRORS.iter().map(|s| s.to_string()).collect()
        } else {
            from_env
        }
    }

    /// Downloads every MNIST file `dir` lacks (raw or `.gz`) from the first of
    /// `mirrors` (base URLs, each followed by `<name>.gz`) that serves a copy
    /// whose decompressed SHA-256 is MNIST's, and writes it decompressed and
    /// atomically into `dir` (created if needed). Files already in `dir` are
    /// left alone. A file no mirror serves correctly is an [`Error::Download`]
    /// naming it and what each mirror did; nothing is written for it.
    pub fn download(dir: impl AsRef<Path>, mirrors: &[impl AsRef<str>]) -> Result<()> {
        let dir = dir.as_ref();
        if mirrors.is_empty() {
            return Err(Error::InvalidArgument("no mirror to download MNIST from".into()));
        }
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { file: dir.display().to_string(), source })?;
        let (proxied, direct) = (agent(false), agent(true));
        for (index, name) in FILES.iter().enumerate() {
            if find_file(dir, name)?.is_some() {
                continue;
            }
            let target: PathBuf = dir.join(name);
            let mut failures = Vec::new();
            let mut fetched = None;
            for mirror in mirrors {
                let url = format!("{}{name}.gz", mirror.as_ref());
                let agent = if is_loopback(&url) { &direct } else { &proxied };
                match fetch(agent, &url, index) {
                    Ok(raw) => {
                        fetched = Some(raw);
                        break;
                    }
                    Err(why) => failures.push(format!("{url}: {why}")),
                }
            }
            let raw = fetched
                .ok_or_else(|| Error::Download { file: target.display().to_string(), reason: failures.join("; ") })?;
            write_atomic(&target, &raw)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        for url in ["http://127.0.0.1:8080/mnist/", "http://localhost/x", "http://[::1]:80/", "http://u@127.0.0.2/"] {
            assert!(is_loopback(url), "{url}");
        }
        for url in ["https://example.com/", "http://10.0.0.1/", "http://127.0.0.1.example.com/"] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn raw_lengths_match_the_counts() {
        assert_eq!(RAW_LEN[0], 47_040_016);
        assert_eq!(RAW_LEN[3], 10_008);
    }
}

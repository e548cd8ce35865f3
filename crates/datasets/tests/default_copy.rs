//! `Mnist::load_default`: where it looks and the SHA-256 check. One test
//! function, since it sets `CONVNET_DATA` (process-wide) and must not race.

mod common;

use common::{gunzip, gzip, mnist_dir, temp_dir};
use convnet_datasets::{Error, Mnist, FILES, SHA256_GZ};

#[test]
fn default_copy_digests_and_convnet_data() {
    // A copy of MNIST with the training images raw (verified against the raw
    // digest) and the rest gzip: loads and equals the checkout's copy.
    let dir = temp_dir("default");
    for (i, name) in FILES.iter().enumerate() {
        let gz = std::fs::read(mnist_dir().join(format!("{name}.gz"))).unwrap();
        if i == 0 {
            std::fs::write(dir.join(name), gunzip(&gz)).unwrap();
        } else {
            std::fs::write(dir.join(format!("{name}.gz")), gz).unwrap();
        }
    }
    std::env::set_var("CONVNET_DATA", &*dir);
    assert_eq!(Mnist::default_dir().unwrap(), *dir);
    let m = Mnist::load_default().unwrap();
    assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
    assert_eq!(m.train.labels()[..3], [5, 0, 4]);

    // Same format, different bytes (recompressed test labels): parses with
    // `load`, refused by `load_default` with an error naming file and digests.
    let labels = dir.join("t10k-labels-idx1-ubyte.gz");
    let raw = gunzip(&std::fs::read(&labels).unwrap());
    std::fs::write(&labels, gzip(&raw)).unwrap();
    assert_eq!(Mnist::load(&dir).unwrap().test.labels(), m.test.labels());
    let err = Mnist::load_default().unwrap_err();
    assert!(matches!(err, Error::Digest { expected, .. } if expected == SHA256_GZ[3]), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with(&labels.display().to_string()) && msg.contains(SHA256_GZ[3]), "{msg}");

    // One pixel changed in the raw training images: refused too.
    std::fs::write(&labels, gzip(&raw)).unwrap();
    let images = dir.join(FILES[0]);
    let mut bytes = std::fs::read(&images).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&images, &bytes).unwrap();
    let err = Mnist::load_default().unwrap_err();
    assert!(err.to_string().contains("train-images-idx3-ubyte: SHA-256"), "{err}");

    // A missing file (with the `download` feature, fetched first: here from a
    // mirror that refuses connections, so the error names the file and
    // nothing is written), and CONVNET_DATA naming a missing directory.
    std::fs::remove_file(&images).unwrap();
    #[cfg(feature = "download")]
    {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        std::env::set_var(convnet_datasets::MIRRORS_ENV, format!("http://{closed}/"));
    }
    let err = Mnist::load_default().unwrap_err();
    #[cfg(not(feature = "download"))]
    assert!(matches!(err, Error::MissingFile { .. }), "{err}");
    #[cfg(feature = "download")]
    {
        assert!(matches!(err, Error::Download { .. }) && err.to_string().contains(FILES[0]), "{err}");
        assert!(!images.exists());
        std::env::remove_var(convnet_datasets::MIRRORS_ENV);
    }
    std::env::set_var("CONVNET_DATA", dir.join("nowhere"));
    let err = Mnist::load_default().unwrap_err();
    assert!(matches!(err, Error::MissingDir { .. }) && err.to_string().contains("CONVNET_DATA"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    // Unset: the checkout's data/mnist (relative to the current dir or the crate).
    std::env::remove_var("CONVNET_DATA");
    let found = Mnist::default_dir().unwrap();
    assert!(found.ends_with("data/mnist"), "{}", found.display());
}

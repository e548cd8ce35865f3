//! The `download` feature against a real HTTP server on the loopback address,
//! started inside the test, serving the repository's `data/mnist` files: a
//! good mirror, a corrupted and two truncated responses, a missing file, and
//! `Mnist::load_default` filling an empty cache. Run with
//! `cargo test -p convnet-datasets --features download --test download`.
#![cfg(feature = "download")]

mod common;

use common::{mnist_dir, temp_dir};
use convnet_datasets::{Error, Mnist, FILES, MIRRORS_ENV, RAW_LEN};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Requests served so far (to see that a full cache is not fetched again).
static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Answers one request. Paths are `/<mode>/<file>`: `good` serves the file,
/// `corrupt` flips one byte in its middle, `cut` promises the whole file in
/// `Content-Length` but closes after half, `short` sends a consistent
/// response holding only the first half; anything else is a 404.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    REQUESTS.fetch_add(1, Ordering::SeqCst);
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (mode, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let known = FILES.iter().any(|f| name == format!("{f}.gz"));
    let mut out = stream;
    if !known || !["good", "corrupt", "cut", "short"].contains(&mode) {
        let body = b"not found";
        write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
        return out.write_all(body);
    }
    let mut body = std::fs::read(mnist_dir().join(name))?;
    let half = body.len() / 2;
    let declared = body.len();
    match mode {
        "corrupt" => body[half] ^= 0xff,
        "cut" => body.truncate(half),
        "short" => body.truncate(half),
        _ => {}
    }
    let length = if mode == "cut" { declared } else { body.len() };
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n"
    )?;
    out.write_all(&body)?;
    out.flush()
}

/// The address of the test server, started on first use.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = serve(stream);
                });
            }
        });
        addr
    })
}

fn mirror(mode: &str) -> String {
    format!("http://{}/{mode}/", server())
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn bad_responses_are_clear_errors_and_leave_no_file() {
    // What each failure says depends on where the damage lands in the deflate
    // stream (a bad block, a wrong length, a wrong CRC or digest): any of these.
    let damaged = ["corrupt or truncated gzip stream", "decompresses to", "SHA-256", "unexpected end", "EOF"];
    for (mode, needles) in [
        ("corrupt", &damaged[..]),
        ("cut", &["the response body is incomplete"][..]),
        ("short", &damaged[..]),
        ("missing", &["http status: 404"][..]),
    ] {
        let dir = temp_dir(&format!("download-{mode}"));
        let url = mirror(mode);
        let err = Mnist::download(&dir, &[&url]).expect_err(mode);
        let msg = err.to_string();
        match &err {
            Error::Download { file, reason } => {
                assert!(file.ends_with(FILES[0]), "{mode}: {msg}");
                assert!(reason.contains(&format!("{url}{}.gz", FILES[0])), "{mode}: {msg}");
                assert!(needles.iter().any(|n| reason.contains(n)), "{mode}: {msg} should say one of {needles:?}");
                eprintln!("{mode}: {msg}");
            }
            other => panic!("{mode}: expected a download error, got {other}"),
        }
        assert!(entries(&dir).is_empty(), "{mode}: left {:?}", entries(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_good_mirror_after_a_bad_one_fills_the_cache_with_verified_raw_files() {
    let dir = temp_dir("download-good");
    Mnist::download(&dir, &[mirror("corrupt"), mirror("good")]).unwrap();
    assert_eq!(entries(&dir), {
        let mut f: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
        f.sort();
        f
    });
    for (name, len) in FILES.iter().zip(RAW_LEN) {
        assert_eq!(std::fs::metadata(dir.join(name)).unwrap().len(), len, "{name}");
    }
    let got = Mnist::load(&dir).unwrap();
    let want = Mnist::load(mnist_dir()).unwrap();
    assert_eq!(got.train.pixels(), want.train.pixels());
    assert_eq!(got.test.labels(), want.test.labels());
    // A complete cache is not fetched again.
    let before = REQUESTS.load(Ordering::SeqCst);
    Mnist::download(&dir, &[mirror("good")]).unwrap();
    assert_eq!(REQUESTS.load(Ordering::SeqCst), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `load_default` with `CONVNET_DATA` naming an empty cache directory and the
/// mirrors from `CONVNET_MNIST_MIRRORS`: it downloads, verifies and loads.
/// (The only test here that sets environment variables.)
#[test]
fn load_default_downloads_into_an_empty_cache() {
    let dir = temp_dir("download-default");
    std::env::set_var("CONVNET_DATA", &*dir);
    std::env::set_var(MIRRORS_ENV, format!("{} , {}", mirror("missing"), mirror("good")));
    assert_eq!(Mnist::mirrors(), vec![mirror("missing"), mirror("good")]);
    let m = Mnist::load_default().unwrap();
    assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
    assert_eq!(m.test.labels()[..5], [7, 2, 1, 0, 4]);
    assert_eq!(entries(&dir).len(), 4);
    std::env::set_var(MIRRORS_ENV, "");
    assert_eq!(Mnist::mirrors().len(), convnet_datasets::DEFAULT_MIRRORS.len());
    std::env::remove_var(MIRRORS_ENV);
    std::env::remove_var("CONVNET_DATA");
    std::fs::remove_dir_all(&dir).unwrap();
}

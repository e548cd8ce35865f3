//! Hostile input (issue 9): every case of the issue, reproduced with small
//! files generated here, against the `convnet` binary run under a 2 GiB
//! address-space limit (`ulimit -v`) and a 30 s wall-clock guard, plus the
//! library paths behind them. Each test fails if its defect comes back: an
//! abort in the allocator (the limit turns a runaway allocation into a
//! signal, not an exit code 1), a hang (the guard kills it and fails), a
//! replaced FIFO, a message in Debug form.
//!
//! The numbers in the test names are the issue's.

#![cfg(unix)]

use convnet::Activation::{Relu, Softmax};
use convnet::{mnist_convnet, Dense, Flatten, Model, Sequential};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Address-space limit of every CLI run, in KiB (2 GiB).
const AS_LIMIT_KIB: u64 = 2 * 1024 * 1024;
/// Wall-clock guard of every CLI run: catches hangs, not slowness.
const WALL: Duration = Duration::from_secs(30);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs the binary under the address-space limit and the wall-clock guard.
fn convnet_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {AS_LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_convnet"))
        .args(args)
        .env_remove("CONVNET_SIMD")
        // Few threads and malloc arenas, so the binary itself starts under
        // the limit on a machine with many cores.
        .env("RAYON_NUM_THREADS", "2")
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("sh runs");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > WALL {
            let _ = child.kill();
            let _ = child.wait();
            panic!("convnet {args:?} still running after {WALL:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    Run { code: status.code(), stdout: text(t_out.join().unwrap()), stderr: text(t_err.join().unwrap()) }
}

fn convnet(args: &[&str]) -> Run {
    convnet_env(args, &[])
}

/// Asserts exit code 1 (an error, not a usage error, not a signal) and a message.
fn assert_error(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, Some(1), "{run:?}");
    for n in needles {
        assert!(run.stderr.contains(n), "stderr should contain {n:?}: {run:?}");
    }
    assert!(!run.stderr.contains("internal error"), "a panic: {run:?}");
    assert!(run.stderr.len() < 2000, "unbounded message ({} bytes)", run.stderr.len());
}

/// A test's scratch directory, removed when the test ends (pass or fail), so
/// repeated runs do not fill the system temp dir.
struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(tag: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("convnet-hostile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo runs");
    assert!(st.success());
}

fn is_fifo(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_fifo())
}

/// A tiny dataset in the MNIST layout: `train` and `test` 28x28 images.
fn data_dir(dir: &Path, train: u32, test: u32) -> PathBuf {
    let d = dir.join("data");
    std::fs::create_dir_all(&d).unwrap();
    let images = |n: u32| {
        let mut v = Vec::new();
        for x in [0x0803u32, n, 28, 28] {
            v.extend(x.to_be_bytes());
        }
        v.extend((0..n as usize * 784).map(|i| (i * 7 % 256) as u8));
        v
    };
    let labels = |n: u32| {
        let mut v = Vec::new();
        for x in [0x0801u32, n] {
            v.extend(x.to_be_bytes());
        }
        v.extend((0..n).map(|i| (i % 10) as u8));
        v
    };
    std::fs::write(d.join("train-images-idx3-ubyte"), images(train)).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), labels(train)).unwrap();
    std::fs::write(d.join("t10k-images-idx3-ubyte"), images(test)).unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), labels(test)).unwrap();
    d
}

/// A safetensors file split into its header JSON and its data.
fn split(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

fn join(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_vec(header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// The chapter's model saved whole, with its architecture JSON edited by `edit`.
fn whole_model_with(dir: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let bytes = {
        let p = dir.join("good.safetensors");
        mnist_convnet().build().unwrap().save(&p).unwrap();
        std::fs::read(&p).unwrap()
    };
    let (mut header, data) = split(&bytes);
    let mut arch: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["convnet.model"].as_str().unwrap()).unwrap();
    edit(&mut arch);
    header["__metadata__"]["convnet.model"] = arch.to_string().into();
    let p = dir.join(name);
    std::fs::write(&p, join(&header, &data)).unwrap();
    assert!(std::fs::metadata(&p).unwrap().len() < 400_000);
    p
}

fn digit_png(dir: &Path) -> PathBuf {
    let p = dir.join("digit.png");
    let img =
        image::GrayImage::from_fn(28, 28, |x, y| image::Luma([if (10..18).contains(&x) && y > 4 { 255 } else { 0 }]));
    img.save(&p).unwrap();
    p
}

// 1. Architecture metadata asking for huge layers: refused before anything is built.
#[test]
fn issue_1_huge_layers_in_model_metadata_are_refused_before_allocation() {
    let dir = tmp("huge-layers");
    let img = digit_png(&dir);
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: [(&str, Edit, &str); 4] = [
        (
            "filters.st",
            Box::new(|a| a["layers"][0]["config"]["filters"] = 1_000_000_000u64.into()),
            "layer conv2d: its output (26, 26, 1000000000) brings the model to 676000000784 activation values",
        ),
        (
            "kernel.st",
            Box::new(|a| {
                a["layers"][0]["config"]["kernel_size"] = serde_json::json!([1_000_000, 1_000_000]);
                a["layers"][0]["config"]["padding"] = "same".into();
            }),
            "more than the limit",
        ),
        ("dense.st", Box::new(|a| a["layers"][6]["config"]["units"] = (1u64 << 28).into()), "more than the limit"),
        (
            "last.st",
            Box::new(|a| a["layers"][7]["config"]["units"] = 15_000_000u64.into()),
            "layer dense_1: 975000000 parameters bring the model to",
        ),
    ];
    for (name, edit, needle) in cases {
        let f = whole_model_with(&dir, name, edit);
        let started = Instant::now();
        let run = convnet(&["eval", "--weights", s(&f), "--data", "/nonexistent"]);
        assert_error(&run, &[name, "convnet.model", needle]);
        let run = convnet(&["predict", "--weights", s(&f), s(&img)]);
        assert_error(&run, &[name, needle]);
        assert!(started.elapsed() < Duration::from_secs(20), "{name}: {:?}", started.elapsed());
    }
    // The library path: build() has limits, build_with() raises them.
    let wide = Sequential::new().add(Flatten::new().input_shape((28, 28, 1))).add(Dense::new(1 << 22));
    let err = wide.clone().build().unwrap_err().to_string();
    let want = "layer dense: 3292528640 parameters bring the model to 3292528640, more than the limit of 268435456";
    assert!(err.contains(want), "{err}");
    let small = Sequential::new().add(Dense::new(4).input_shape(1000));
    let err = small.clone().build_with(&convnet::limits::Limits::default().max_params(1000)).unwrap_err();
    assert!(err.to_string().contains("4004 parameters bring the model to 4004, more than the limit of 1000"), "{err}");
    assert!(small.build_with(&convnet::limits::Limits::default().max_params(4004)).is_ok());
    let err = Sequential::new()
        .add(convnet::Conv2D::new(100_000, 1).padding(convnet::Padding::Same).input_shape((1000, 1000, 1)))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("activation values per example, more than the limit"), "{err}");
}

// 1. A model file whose data does not match its architecture allocates nothing large.
#[test]
fn issue_1_tensors_are_checked_against_the_architecture_before_allocation() {
    let dir = tmp("mismatch");
    // Within the parameter limit (64 * 4e6 = 2.6e8 < 2^28) but the file holds 650 weights there.
    let f = whole_model_with(&dir, "big.st", |a| a["layers"][7]["config"]["units"] = 4_000_000u64.into());
    let started = Instant::now();
    let run = convnet(&["eval", "--weights", s(&f), "--data", "/nonexistent"]);
    assert_error(&run, &["big.st", "dense_1/kernel has shape [64, 10], the model expects [64, 4000000]"]);
    assert!(started.elapsed() < Duration::from_secs(20));
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    // CRC-32 (PNG's, bitwise).
    let mut crc = 0xffff_ffffu32;
    for &b in kind.iter().chain(data) {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { 0xedb8_8320 ^ (crc >> 1) } else { crc >> 1 };
        }
    }
    out.extend((data.len() as u32).to_be_bytes());
    out.extend(kind);
    out.extend(data);
    out.extend((!crc).to_be_bytes());
}

// 2. Resize bombs: a few KB of PNG whose resize buffer would be gigabytes.
#[test]
fn issue_2_image_resize_bombs_are_refused_from_the_header() {
    let dir = tmp("resize");
    let model = dir.join("m.st");
    mnist_convnet().build().unwrap().save(&model).unwrap();
    // 10,000,000 x 1 grey: a 10 KB file (4.5 GB of resize buffer).
    let wide = dir.join("wide.png");
    {
        let f = std::fs::File::create(&wide).unwrap();
        let mut e = png::Encoder::new(std::io::BufWriter::new(f), 10_000_000, 1);
        e.set_color(png::ColorType::Grayscale);
        e.set_compression(png::Compression::Fast);
        e.write_header().unwrap().write_image_data(&vec![0u8; 10_000_000]).unwrap();
    }
    assert!(std::fs::metadata(&wide).unwrap().len() < 100_000);
    let run = convnet(&["predict", "--weights", s(&model), s(&wide)]);
    assert_error(
        &run,
        &["wide.png", "resizing 10000000x1 to 28x28", "more than the limit", "CONVNET_MAX_RESIZE_BYTES"],
    );
    // 500,000,000 x 1: refused from the header alone (only the header is written here).
    let huge = dir.join("huge.png");
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(500_000_000u32.to_be_bytes());
    ihdr.extend(1u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    png_chunk(&mut bytes, b"IHDR", &ihdr);
    png_chunk(&mut bytes, b"IDAT", &[0x78, 0x01]);
    png_chunk(&mut bytes, b"IEND", &[]);
    std::fs::write(&huge, bytes).unwrap();
    let run = convnet(&["predict", "--weights", s(&model), s(&huge)]);
    assert_error(&run, &["huge.png", "500000000 pixels, more than the limit"]);
    // Raising the limit is possible (and then the resize buffer limit applies).
    let run = convnet_env(&["predict", "--weights", s(&model), s(&huge)], &[("CONVNET_MAX_IMAGE_PIXELS", "2^30")]);
    assert_error(&run, &["huge.png", "resizing 500000000x1"]);
    let run = convnet_env(&["predict", "--weights", s(&model), s(&huge)], &[("CONVNET_MAX_IMAGE_PIXELS", "lots")]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("CONVNET_MAX_IMAGE_PIXELS"), "{run:?}");
}

// 3. Non-regular files: refused before they are read (no hang, no unbounded read).
#[test]
fn issue_3_fifos_devices_and_directories_are_refused_before_reading() {
    let dir = tmp("nonregular");
    let model = dir.join("m.st");
    mnist_convnet().build().unwrap().save(&model).unwrap();
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let run = convnet(&["eval", "--weights", "/dev/zero", "--data", "/nonexistent"]);
    assert_error(&run, &["/dev/zero: is a character device, not a regular file"]);
    let run = convnet(&["eval", "--weights", s(&fifo), "--data", "/nonexistent"]);
    assert_error(&run, &["fifo: is a FIFO (named pipe), not a regular file"]);
    let run = convnet(&["predict", "--weights", s(&fifo), s(&model)]);
    assert_error(&run, &["is a FIFO"]);
    let run = convnet(&["predict", "--weights", s(&model), s(&fifo)]);
    assert_error(&run, &["fifo: is a FIFO (named pipe), not a regular file"]);
    let run = convnet(&["predict", "--weights", s(&dir), s(&model)]);
    assert_error(&run, &["is a directory, not a regular file"]);
    // The library refuses them too.
    assert!(Model::load(&fifo).unwrap_err().to_string().contains("FIFO"));
    assert!(mnist_convnet().build().unwrap().load_weights("/dev/zero").is_err());
    // A file over the size limit is refused from its metadata.
    let run =
        convnet_env(&["eval", "--weights", s(&model), "--data", "/nonexistent"], &[("CONVNET_MAX_FILE_BYTES", "1000")]);
    assert_error(&run, &["m.st: the file is", "more than the limit of 1000"]);
}

// 4. bench conv shapes are checked before their buffers are allocated.
#[test]
fn issue_4_bench_shapes_are_bounded() {
    let run = convnet(&["bench", "conv", "--shape", "1,100000,100000,1,1"]);
    assert_error(&run, &["79998400056 bytes of buffers, more than the limit", "CONVNET_MAX_BENCH_BYTES"]);
    let run = convnet(&["bench", "conv", "--shape", "1,8,8,1,1", "--reps", "1", "--algo", "direct", "--json"]);
    assert_eq!(run.code, Some(0), "{run:?}");
}

// 5. Saves never replace anything but a regular file.
#[test]
fn issue_5_save_refuses_fifos_directories_and_links_to_them() {
    let dir = tmp("save-target");
    let data = data_dir(&dir, 4, 2);
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let link_to_fifo = dir.join("link-to-fifo");
    std::os::unix::fs::symlink(&fifo, &link_to_fifo).unwrap();
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(dir.join("nowhere/x"), &dangling).unwrap();
    let train = |save: &Path| convnet(&["train", "--data", s(&data), "--epochs", "1", "--quiet", "--save", s(save)]);
    for (target, needle) in [
        (&fifo, "is a FIFO (named pipe), not a regular file"),
        (&*dir, "is a directory, not a regular file"),
        (&link_to_fifo, "is a symbolic link to"),
        (&dangling, "is a symbolic link that cannot be followed"),
    ] {
        let run = train(target);
        assert_error(&run, &["--save", needle]);
        assert!(!run.stdout.contains("test accuracy"), "trained before refusing: {run:?}");
    }
    assert!(is_fifo(&fifo), "the FIFO was replaced");
    // The library refuses too, and leaves no temporary file.
    let model = mnist_convnet().build().unwrap();
    let err = model.save(&fifo).unwrap_err().to_string();
    assert!(err.contains("FIFO"), "{err}");
    assert!(is_fifo(&fifo));
    // A link to a regular file: the file is replaced, the link stays a link.
    let real = dir.join("real.st");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.join("link.st");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let run = train(&link);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    Model::load(&real).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp.")), "temporary file left: {names:?}");
}

fn temp_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp."))
        .collect();
    v.sort();
    v
}

// 6. Temporary names: unique across savers sharing a PID, never a predictable
// name, stale ones cleaned by the next save to the same target.
#[test]
fn issue_6_temp_files_are_unique_and_stale_ones_are_cleaned() {
    let dir = tmp("temps");
    let target = dir.join("m.st");
    // Savers in one process share a PID: the old `.m.st.tmp.<pid>` collided.
    let models: Vec<Vec<u8>> =
        (0..4).map(|i| mnist_convnet().seed(i).build().unwrap().weights_to_bytes().unwrap()).collect();
    std::thread::scope(|scope| {
        for m in &models {
            let target = &target;
            scope.spawn(move || {
                for _ in 0..10 {
                    convnet::files::write_atomic(target, m).unwrap();
                }
            });
        }
    });
    let final_bytes = std::fs::read(&target).unwrap();
    assert!(models.contains(&final_bytes), "the target is not one complete save");
    assert_eq!(temp_files(&dir), Vec::<String>::new());

    // A FIFO planted at the old predictable name does not hang or break a save.
    let planted = dir.join(format!(".m.st.tmp.{}", std::process::id()));
    mkfifo(&planted);
    // Stale temporary files of killed saves (old mtime), one of the old pid
    // form and one of the new form; a fresh one (a concurrent save's) and an
    // unrelated file must stay.
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    for (name, stale) in
        [(".m.st.tmp.12345", true), (".m.st.tmp.00112233aabbccdd", true), (".m.st.tmp.0123456789abcdef", false)]
    {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        if stale {
            f.set_modified(old).unwrap();
        }
    }
    let unrelated = dir.join(".other.st.tmp.00112233aabbccdd");
    std::fs::File::create(&unrelated).unwrap().set_modified(old).unwrap();
    let started = Instant::now();
    mnist_convnet().build().unwrap().save(&target).unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(is_fifo(&planted), "the planted FIFO was touched");
    std::fs::remove_file(&planted).unwrap();
    assert_eq!(
        temp_files(&dir),
        vec![".m.st.tmp.0123456789abcdef".to_string(), ".other.st.tmp.00112233aabbccdd".to_string()]
    );
    Model::load(&target).unwrap();
}

/// Sets the first value of tensor `name` in a safetensors file to `v`.
fn poison(bytes: &[u8], name: &str, v: f32) -> Vec<u8> {
    let (header, mut data) = split(bytes);
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    data[start..start + 4].copy_from_slice(&v.to_le_bytes());
    join(&header, &data)
}

// 7. NaN / Inf weights are refused on load unless explicitly allowed.
#[test]
fn issue_7_non_finite_weights_are_refused_unless_allowed() {
    let dir = tmp("nan");
    let data = data_dir(&dir, 2, 3);
    let img = digit_png(&dir);
    let good = dir.join("good.st");
    mnist_convnet().build().unwrap().save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for (tag, v) in [("nan", f32::NAN), ("inf", f32::INFINITY), ("neginf", f32::NEG_INFINITY)] {
        let f = dir.join(format!("{tag}.st"));
        std::fs::write(&f, poison(&bytes, "dense_1/kernel", v)).unwrap();
        let run = convnet(&["eval", "--weights", s(&f), "--data", s(&data)]);
        assert_error(&run, &[&format!("{tag}.st"), "dense_1/kernel holds 1 non-finite value", "--allow-non-finite"]);
        let run = convnet(&["predict", "--weights", s(&f), s(&img)]);
        assert_error(&run, &["non-finite"]);
        let run = convnet(&["eval", "--weights", s(&f), "--data", s(&data), "--allow-non-finite"]);
        assert_eq!(run.code, Some(0), "{run:?}");
    }
    // The library: an error by default, an explicit opt-in.
    let nan = poison(&mnist_convnet().build().unwrap().weights_to_bytes().unwrap(), "conv2d/bias", f32::NAN);
    let mut model = mnist_convnet().build().unwrap();
    let err = model.load_weights_bytes(&nan).unwrap_err().to_string();
    assert!(err.contains("conv2d/bias holds 1 non-finite value (the first, at flat index 0, is NaN)"), "{err}");
    let opts = convnet::weights::LoadOptions { allow_non_finite: true, ..Default::default() };
    model.load_weights_bytes_with(&nan, &opts).unwrap();
}

// 8. Model building is linear in the number of layers.
#[test]
fn issue_8_a_hundred_thousand_layers_build_in_seconds() {
    let mut seq = Sequential::new().add(Dense::new(1).input_shape(1));
    for _ in 1..100_000 {
        seq = seq.add(Dense::new(1));
    }
    let started = Instant::now();
    let model = seq.build().unwrap();
    assert_eq!(model.layers().len(), 100_000);
    assert_eq!(model.layers()[99_999].name, "dense_99999");
    // Through the architecture JSON too (what a model file holds).
    let json = model.to_json();
    let again = Model::from_json(&json).unwrap();
    assert_eq!(again.param_count(), 200_000);
    // Quadratic building took 14 s for 30,000 layers; linear takes well under a second.
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    // Too many layers for the limit: refused before naming them.
    let err = Sequential::new()
        .add(Dense::new(1).input_shape(1))
        .add(Dense::new(1))
        .build_with(&convnet::limits::Limits::default().max_layers(1))
        .unwrap_err();
    assert!(err.to_string().contains("2 layers, more than the limit of 1"), "{err}");
}

// 9. --threads far above the core count is capped, with a note.
#[test]
fn issue_9_threads_are_capped_with_a_note() {
    let dir = tmp("threads");
    let data = data_dir(&dir, 2, 3);
    let model = dir.join("m.st");
    mnist_convnet().build().unwrap().save(&model).unwrap();
    let run = convnet(&["eval", "--weights", s(&model), "--data", s(&data), "--threads", "1024"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("--threads 1024 capped to"), "{run:?}");
    let run = convnet_env(&["eval", "--weights", s(&model), "--data", s(&data)], &[("RAYON_NUM_THREADS", "100000")]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("RAYON_NUM_THREADS 100000 capped to"), "{run:?}");
}

// 10. Output paths and the test set are checked before training.
#[test]
fn issue_10_outputs_and_data_are_checked_before_training() {
    let dir = tmp("before-training");
    let data = data_dir(&dir, 4, 2);
    let base = ["train", "--data", s(&data), "--epochs", "1"];
    let with = |extra: &[&str]| convnet(&[&base[..], extra].concat());
    let run = with(&["--save", "/nonexistent/dir/model.st"]);
    assert_error(&run, &["--save", "/nonexistent/dir", "no such directory"]);
    assert!(!run.stdout.contains("Epoch"), "trained first: {run:?}");
    let run = with(&["--metrics-json", "/nonexistent/m.json"]);
    assert_error(&run, &["--metrics-json", "/nonexistent"]);
    assert!(!run.stdout.contains("Epoch"), "trained first: {run:?}");
    let same = dir.join("same");
    let run = with(&["--save", s(&same), "--metrics-json", s(&same)]);
    assert_eq!(run.code, Some(2), "{run:?}");
    let empty_dir = tmp("empty-test");
    let empty_test = data_dir(&empty_dir, 4, 0);
    let run = convnet(&["train", "--data", s(&empty_test), "--epochs", "1", "--save", s(&dir.join("m.st"))]);
    assert_error(&run, &["the test set is empty"]);
    assert!(!run.stdout.contains("Epoch"), "trained first: {run:?}");
    assert!(!dir.join("m.st").exists());
}

// 11. Messages: file, field and problem in plain words; bounded; exit codes.
#[test]
fn issue_11_messages_are_plain_bounded_and_exit_codes_consistent() {
    let dir = tmp("messages");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let model_path = dir.join("m.st");
    mnist_convnet().build().unwrap().save(&model_path).unwrap();
    // Whole-model errors name the file once, never "<weights>".
    let f = whole_model_with(&dir, "shapes.st", |a| a["layers"][6]["config"]["units"] = 65u64.into());
    let run = convnet(&["eval", "--weights", s(&f), "--data", "/nonexistent"]);
    assert_error(&run, &["shapes.st: tensor dense/kernel has shape [576, 64], the model expects [576, 65]"]);
    assert!(!run.stderr.contains("<weights>"), "{run:?}");
    // No doubled parenthesis in shape messages.
    let f =
        whole_model_with(&dir, "paren.st", |a| a["layers"][0]["config"]["kernel_size"] = serde_json::json!([29, 29]));
    let run = convnet(&["eval", "--weights", s(&f), "--data", "/nonexistent"]);
    assert_error(&run, &["input shape (None, 28, 28, 1):"]);
    assert!(!run.stderr.contains("))"), "{run:?}");
    // An unknown algorithm is a usage error (2) with a plain message.
    let run = convnet(&["bench", "conv", "--shape", "1,8,8,1,1", "--algo", "bogus"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("unknown algorithm \"bogus\""), "{run:?}");
    // `--data` that is not a directory says what it is.
    let loop1 = dir.join("loop1");
    std::os::unix::fs::symlink(dir.join("loop2"), &loop1).unwrap();
    std::os::unix::fs::symlink(&loop1, dir.join("loop2")).unwrap();
    for (data, needle) in [
        (s(&fifo), "is a FIFO (named pipe), not a directory or an .npz file"),
        ("/dev/zero", "is a character device, not a directory or an .npz file"),
        (s(&loop1), "symbolic links"),
    ] {
        let run = convnet(&["eval", "--weights", s(&model_path), "--data", data]);
        assert_error(&run, &[needle]);
        assert!(!run.stderr.contains("no such directory"), "{run:?}");
    }
    // Safetensors errors in words, not Debug strings.
    let mut gap = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#.to_vec();
    while !gap.len().is_multiple_of(8) {
        gap.push(b' ');
    }
    let mut bytes = (gap.len() as u64).to_le_bytes().to_vec();
    bytes.extend(&gap);
    bytes.extend([0u8; 8]);
    let offsets = dir.join("offsets.st");
    std::fs::write(&offsets, &bytes).unwrap();
    let run = convnet(&["eval", "--weights", s(&offsets), "--data", "/nonexistent"]);
    assert_error(
        &run,
        &["offsets.st: corrupt safetensors header: the data offsets of tensor \"a\" overlap or leave a gap"],
    );
    assert!(!run.stderr.contains("InvalidOffset"), "{run:?}");
    // A file with 200,000 unexpected tensors: a short message with a count.
    let empty: Vec<u8> = Vec::new();
    let names: Vec<String> = (0..200_000).map(|i| format!("extra/{i:06}")).collect();
    let views: Vec<(&str, safetensors::tensor::TensorView)> = names
        .iter()
        .map(|n| (n.as_str(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![0], &empty).unwrap()))
        .collect();
    let many = safetensors::serialize(views, &None).unwrap();
    let err = mnist_convnet().build().unwrap().load_weights_bytes(&many).unwrap_err().to_string();
    assert!(err.len() < 500, "{} bytes", err.len());
    assert!(err.contains("200000 tensor(s) not in the model: extra/000000, extra/000001"), "{err}");
    assert!(err.contains("and 199995 more"), "{err}");
}

// 12. Silent acceptances: PGM trailing data and bad palette indices are
// errors; transparency is composited with a note.
#[test]
fn issue_12_trailing_pgm_data_bad_palettes_and_alpha_are_not_silent() {
    let dir = tmp("silent");
    let model = dir.join("m.st");
    mnist_convnet().build().unwrap().save(&model).unwrap();
    let predict = |img: &Path| convnet(&["predict", "--weights", s(&model), s(img)]);
    // Two PGM images in one file.
    let mut pgm = b"P5 28 28 255\n".to_vec();
    pgm.extend([0u8; 784]);
    let one = dir.join("one.pgm");
    std::fs::write(&one, [&pgm[..], b"\n"].concat()).unwrap();
    assert_eq!(predict(&one).code, Some(0));
    let two = dir.join("two.pgm");
    std::fs::write(&two, [&pgm[..], &pgm[..]].concat()).unwrap();
    assert_error(&predict(&two), &["two.pgm: 797 bytes after the first image"]);
    // A palette of 2 entries, pixels indexing entry 5.
    let pal = dir.join("palette.png");
    {
        let mut e = png::Encoder::new(std::fs::File::create(&pal).unwrap(), 28, 28);
        e.set_color(png::ColorType::Indexed);
        e.set_depth(png::BitDepth::Eight);
        e.set_palette(vec![0, 0, 0, 255, 255, 255]);
        let mut px = vec![0u8; 784];
        px[3 * 28 + 7] = 5;
        e.write_header().unwrap().write_image_data(&px).unwrap();
    }
    assert_error(&predict(&pal), &["palette.png: pixel (7, 3) has palette index 5, but the palette has 2 entries"]);
    // A white digit on a transparent canvas: composited over black, with a note,
    // and classified as the same image drawn opaque.
    let digit = |alpha_bg: u8| {
        image::ImageBuffer::from_fn(28, 28, |x, y| {
            let ink = (10..18).contains(&x) && y > 4;
            image::LumaA([if ink { 255 } else { 0 }, if ink { 255 } else { alpha_bg }])
        })
    };
    let clear = dir.join("clear.png");
    let opaque = dir.join("opaque.png");
    image::DynamicImage::ImageLumaA8(digit(0)).save(&clear).unwrap();
    image::DynamicImage::ImageLumaA8(digit(255)).save(&opaque).unwrap();
    let run_clear = predict(&clear);
    assert_eq!(run_clear.code, Some(0), "{run_clear:?}");
    assert!(
        run_clear.stderr.contains("clear.png: 600 of 784 pixels are not opaque; composited over a black"),
        "{run_clear:?}"
    );
    let run_opaque = predict(&opaque);
    assert_eq!(run_opaque.code, Some(0), "{run_opaque:?}");
    assert!(!run_opaque.stderr.contains("note"), "{run_opaque:?}");
    let verdict = |r: &Run| r.stdout.split(": ").nth(1).unwrap_or_default().to_string();
    assert_eq!(verdict(&run_clear), verdict(&run_opaque));
}

#[test]
fn a_small_model_file_loads_and_predicts_under_the_limits() {
    // The positive control: the same machinery accepts what it should.
    let dir = tmp("control");
    let model = dir.join("m.st");
    Sequential::new()
        .add(Flatten::new().input_shape((28, 28, 1)))
        .add(Dense::new(8).activation(Relu))
        .add(Dense::new(10).activation(Softmax))
        .build()
        .unwrap()
        .save(&model)
        .unwrap();
    let img = digit_png(&dir);
    let run = convnet(&["predict", "--weights", s(&model), s(&img)]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("digit.png: "), "{run:?}");
}

fn weight_bits(m: &Model) -> Vec<u32> {
    m.weights().iter().flat_map(|(_, t)| t.data().iter().map(|x| x.to_bits())).collect()
}

fn quiet<'a>(epochs: usize, batch_size: usize) -> convnet::FitOptions<'a> {
    convnet::FitOptions { epochs, batch_size, shuffle: false, verbose: convnet::Verbose::Silent, ..Default::default() }
}

fn four_to_three(init: convnet::Initializer) -> Model {
    Sequential::new().add(Dense::new(3).activation(Softmax).kernel_initializer(init).input_shape(4)).build().unwrap()
}

// 7. Training that diverges stops with an error naming epoch and batch, and
// keeps the last good weights (in memory and in the last checkpoint).
#[test]
fn issue_7_training_that_diverges_stops_and_keeps_the_last_good_weights() {
    use convnet::optimizers::{LearningRate, Sgd};
    use convnet::{Loss, Metric, ModelCheckpoint};
    use convnet_tensor::{Shape, Tensor};
    let dir = tmp("diverge");
    let x =
        Tensor::from_slice(Shape::matrix(8, 4), &(0..32).map(|i| (i % 7) as f32 * 300.0).collect::<Vec<_>>()).unwrap();
    let y = Tensor::from_slice(Shape::vector(8), &[0., 1., 2., 0., 1., 2., 0., 1.]).unwrap();
    // Two steps an epoch; from the third step on the learning rate is 1e38,
    // so epoch 2's first update overflows the weights to infinity.
    let lr = LearningRate::PiecewiseConstant { boundaries: vec![1], values: vec![0.001, 1e38] };
    let ckpt = dir.join("ckpt.st");
    let mut model = four_to_three(convnet::Initializer::GlorotUniform);
    model.compile(Sgd::new(lr.clone()), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let mut opts = quiet(3, 4);
    opts.callbacks.push(Box::new(ModelCheckpoint::new(&ckpt)));
    let err = model.fit(&x, &y, opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, convnet::Error::NonFiniteParameter { epoch: 2, batch: 1, .. }), "{msg}");
    assert!(msg.contains("dense/kernel became") && msg.contains("at epoch 2, batch 1"), "{msg}");
    assert!(model.weights().iter().all(|(_, t)| t.data().iter().all(|v| v.is_finite())));
    // The weights are exactly those after epoch 1, which the checkpoint holds.
    let saved = Model::load(&ckpt).unwrap();
    assert_eq!(weight_bits(&model), weight_bits(&saved));
    let mut again = four_to_three(convnet::Initializer::GlorotUniform);
    again.compile(Sgd::new(lr), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    again.fit(&x, &y, quiet(1, 4)).unwrap();
    assert_eq!(weight_bits(&model), weight_bits(&again));

    // An infinite gradient with a finite loss: refused before the update.
    // x = 3e38 through a tiny first weight gives a finite hidden value and
    // loss, but the first kernel's gradient is x times about 20: infinite.
    let mut two = Sequential::new()
        .add(Dense::new(1).use_bias(false).input_shape(1))
        .add(Dense::new(3).activation(Softmax).use_bias(false))
        .build()
        .unwrap();
    two.set_weights(&[vec![1e-38], vec![10.0, -10.0, 0.0]]).unwrap();
    two.compile(Sgd::new(0.01), Loss::SparseCategoricalCrossentropy, &[]).unwrap();
    let before = weight_bits(&two);
    let huge = Tensor::from_slice(Shape::matrix(1, 1), &[3e38]).unwrap();
    let label = Tensor::from_slice(Shape::vector(1), &[1.0]).unwrap();
    let err = two.fit(&huge, &label, quiet(1, 1)).unwrap_err().to_string();
    assert!(err.contains("the gradient of dense/kernel holds") && err.contains("epoch 1, batch 1"), "{err}");
    assert_eq!(weight_bits(&two), before);
}

// 7. Keras's TerminateOnNaN, for training with the built-in check off.
#[test]
fn issue_7_terminate_on_nan_stops_training_with_the_check_off() {
    use convnet::optimizers::Sgd;
    use convnet::{Loss, TerminateOnNaN};
    use convnet_tensor::{Shape, Tensor};
    let x = Tensor::from_slice(Shape::matrix(6, 4), &[0.5; 24]).unwrap();
    let mut y = Tensor::zeros(Shape::matrix(6, 3));
    y.data_mut()[0] = 1.0;
    y.data_mut()[4] = 1.0;
    y.data_mut()[3 * 3] = f32::NAN; // example 3: batch 2 of 2-example batches
    let mut model = four_to_three(convnet::Initializer::GlorotUniform);
    model.compile(Sgd::new(0.01), Loss::CategoricalCrossentropy, &[]).unwrap();
    // With the check on (the default): an error.
    let err = model.fit(&x, &y, quiet(2, 2)).unwrap_err().to_string();
    assert!(err.contains("loss is NaN at epoch 1, batch 2"), "{err}");
    // With it off, TerminateOnNaN ends fit normally after that batch.
    let mut opts = quiet(2, 2);
    opts.check_finite = false;
    let (tx, rx) = std::sync::mpsc::channel();
    struct Report(TerminateOnNaN, std::sync::mpsc::Sender<Option<(usize, usize)>>);
    impl convnet::Callback for Report {
        fn on_batch_end(&mut self, logs: &convnet::BatchLogs) -> convnet::Result<convnet::Control> {
            let c = self.0.on_batch_end(logs)?;
            self.1.send(self.0.stopped_at).unwrap();
            Ok(c)
        }
    }
    opts.callbacks.push(Box::new(Report(TerminateOnNaN::default(), tx)));
    let history = model.fit(&x, &y, opts).unwrap();
    assert_eq!(history.epochs.len(), 1);
    assert_eq!(rx.try_iter().last(), Some(Some((1, 2))));
}

//! `convnet visualize activations|filters|gradcam`: every PNG written is
//! valid, of the stated size and not constant; bad requests are clear
//! errors (exit code 1 with a message naming the problem).

use std::path::{Path, PathBuf};
use std::process::Command;

fn convnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_convnet")).args(args).env_remove("CONVNET_SIMD").output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = convnet(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(args: &[&str]) -> String {
    let out = convnet(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Decodes `path` as a PNG: its size, and that it is not one colour.
fn png(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "{} is not a PNG", path.display());
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8();
    let first = *img.get_pixel(0, 0);
    assert!(img.pixels().any(|p| *p != first), "{} is one colour", path.display());
    img.dimensions()
}

/// The first MNIST test digit (a 7) as a PGM file.
fn digit(dir: &Path) -> PathBuf {
    let mnist = convnet_datasets::Mnist::load_default().unwrap();
    let mut pgm = b"P5 28 28 255\n".to_vec();
    pgm.extend_from_slice(mnist.test.image(0).unwrap());
    let path = dir.join("seven.pgm");
    std::fs::write(&path, pgm).unwrap();
    path
}

#[test]
fn pictures_are_valid_sized_and_not_constant() {
    let dir = std::env::temp_dir().join(format!("convnet-cli-visualize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seven = digit(&dir);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let act = dir.join("act");
    let said = ok(&["visualize", "activations", "--image", &s(&seven), "--out", &s(&act)]);
    assert!(said.contains("conv2d (26x26x32)") && said.contains("conv2d_2 (3x3x64)"), "{said}");
    let names = ["00_conv2d", "01_max_pooling2d", "02_conv2d_1", "03_max_pooling2d_1", "04_conv2d_2"];
    for name in names {
        let (w, h) = png(&act.join(format!("{name}.png")));
        assert!(w >= 16 * 32 && h > 32, "{name}: {w}x{h}");
    }
    // 26x26 tiles zoomed 2x, 16 a row, two rows, a title bar at scale 2.
    assert_eq!(png(&act.join("00_conv2d.png")), (16 * (52 + 2) + 2, 16 + 4 + 2 * (52 + 2) + 2));

    let filters = dir.join("filters.png");
    let said = ok(&[
        "visualize",
        "filters",
        "--layer",
        "conv2d_1",
        "--filters",
        "8",
        "--steps",
        "3",
        "--per-row",
        "4",
        "--out",
        &s(&filters),
    ]);
    assert!(said.contains("conv2d_1: 8 filters, 3 steps"), "{said}");
    // 28x28 tiles zoomed 3x, 4 a row, two rows; title at scale 1 (narrower than 400).
    assert_eq!(png(&filters), (4 * (84 + 2) + 2, 8 + 4 + 2 * (84 + 2) + 2));

    let cam = dir.join("cam.png");
    let said = ok(&[
        "visualize",
        "gradcam",
        "--image",
        &s(&seven),
        "--class",
        "7",
        "--colormap",
        "viridis",
        "--alpha",
        "0.5",
        "--out",
        &s(&cam),
    ]);
    assert!(said.contains("class 7") && said.contains("layer conv2d_2 (3x3)"), "{said}");
    assert_eq!(png(&cam), (224, 224));

    let e = err(&["visualize", "filters", "--layer", "conv9", "--out", &s(&filters)]);
    assert!(e.contains("no layer \"conv9\""), "{e}");
    let e = err(&["visualize", "gradcam", "--image", &s(&seven), "--class", "10", "--out", &s(&cam)]);
    assert!(e.contains("class 10 is out of range"), "{e}");
    let e = err(&["visualize", "filters", "--layer", "conv2d", "--filters", "33", "--out", &s(&filters)]);
    assert!(e.contains("which has 32"), "{e}");
    let e = err(&["visualize", "gradcam", "--image", &s(&dir.join("missing.png")), "--out", &s(&cam)]);
    assert!(e.contains("missing.png"), "{e}");
    let e = err(&["visualize", "gradcam", "--image", &s(&seven), "--colormap", "hot", "--out", &s(&cam)]);
    assert!(e.contains("unknown colormap"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

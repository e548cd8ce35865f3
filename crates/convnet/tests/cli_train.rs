//! `convnet train --model FILE|NAME --data DIR`, `eval`/`predict --model`, `bench step`:
//! the architecture files in `models/`, image folders the tests write, and bad inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn convnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(args)
        .env_remove("CONVNET_SIMD")
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convnet-cli-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Exit 1, a message naming each needle, no panic, and no training started.
fn err(out: &Output, needles: &[&str]) {
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{}\nstderr:\n{e}", text(&out.stdout));
    for n in needles {
        assert!(e.contains(n), "stderr should contain {n:?}:\n{e}");
    }
    assert!(!e.contains("internal error"), "{e}");
    assert!(!text(&out.stdout).contains("Epoch"), "trained first: {}", text(&out.stdout));
}

/// A class's images: a coloured square (red for the first class, blue for
/// the second, green for a third) on dark noise, sizes varying around `side`,
/// alternately PNG and JPEG.
fn write_class(dir: &Path, class: usize, n: usize, side: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let colour = [[220u8, 40, 40], [40, 40, 220], [40, 220, 40]][class];
    for i in 0..n {
        let (w, h) = (side + (i as u32 * 7) % 11, side + (i as u32 * 5) % 9);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            if (w / 4..3 * w / 4).contains(&x) && (h / 4..3 * h / 4).contains(&y) {
                image::Rgb(colour)
            } else {
                let v = ((x * 31 + y * 17 + i as u32 * 13) % 50) as u8;
                image::Rgb([v, v, v])
            }
        });
        let ext = if i % 2 == 0 { "png" } else { "jpg" };
        img.save(dir.join(format!("{i:03}.{ext}"))).unwrap();
    }
}

#[test]
fn the_model_files_are_the_builtin_models() {
    for (file, name, params) in [
        ("models/mnist.json", "mnist", "93,322"),
        ("models/small-data.json", "small-data", "3,453,121"),
        ("models/small-data-augmented.json", "small-data", "3,453,121"),
    ] {
        let from_file = ok(&convnet(&["summary", "--model", s(&repo(file))]));
        assert!(from_file.contains(&format!("Total params: {params}\n")), "{file}:\n{from_file}");
        if !file.contains("augmented") {
            assert_eq!(from_file, ok(&convnet(&["summary", "--model", name])), "{file} differs from {name}");
        }
        // The library reads them too.
        let json = std::fs::read_to_string(repo(file)).unwrap();
        let model = convnet::Sequential::from_json(&json).unwrap().build().unwrap();
        assert_eq!(model.to_json().replace(char::is_whitespace, ""), json.replace(char::is_whitespace, ""));
    }
    // The book's VGG16 fine-tuning model: the VGG16 base (Keras's layer names, so the ImageNet notop
    // file loads into it with train --weights), Flatten, Dense(256, relu), Dense(1, sigmoid).
    let book = ok(&convnet(&["summary", "--model", s(&repo("models/vgg16-fine-tuning.json"))]));
    assert!(book.contains("Total params: 16,812,353\n"), "{book}");
    assert!(book.contains("block5_pool (MaxPooling2D)   (None, 4, 4, 512)         0"), "{book}");
    let json = std::fs::read_to_string(repo("models/vgg16-fine-tuning.json")).unwrap();
    let model = convnet::Sequential::from_json(&json).unwrap().build().unwrap();
    assert_eq!(model.to_json().replace(char::is_whitespace, ""), json.replace(char::is_whitespace, ""));
    // MobileNet v1's first blocks (the separable network BENCHMARKS times against PyTorch,
    // whose script counts the same 134,698 parameters).
    let sep = ok(&convnet(&["summary", "--model", s(&repo("models/separable-mobilenet.json"))]));
    assert!(sep.contains("Total params: 134,698\n"), "{sep}");
    let last = sep.lines().find(|l| l.starts_with("separable_conv2d_4 ")).unwrap_or_default();
    assert!(last.contains("(None, 14, 14, 256)") && last.contains(" 68096"), "{sep}");
    let aug = ok(&convnet(&["summary", "--model", s(&repo("models/small-data-augmented.json"))]));
    for layer in ["random_flip (RandomFlip)", "random_rotation (RandomRotat", "random_zoom (RandomZoom)"] {
        assert!(aug.contains(layer), "{aug}");
    }
}

#[test]
fn train_a_model_file_on_an_image_folder_then_eval_and_predict() {
    let dir = tmp("folder");
    let data = dir.join("photos");
    write_class(&data.join("cats"), 0, 12, 40);
    write_class(&data.join("dogs"), 1, 12, 40);
    std::fs::write(data.join("cats/notes.txt"), "not an image").unwrap();
    let (model, metrics, plot) = (dir.join("m.safetensors"), dir.join("metrics.json"), dir.join("curves.png"));
    let out = convnet(&[
        "train",
        "--model",
        s(&repo("models/small-data.json")),
        "--data",
        s(&data),
        "--validation-split",
        "0.25",
        "--image-size",
        "48,48",
        "--rescale",
        "1/255",
        "--learning-rate",
        "1e-3",
        "--epochs",
        "2",
        "--batch-size",
        "6",
        "--save",
        s(&model),
        "--metrics-json",
        s(&metrics),
        "--plot",
        s(&plot),
    ]);
    let stdout = ok(&out);
    let png = image::open(&plot).expect("--plot writes a PNG");
    assert!(png.width() > 100 && png.height() > 100);
    assert!(stdout.contains("rescaling (Rescaling)        (None, 48, 48, 3)"), "{stdout}");
    assert!(stdout.contains("Epoch 2/2\n3/3 [="), "{stdout}");
    assert!(stdout.contains("val_accuracy"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(json["train_examples"], 18);
    assert_eq!(json["loss_function"], "binary_crossentropy");
    assert_eq!(json["class_names"], serde_json::json!(["cats", "dogs"]));
    assert!(json["epochs"][1]["val_loss"].as_f64().is_some(), "{json}");

    // eval reads the folder at the model's size, with its class names.
    let out = ok(&convnet(&["eval", "--model", s(&model), "--data", s(&data)]));
    let acc: f64 = out.lines().find_map(|l| l.strip_prefix("test accuracy: ")).unwrap().parse().unwrap();
    assert!(acc > 0.8, "{out}");

    // predict: RGB and grey files of odd sizes, and a directory.
    let odd = dir.join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    let rgb = odd.join("a_red.png");
    image::RgbImage::from_fn(37, 23, |x, y| {
        if (9..28).contains(&x) && (6..17).contains(&y) {
            image::Rgb([220, 40, 40])
        } else {
            image::Rgb([10, 10, 10])
        }
    })
    .save(&rgb)
    .unwrap();
    let grey = odd.join("b_grey.jpg");
    image::GrayImage::from_fn(51, 19, |x, _| image::Luma([(x * 5) as u8])).save(&grey).unwrap();
    let out = ok(&convnet(&["predict", "--model", s(&model), s(&rgb), s(&grey)]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with(&format!("{}: cats (", rgb.display())), "{out}");
    assert!(lines[1].starts_with(&format!("{}: ", grey.display())), "{out}");
    for l in &lines {
        assert!(l.contains("cats (") && l.contains("dogs ("), "both classes, top 5 of 2: {l}");
    }
    let out = ok(&convnet(&["predict", "--model", s(&model), "--json", "--top", "1", s(&odd)]));
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0]["file"], s(&rgb));
    assert_eq!(rows[0]["predictions"].as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["predictions"][0]["class"], "cats");
    let p = rows[0]["predictions"][0]["probability"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&p), "{p}");

    // An undecodable file is reported; the others are still classified; exit 1.
    let bad = odd.join("c_broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = convnet(&["predict", "--model", s(&model), s(&odd)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout).lines().count(), 2, "{}", text(&out.stdout));
    let e = text(&out.stderr);
    assert!(e.contains("c_broken.png") && e.contains("1 of 3 files could not be classified"), "{e}");
    // --center is for grey models.
    let out = convnet(&["predict", "--model", s(&model), "--center", s(&rgb)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--center"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn train_the_book_layout_with_a_grey_model_file() {
    let dir = tmp("book");
    for (split, n) in [("train", 8), ("validation", 4), ("test", 4)] {
        for (k, class) in ["left", "right"].iter().enumerate() {
            write_class(&dir.join(split).join(class), k, n, 30);
        }
    }
    let model = dir.join("m.st");
    let out = convnet(&[
        "train",
        "--model",
        s(&repo("models/mnist.json")),
        "--data",
        s(&dir),
        "--rescale",
        "1/255",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--quiet",
        "--save",
        s(&model),
    ]);
    let stdout = ok(&out);
    assert!(stdout.contains("test accuracy: "), "{stdout}");
    // The class names are saved with the model; predict prints them (two of ten outputs named).
    let img = dir.join("test/left/000.png");
    let out = ok(&convnet(&["predict", "--model", s(&model), "--top", "2", s(&img)]));
    assert!(out.contains("left (") || out.contains("right ("), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_train_inputs_are_clear_errors_before_training() {
    let dir = tmp("bad");
    let data = dir.join("photos");
    for k in 0..3 {
        write_class(&data.join(format!("c{k}")), k, 2, 20);
    }
    let data = s(&data).to_string();
    let train = |extra: &[&str]| convnet(&[&["train", "--epochs", "1"][..], extra].concat());
    // Three classes for one sigmoid unit.
    let out = train(&["--model", "small-data", "--data", &data, "--image-size", "48,48"]);
    err(&out, &["3 classes (c0, c1, c2) but the model's last layer has 1 unit", "binary_crossentropy"]);
    // Images too small for the model's layers.
    let out = train(&["--model", "small-data", "--data", &data, "--image-size", "20,20"]);
    err(&out, &["small-data", "max_pooling2d_2", "larger than the padded input"]);
    // No such model, and a model file that is not one.
    let out = train(&["--model", "nosuchmodel"]);
    err(&out, &["nosuchmodel", "not a built-in model (mnist, small-data, vgg16)"]);
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{\"layers\": [{\"class_name\": \"Conv9D\"}]}").unwrap();
    err(&train(&["--model", s(&junk)]), &["junk.json", "Conv9D"]);
    // Folder flags on MNIST data are usage errors (2).
    let mnist = repo("data/mnist");
    let out = train(&["--data", s(&mnist), "--rescale", "1/255"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--rescale applies to image folders"));
    let out = train(&["--rescale", "1/0"]);
    assert_eq!(out.status.code(), Some(2));
    // A bad output path, and an empty folder.
    let out = train(&["--model", "small-data", "--data", &data, "--save", "/nonexistent/dir/m.st"]);
    err(&out, &["--save", "/nonexistent/dir", "no such directory"]);
    let empty = dir.join("empty/only");
    std::fs::create_dir_all(&empty).unwrap();
    let out = train(&["--model", "small-data", "--data", s(empty.parent().unwrap())]);
    err(&out, &["only"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn predict_center_reads_a_seven_drawn_in_a_corner() {
    // A 7 as a new user draws it: black ink, a corner of a white 200x200 canvas.
    let dir = tmp("seven");
    let seven = dir.join("seven.png");
    let mut img = image::GrayImage::from_pixel(200, 200, image::Luma([255]));
    let mut stroke = |(x0, y0): (f32, f32), (x1, y1): (f32, f32)| {
        for t in 0..=400 {
            let t = t as f32 / 400.0;
            let (cx, cy) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            for dy in -3..=3 {
                for dx in -3..=3 {
                    img.put_pixel((cx as i32 + dx) as u32, (cy as i32 + dy) as u32, image::Luma([0]));
                }
            }
        }
    };
    stroke((12.0, 15.0), (62.0, 15.0));
    stroke((62.0, 15.0), (30.0, 88.0));
    img.save(&seven).unwrap();
    // An MNIST model trained here (10,000 examples, one epoch: about 93% test accuracy).
    let model = dir.join("mnist.st");
    ok(&convnet(&["train", "--limit", "10000", "--epochs", "1", "--quiet", "--save", s(&model)]));
    let out = ok(&convnet(&["predict", "--model", s(&model), "--invert", "--center", "--json", s(&seven)]));
    let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(row["predictions"][0]["class"], "7", "{out}");
    assert_eq!(row["predictions"].as_array().unwrap().len(), 5);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bench_step_times_a_training_step_and_a_forward_pass() {
    for extra in [&[][..], &["--inference"][..]] {
        let out = convnet(
            &[&["bench", "step", "--model", "mnist", "--batch-size", "8", "--steps", "20", "--json"][..], extra]
                .concat(),
        );
        let json: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
        let (m, ips) = (json["median_s"].as_f64().unwrap(), json["images_per_s"].as_f64().unwrap());
        assert!(m > 0.0 && (ips * m - 8.0).abs() < 1e-6, "{json}");
        assert_eq!(json["steps"], 20);
        assert_eq!(json["pass"], if extra.is_empty() { "training_step" } else { "inference" });
    }
    let out = ok(&convnet(&[
        "bench",
        "step",
        "--model",
        s(&repo("models/small-data-augmented.json")),
        "--input-shape",
        "48,48,3",
        "--batch-size",
        "2",
        "--steps",
        "20",
    ]));
    assert!(out.contains("training step at batch 2, input [48, 48, 3]") && out.contains("images/s"), "{out}");
    // Too few steps is a usage error; an input shape the model cannot take an error naming the layer.
    let out = convnet(&["bench", "step", "--model", "mnist", "--batch-size", "8", "--steps", "5"]);
    assert_eq!(out.status.code(), Some(2));
    let out = convnet(&["bench", "step", "--model", "mnist", "--batch-size", "8", "--input-shape", "5,5,1"]);
    err(&out, &["conv2d"]);
    let out = convnet(&["bench", "step", "--model", "small-data", "--batch-size", "100000"]);
    err(&out, &["--batch-size 100000", "more than the limit", "CONVNET_MAX_BENCH_BYTES"]);
}

fn keras_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras").join(name)
}

/// The bits of every weight of `layer` (`layer/kernel`, `layer/bias`).
fn layer_bits(m: &convnet::Model, layer: &str) -> Vec<u32> {
    let prefix = format!("{layer}/");
    m.weights()
        .iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .flat_map(|(_, t)| t.data().to_vec())
        .map(f32::to_bits)
        .collect()
}

/// The chapter's fine-tuning from one command: the book's model (a tiny
/// VGG-shaped base under Flatten, Dense, Dense, written by Keras), the base's
/// weights from a file in the ImageNet files' layout (which holds the base
/// only), block 1 frozen. After the run, block 1 holds the file's weights bit
/// for bit, block 2 and the head have moved; `--weights` with a whole-model
/// file loads every layer.
#[test]
fn train_weights_and_trainable_from_fine_tune_a_pretrained_base() {
    let dir = tmp("finetune");
    let data = dir.join("photos");
    write_class(&data.join("cats"), 0, 6, 16);
    write_class(&data.join("dogs"), 1, 6, 16);
    let saved = dir.join("tuned.safetensors");
    let (book, base_file) = (keras_fixture("nested.keras"), keras_fixture("vgg_legacy.legacy.weights.h5"));
    let out = convnet(&[
        "train",
        "--model",
        s(&book),
        "--weights",
        s(&base_file),
        "--trainable-from",
        "block2_conv1",
        "--data",
        s(&data),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--learning-rate",
        "0.01",
        "--save",
        s(&saved),
    ]);
    let stdout = ok(&out);
    assert!(stdout.contains("Trainable params: "), "{stdout}");
    let frozen_count = 3 * 3 * 3 * 4 + 4 + 3 * 3 * 4 * 4 + 4; // block1_conv1 + block1_conv2
    assert!(stdout.contains(&format!("Non-trainable params: {frozen_count}\n")), "{stdout}");

    let tuned = convnet::Model::load(&saved).unwrap();
    let mut base = convnet::keras::load_any(keras_fixture("nested.keras")).unwrap();
    let pristine = convnet::keras::load_any(keras_fixture("nested.keras")).unwrap();
    // The base's weights as the file holds them, through the library's own loader.
    let mut tiny = convnet::Sequential { layers: base.to_sequential().layers[..5].to_vec(), ..base.to_sequential() }
        .build()
        .unwrap();
    tiny.load_keras_weights(&base_file).unwrap();
    base.copy_weights_from(&tiny).unwrap();
    for layer in ["block1_conv1", "block1_conv2"] {
        assert_eq!(layer_bits(&tuned, layer), layer_bits(&tiny, layer), "{layer}: loaded and frozen");
        assert_ne!(layer_bits(&tuned, layer), layer_bits(&pristine, layer), "{layer}: the file's, not the model's");
    }
    assert_ne!(layer_bits(&tuned, "block2_conv1"), layer_bits(&tiny, "block2_conv1"), "block2_conv1 trains");
    let head = tuned.layers().last().unwrap().name.clone();
    assert_ne!(layer_bits(&tuned, &head), layer_bits(&pristine, &head), "{head} trains");

    // A whole-model file loads every layer: start from the tuned model's
    // weights with everything but the top layer frozen; every frozen layer
    // then ends the run with the tuned model's weights. (The classes swapped,
    // so the tuned model is confidently wrong and its top layer must move;
    // on the data it fitted its sigmoid saturates and the gradient is 0.)
    let swapped = dir.join("swapped");
    write_class(&swapped.join("cats"), 1, 6, 16);
    write_class(&swapped.join("dogs"), 0, 6, 16);
    let again = dir.join("again.safetensors");
    let out = convnet(&[
        "train",
        "--model",
        s(&book),
        "--weights",
        s(&saved),
        "--trainable-from",
        &head,
        "--data",
        s(&swapped),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--quiet",
        "--save",
        s(&again),
    ]);
    ok(&out);
    let again = convnet::Model::load(&again).unwrap();
    for l in tuned.layers().iter().filter(|l| !l.params.is_empty() && l.name != head) {
        assert_eq!(
            layer_bits(&again, &l.name),
            layer_bits(&tuned, &l.name),
            "{}: loaded from the whole-model file",
            l.name
        );
    }
    assert_ne!(layer_bits(&again, &head), layer_bits(&tuned, &head), "{head} trains");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Bad `--weights` and `--trainable-from`: exit 1 before any training, the
/// flag, the file or layer, and the problem named.
#[test]
fn bad_weights_and_trainable_from_are_clear_errors_before_training() {
    let dir = tmp("finetune-bad");
    let data = dir.join("photos");
    write_class(&data.join("cats"), 0, 2, 16);
    write_class(&data.join("dogs"), 1, 2, 16);
    let book = keras_fixture("nested.keras");
    let train = |extra: &[&str]| {
        convnet(&[&["train", "--epochs", "1", "--model", s(&book), "--data", s(&data)][..], extra].concat())
    };
    // An unknown layer: named, with the model's layers listed.
    err(&train(&["--trainable-from", "block9_conv1"]), &["--trainable-from", "block9_conv1", "block1_conv1"]);
    // No such file.
    let missing = dir.join("missing.h5");
    err(&train(&["--weights", s(&missing)]), &["--weights", "missing.h5"]);
    // Weights of another architecture: the whole model and its base both refused, shapes named.
    let other = keras_fixture("sequential.weights.h5");
    err(&train(&["--weights", s(&other)]), &["--weights", "sequential.weights.h5", "convolutional base"]);
    // The same layers, one of another shape (Dense(6) where the model has Dense(5)): named, with both shapes.
    let mut seq = convnet::keras::load_any(&book).unwrap().to_sequential();
    let convnet::Layer::Dense(d) = &mut seq.layers[6] else { panic!("layer 6 of the book model is a Dense") };
    d.units = 6;
    let wider = dir.join("wider.weights.h5");
    seq.build().unwrap().save_as(&wider).unwrap();
    err(
        &train(&["--weights", s(&wider)]),
        &["--weights", "wider.weights.h5", "dense_4", "(128, 6), the model expects (128, 5)"],
    );
    // A file that is not weights at all.
    let junk = dir.join("junk.h5");
    std::fs::write(&junk, b"not an hdf5 file").unwrap();
    err(&train(&["--weights", s(&junk)]), &["--weights", "junk.h5"]);
    std::fs::remove_dir_all(dir).unwrap();
}

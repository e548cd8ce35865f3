//! Replays the `weights` fuzz target's committed corpus and regressions
//! (`fuzz/corpus/weights`, `fuzz/regressions/weights`) through the same calls
//! as the target, so stable `cargo test` covers them without a fuzzer.

use convnet::{mnist_convnet, Model};
use std::path::PathBuf;

fn bits(m: &Model) -> Vec<u32> {
    m.weights().iter().flat_map(|(_, t)| t.data().iter().map(|x| x.to_bits())).collect()
}

#[test]
fn weights_corpus_loads_or_is_rejected_without_changing_the_model() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let pristine = bits(&mnist_convnet().build().unwrap());
    let mut seen = 0;
    for dir in ["corpus/weights", "regressions/weights"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for e in entries {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let mut model = mnist_convnet().build().unwrap();
            if model.load_weights_bytes(&bytes).is_err() {
                assert_eq!(bits(&model), pristine, "{} changed the model", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 3, "the committed seeds are missing ({seen} files)");
    // A valid file of the chapter's model is accepted (the corpus seeds are all near misses).
    let good = mnist_convnet().seed(9).build().unwrap().weights_to_bytes().unwrap();
    let mut model = mnist_convnet().build().unwrap();
    model.load_weights_bytes(&good).unwrap();
    assert_ne!(bits(&model), pristine);
}

// The `architecture` and `image` targets' properties, the same file the
// fuzz targets include, replayed over their committed seeds and regressions.
mod architecture {
    include!("../../../fuzz/checks/architecture.rs");

    #[test]
    fn architecture_corpus_builds_within_limits_and_round_trips() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut seen = 0;
        for dir in ["corpus/architecture", "regressions/architecture"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = e.unwrap().path();
                if path.file_name().is_some_and(|n| n == ".keep") {
                    continue;
                }
                check_architecture(&std::fs::read(&path).unwrap());
                seen += 1;
            }
        }
        assert!(seen >= 7, "the committed seeds are missing ({seen} files)");
        // The named seeds' known outcomes.
        let seed = |name: &str| std::fs::read_to_string(root.join("corpus/architecture").join(name)).unwrap();
        let build = |name: &str| convnet::Sequential::from_json(&seed(name)).unwrap().build_with(&fuzz_limits());
        assert_eq!(build("chapter_model.json").unwrap().param_count(), 93_322);
        assert!(build("every_layer_kind.json").is_ok());
        let err = build("billion_filters.json").unwrap_err().to_string();
        assert!(err.contains("layer conv2d") && err.contains("more than the limit"), "{err}");
        assert!(build("kernel_larger_than_input.json").is_err());
        assert!(build("empty_layers.json").is_err());
    }
}

mod image {
    include!("../../../fuzz/checks/image.rs");

    #[test]
    fn image_corpus_decodes_to_28x28_or_is_rejected() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut seen = 0;
        for dir in ["corpus/image", "regressions/image"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = e.unwrap().path();
                if path.file_name().is_some_and(|n| n == ".keep") {
                    continue;
                }
                check_image(&std::fs::read(&path).unwrap());
                seen += 1;
            }
        }
        assert!(seen >= 18, "the committed seeds are missing ({seen} files)");
        let decode = |name: &str| {
            let bytes = std::fs::read(root.join("corpus/image").join(name)).unwrap();
            convnet::images::decode_grey(name, &bytes, 28, 28, &Default::default())
        };
        for ok in
            ["grey_28x28.png", "grey_5x3.png", "indexed_2bit.png", "p5.pgm", "p2.pgm", "p1.pbm", "p4.pbm", "p6.ppm"]
        {
            let d = decode(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(d.notes.is_empty(), "{ok}: {:?}", d.notes);
        }
        for noted in ["grey_alpha.png", "indexed_trns.png", "p7_grey_alpha.pam", "rgba16.png"] {
            assert!(decode(noted).unwrap().notes[0].contains("composited"), "{noted}");
        }
        let err = decode("indexed_out_of_range.png").unwrap_err().to_string();
        assert!(err.contains("palette index 7, but the palette has 2 entries"), "{err}");
        let err = decode("p5_two_images.pgm").unwrap_err().to_string();
        assert!(err.contains("13 bytes after the first image"), "{err}");
        assert!(decode("truncated.png").is_err());
        let wide = decode("wide_2000x1.png").unwrap();
        assert!(wide.pixels.iter().all(|&v| v == 0.0));
    }
}

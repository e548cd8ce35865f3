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

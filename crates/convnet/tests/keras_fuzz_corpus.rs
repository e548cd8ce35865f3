//! Replays the `keras` fuzz target's committed corpus and regressions
//! (`fuzz/corpus/keras`, `fuzz/regressions/keras`) through the same calls as
//! the target (`fuzz/checks/keras.rs`), so stable `cargo test` covers them
//! without a fuzzer, and checks the named seeds' known outcomes.

include!("../../../fuzz/checks/keras.rs");

#[test]
fn keras_corpus_loads_or_is_rejected_without_changing_the_model() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut seen = 0;
    for dir in ["corpus/keras", "regressions/keras"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = e.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".keep") {
                continue;
            }
            check_keras(&std::fs::read(&path).unwrap());
            seen += 1;
        }
    }
    assert!(seen >= 8, "the committed seeds are missing ({seen} files)");
    let seed = |name: &str| check_keras(&std::fs::read(root.join("corpus/keras").join(name)).unwrap());
    assert_eq!(seed("sequential.keras"), (true, false));
    assert_eq!(seed("functional_legacy.h5"), (true, false));
    assert_eq!(seed("nested_legacy.h5"), (true, true));
    assert_eq!(seed("nested.weights.h5"), (false, true));
    assert_eq!(seed("imagenet_layout.weights.h5"), (false, false)); // the base only: too few tensors
    assert_eq!(seed("branching.keras"), (false, false));
    assert_eq!(seed("truncated.keras"), (false, false));
    assert_eq!(seed("truncated.weights.h5"), (false, false));
}

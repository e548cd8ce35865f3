//! Fuzzes the safetensors weights loader: arbitrary bytes loaded into the
//! chapter's model must give `Ok` or `Err`, never a panic, and a rejected
//! file must leave the model's weights exactly as they were.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn pristine() -> &'static Vec<u32> {
    static BITS: OnceLock<Vec<u32>> = OnceLock::new();
    BITS.get_or_init(|| bits(&convnet::mnist_convnet().build().expect("chapter model builds")))
}

fn bits(m: &convnet::Model) -> Vec<u32> {
    m.weights().iter().flat_map(|(_, t)| t.data().iter().map(|x| x.to_bits())).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut model = convnet::mnist_convnet().build().expect("chapter model builds");
    match model.load_weights_bytes(data) {
        Ok(()) => {
            // What loads must save and load back to the same bits.
            let again = model.weights_to_bytes().expect("loaded weights serialise");
            let mut other = convnet::mnist_convnet().seed(1).build().expect("chapter model builds");
            other.load_weights_bytes(&again).expect("re-saved weights load");
            assert_eq!(bits(&model), bits(&other));
        }
        Err(_) => assert_eq!(&bits(&model), pristine(), "a rejected file changed the model"),
    }
});

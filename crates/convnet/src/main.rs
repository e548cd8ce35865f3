//! The `convnet` command line.
fn main() {}

//! The corpus replay shared by the crates' `tests/fuzz_corpus.rs` (each
//! includes this file with `#[path]`): every input a cargo-fuzz target kept
//! in `<crate>/fuzz/corpus/<target>/`, and every prefix of it, goes through
//! the target's harness on the stable toolchain, so what the fuzzer found
//! stays a regression test and input cut anywhere is refused, not a panic.

use std::path::Path;

/// Replays the corpus of `target` through `f`; returns how many files it
/// held (a missing or empty corpus is the caller's assertion to make).
pub fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        f(&data);
        for cut in 0..data.len() {
            f(&data[..cut]);
        }
        files += 1;
    }
    files
}

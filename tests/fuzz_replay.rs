//! Replays the saved fuzz inputs on the stable toolchain: every seed of
//! `fuzz/corpus/TARGET/` and every crash once found, kept in
//! `fuzz/regressions/TARGET/`, goes through the same property as the fuzz
//! target (`webserv::props`), so a fixed crash stays fixed without nightly.

use std::fs;
use std::path::Path;

#[test]
fn saved_fuzz_inputs_hold_their_properties() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (name, property) in webserv::props::TARGETS {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("entry").path();
                let data = fs::read(&path).expect("read input");
                let outcome = std::panic::catch_unwind(|| property(&data));
                assert!(outcome.is_ok(), "{name}: {} fails", path.display());
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= webserv::props::TARGETS.len(),
        "only {replayed} inputs"
    );
}

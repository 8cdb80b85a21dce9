//! The README's directive reference is generated from the directive table;
//! this test fails when they differ. `UPDATE_README=1 cargo test --test
//! readme` rewrites the section between the markers.

use std::fs;
use std::path::Path;

const BEGIN: &str = "<!-- directives:begin -->\n";
const END: &str = "<!-- directives:end -->";

#[test]
fn readme_directive_reference_matches_the_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = fs::read_to_string(&path).expect("README.md");
    let start = readme.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = readme[start..].find(END).expect("end marker") + start;
    let expected = webserv::config::directive_reference();
    if readme[start..end] == expected {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
        fs::write(&path, updated).expect("write README.md");
        return;
    }
    panic!(
        "README directive reference is out of date; run UPDATE_README=1 cargo test --test readme.\nExpected:\n{expected}"
    );
}

//! `webserv fmt`: a messy file against its golden, idempotence and the same
//! routing table for every shipped config and every golden that loads, and
//! the command line (`-`, `--check` exit codes, atomic in-place rewrite).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use webserv::config::{self, fmt};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn webserv(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webserv"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run webserv")
}

fn conf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            conf_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "conf") {
            out.push(path);
        }
    }
}

/// Removes the formatted copy, whatever happens.
struct Copy(PathBuf);

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn messy_file_golden() {
    let input = fs::read_to_string(repo().join("tests/configs/fmt/messy.conf")).expect("read");
    let expected =
        fs::read_to_string(repo().join("tests/configs/fmt/messy.expected")).expect("read");
    assert_eq!(fmt::format(&input).expect("parses"), expected);
}

/// For every shipped config and every golden config: formatting twice
/// changes nothing more, and a file that loads loads into the same table
/// once formatted (the copy sits beside the original, so relative paths
/// and includes resolve alike).
#[test]
fn idempotent_and_same_routing_table() {
    let mut files = Vec::new();
    conf_files(&repo().join("conf.d"), &mut files);
    conf_files(&repo().join("tests/configs"), &mut files);
    files.sort();
    let mut compared = 0;
    for file in &files {
        let Ok(text) = fs::read_to_string(file) else {
            continue; // not UTF-8 on purpose (an invalid golden)
        };
        let Ok(once) = fmt::format(&text) else {
            continue; // a syntax error on purpose
        };
        let twice = fmt::format(&once).expect("formatted text parses");
        assert_eq!(once, twice, "not idempotent: {}", file.display());
        let (Some(before), _) = config::load(file) else {
            continue;
        };
        let name = file.file_name().expect("name").to_string_lossy();
        let copy = Copy(file.with_file_name(format!(".{name}.fmt-test")));
        fs::write(&copy.0, &once).expect("write copy");
        let (after, report) = config::load(&copy.0);
        let after = after.unwrap_or_else(|| panic!("{}: {}", file.display(), report.render_text()));
        assert_eq!(
            serde_json::to_value(&before).expect("json"),
            serde_json::to_value(&after).expect("json"),
            "different table: {}",
            file.display()
        );
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} configs compared");
}

#[test]
fn stdin_check_and_in_place() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let messy = fs::read_to_string(repo().join("tests/configs/fmt/messy.conf")).expect("read");
    let expected =
        fs::read_to_string(repo().join("tests/configs/fmt/messy.expected")).expect("read");
    let file = tmp.path().join("site.conf");
    fs::write(&file, &messy).expect("write");
    fs::write(tmp.path().join("clean.conf"), &expected).expect("write");

    // `-`: stdin to stdout.
    let mut child = Command::new(env!("CARGO_BIN_EXE_webserv"))
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(messy.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    // --check: lists what would change, writes nothing, exits 1.
    let out = webserv(&["fmt", "--check", "site.conf", "clean.conf"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "site.conf\n");
    assert_eq!(fs::read_to_string(&file).expect("read"), messy);

    // In place: a new file renamed over the old one, nothing left beside.
    let inode = fs::metadata(&file).expect("meta").ino();
    let out = webserv(&["fmt", "site.conf", "clean.conf"], tmp.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read_to_string(&file).expect("read"), expected);
    assert_ne!(fs::metadata(&file).expect("meta").ino(), inode);
    let mut names: Vec<String> = fs::read_dir(tmp.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["clean.conf", "site.conf"]);
    let out = webserv(&["fmt", "--check", "site.conf", "clean.conf"], tmp.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());

    // A syntax error: diagnostics, exit 1, the file untouched.
    fs::write(&file, "server {\n").expect("write");
    let out = webserv(&["fmt", "site.conf"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
    assert_eq!(fs::read_to_string(&file).expect("read"), "server {\n");
}

//! `webserv route` on a multi-server configuration, by the real binary:
//! each case's text and JSON output against goldens in
//! `tests/configs/route/` (paths shown relative to `$REPO`). Run with
//! `UPDATE_EXPECTED=1` to rewrite them, then review the diff.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const CONFIG: &str = "tests/configs/route/multi.conf";

/// (golden name, arguments after CONFIG)
const CASES: &[(&str, &[&str])] = &[
    ("index", &["http://www.example.test:8080/"]),
    (
        "proxy",
        &["http://a.example.test:8080/api/users?id=3", "-X", "POST"],
    ),
    ("default_server", &["http://127.0.0.1:8080/old"]),
    (
        "exact_return",
        &["http://127.0.0.1:8080/old", "-H", "Host: www.example.test"],
    ),
    (
        "cgi",
        &["http://www.example.test:8080/cgi-bin/echo.py/extra?q=1"],
    ),
    (
        "put",
        &["http://www.example.test:8080/files/report.txt", "-X", "PUT"],
    ),
    ("autoindex", &["http://www.example.test:8080/assets/"]),
    ("other_port", &["http://127.0.0.1:8081/nothing.html"]),
    ("specific_beside_wildcard", &["http://127.0.0.1:8082/"]),
    ("wildcard", &["http://127.0.0.2:8082/"]),
    (
        "method_not_allowed",
        &["http://www.example.test:8080/api/", "-X", "DELETE"],
    ),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn route(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webserv"))
        .arg("route")
        .arg(CONFIG)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run webserv route")
}

fn compare(name: &str, got: &str, failures: &mut Vec<String>) {
    let path = repo().join("tests/configs/route").join(name);
    if std::env::var_os("UPDATE_EXPECTED").is_some() {
        fs::write(&path, got).expect("write golden");
    }
    let expected = fs::read_to_string(&path).unwrap_or_default();
    if got != expected {
        failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
    }
}

#[test]
fn route_goldens_text_and_json() {
    let root = repo().canonicalize().expect("repo path");
    let root = root.to_str().expect("UTF-8 path");
    let mut failures = Vec::new();
    for (name, args) in CASES {
        let out = route(args);
        assert!(out.status.success(), "{name}: {:?}", out);
        let text = String::from_utf8_lossy(&out.stdout).replace(root, "$REPO");
        compare(&format!("{name}.txt"), &text, &mut failures);
        let mut json_args = args.to_vec();
        json_args.extend(["--format", "json"]);
        let out = route(&json_args);
        assert!(out.status.success(), "{name}: {:?}", out);
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let json = format!("{value:#}\n").replace(root, "$REPO");
        compare(&format!("{name}.json"), &json, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn route_refuses_what_it_cannot_route() {
    let out = route(&["http://127.0.0.1:9999/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no listen address on port 9999"));
    let out = route(&["ftp://127.0.0.1:8080/"]);
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(env!("CARGO_BIN_EXE_webserv"))
        .args(["route", "tests/configs/invalid/port_zero.conf", "http://a/"])
        .current_dir(repo())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
}

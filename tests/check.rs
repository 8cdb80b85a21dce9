//! `webserv check` on golden files: every `tests/configs/{invalid,warn}/*.conf`
//! is checked by the real binary with the repository root as working
//! directory, and its output compared with `NAME.expected` beside it.
//!
//! An `.expected` file holds stderr (the diagnostics and, on failure, the
//! count line) followed by stdout (the summary line, on success). Files in
//! `invalid/` must exit 1, files in `warn/` exit 0. Run with
//! `UPDATE_EXPECTED=1` to rewrite the `.expected` files after a deliberate
//! change, then review the diff.

#[path = "common/certs.rs"]
mod certs;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webserv"))
        .arg("check")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run webserv check")
}

fn configs(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo().join(dir))
        .expect("config directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

fn golden(dir: &str, expected_code: i32) -> usize {
    let update = std::env::var_os("UPDATE_EXPECTED").is_some();
    let mut failures = Vec::new();
    let files = configs(dir);
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 name");
        let relative = format!("{dir}/{name}");
        let out = check(&[&relative]);
        let got = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let expected_path = file.with_extension("expected");
        if update {
            fs::write(&expected_path, &got).expect("write .expected");
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{relative}: output differs\n--- expected\n{expected}--- got\n{got}"
            ));
        }
        if out.status.code() != Some(expected_code) {
            failures.push(format!(
                "{relative}: exit {:?}, expected {expected_code}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    files.len()
}

#[test]
fn invalid_configs_fail_with_exact_diagnostics() {
    assert!(golden("tests/configs/invalid", 1) >= 30);
}

#[test]
fn warnings_alone_do_not_fail() {
    assert!(golden("tests/configs/warn", 0) >= 5);
}

#[test]
fn every_shipped_config_passes() {
    // What `make cert` writes for the TLS demo (never committed).
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.d/examples/tls");
    if !tls.join("localhost.crt").exists() {
        certs::write_self_signed(&tls, "localhost", &["localhost", "127.0.0.1", "::1"])
            .expect("demo certificate");
    }
    let mut files = configs("conf.d");
    files.extend(configs("conf.d/examples"));
    assert!(files.len() >= 9);
    for file in files {
        let out = check(&[file.to_str().expect("UTF-8 path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", file.display());
        assert!(!stderr.contains(": error:"), "{}: {stderr}", file.display());
        // A warning in a shipped config is a broken or unsafe example; the
        // few deliberate ones carry an explained `# webserv: allow NAME`.
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(": warning:"))
            .collect();
        assert!(warnings.is_empty(), "{}: {warnings:?}", file.display());
    }
}

#[test]
fn several_semantic_errors_are_reported_together() {
    let out = check(&["tests/configs/invalid/many_errors.conf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.matches(": error: ").count() >= 7, "{stderr}");
}

#[test]
fn several_configs_fail_if_one_fails() {
    let out = check(&[
        "conf.d/examples/minimal.conf",
        "tests/configs/invalid/port_zero.conf",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("conf.d/examples/minimal.conf: ok: 1 server"),
        "{stdout}"
    );
}

#[test]
fn json_output() {
    let out = check(&["--format", "json", "conf.d/examples/redirects.conf"]);
    assert!(out.status.success());
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(value["valid"], true);
    assert_eq!(
        value["routing_table"]["sockets"][0]["addr"],
        "127.0.0.1:8080"
    );
    assert_eq!(
        value["routing_table"]["servers"][0]["locations"][2]["return"]["code"],
        418
    );

    let out = check(&[
        "--format",
        "json",
        "tests/configs/invalid/unknown_directive.conf",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(value["valid"], false);
    assert!(value.get("routing_table").is_none());
    let d = &value["diagnostics"][0];
    assert_eq!(d["file"], "tests/configs/invalid/unknown_directive.conf");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(3), Some(5))
    );
    assert_eq!(d["severity"], "error");
    assert_eq!(d["name"], "unknown-directive");
    assert_eq!(
        d["message"],
        "unknown directive \"lisen\" (did you mean \"listen\"?)"
    );
}

#[test]
fn missing_config_file() {
    let out = check(&["tests/configs/no-such.conf"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("tests/configs/no-such.conf: error: cannot read configuration file:"),
        "{stderr}"
    );
}

#[test]
fn deny_warnings_fails_on_a_warning() {
    let out = check(&["--deny-warnings", "tests/configs/warn/missing_root.conf"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.ends_with("failed: 0 errors, 1 warning (--deny-warnings)\n"),
        "{stderr}"
    );
    // Silenced warnings do not count.
    let out = check(&["--deny-warnings", "tests/configs/warn/allow_comment.conf"]);
    assert_eq!(out.status.code(), Some(0));
    let out = check(&["--deny-warnings", "conf.d/examples/minimal.conf"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn sarif_output() {
    let out = check(&[
        "--format",
        "sarif",
        "tests/configs/warn/missing_root.conf",
        "tests/configs/invalid/unknown_directive.conf",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(log["version"], "2.1.0");
    let runs = log["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "webserv");
    let rules: Vec<&str> = driver["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    // Every rule, not only those that occurred: the §9.4 warnings too.
    for name in ["missing-path", "unknown-directive", "alias-traversal"] {
        assert!(rules.contains(&name), "{name}: {rules:?}");
    }
    assert!(rules.len() > 40, "{rules:?}");
    let results = runs[0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    let r = &results[1];
    assert_eq!(r["ruleId"], "unknown-directive");
    let index = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
    assert_eq!(rules[index], "unknown-directive");
    let rule = &driver["rules"][index];
    assert_eq!(rule["defaultConfiguration"]["level"], "error");
    assert!(rule["shortDescription"]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(r["level"], "error");
    assert_eq!(
        r["message"]["text"],
        "unknown directive \"lisen\" (did you mean \"listen\"?)"
    );
    let location = &r["locations"][0]["physicalLocation"];
    assert_eq!(
        location["artifactLocation"]["uri"],
        "tests/configs/invalid/unknown_directive.conf"
    );
    assert_eq!(location["region"]["startLine"], 3);
    assert_eq!(location["region"]["startColumn"], 5);
    assert_eq!(results[0]["level"], "warning");
}

/// Each §9.4 warning has a golden that fires it (`NAME.conf`, with the
/// name in its output) and a near miss that stays silent (`NAME_silent.conf`).
#[test]
fn each_lint_fires_and_has_a_silent_near_miss() {
    let names = [
        "alias-traversal",
        "executable-uploads",
        "delete-static",
        "unlimited-body",
        "host-spoofing",
        "unreachable-location",
        "unreachable-server",
        "error-page-override",
        "server-name-port",
        "error-page-loop",
    ];
    for name in names {
        let file = name.replace('-', "_");
        let fires = check(&[&format!("tests/configs/warn/{file}.conf")]);
        let stderr = String::from_utf8_lossy(&fires.stderr);
        assert!(stderr.contains(&format!("[{name}]")), "{name}: {stderr}");
        let silent = check(&[&format!("tests/configs/warn/{file}_silent.conf")]);
        assert!(silent.status.success(), "{name}");
        assert!(silent.stderr.is_empty(), "{name}: {:?}", silent.stderr);
    }
}

//! Parse + validate + build of a generated configuration with 10,000
//! locations. Target: under 100 ms in release.
//!
//! Three figures, because a user meets the first and the third:
//! - the first load in this process (a cold allocator: every page it
//!   touches is a page fault);
//! - the following loads (warm: min, median, max);
//! - `webserv check FILE` as a process, start to exit;
//! - `webserv fmt --check FILE` and `webserv route FILE URL`, the same way
//!   (each also under 100 ms: SPEC §9.4).
//!
//! Peak memory is not measured here (a child's peak counts its parent's
//! pages until exec): `/usr/bin/time -f %M webserv check FILE` gives it.
//!
//! `cargo bench --bench config_parse` (or `make bench-config`)

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOCATIONS: usize = 10_000;
const RUNS: usize = 10;

fn generate() -> String {
    let mut text = String::from("client_max_body_size 2m;\nerror_page 404 /404.html;\n");
    text.push_str(
        "server {\n    listen 127.0.0.1:8080;\n    server_name localhost;\n    root .;\n",
    );
    for i in 0..LOCATIONS {
        let _ = match i % 4 {
            0 => writeln!(text, "    location /l{i}/ {{\n        autoindex on;\n        methods GET HEAD POST;\n    }}"),
            1 => writeln!(text, "    location = /exact{i} {{\n        return 301 /l{}/;\n    }}", i - 1),
            2 => writeln!(text, "    location /u{i}/ {{\n        upload_store .;\n        client_max_body_size 0;\n    }}"),
            _ => writeln!(text, "    location /c{i}/ {{\n        cgi .py python3;\n        cgi_timeout 5s;\n    }}"),
        };
    }
    text.push_str("}\n");
    text
}

fn load(path: &Path) -> Duration {
    let start = Instant::now();
    let (table, report) = webserv::config::load(path);
    let elapsed = start.elapsed();
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    assert_eq!(table.servers[0].locations.len(), LOCATIONS);
    elapsed
}

/// One `webserv ARGS...` process, start to exit; it must exit 0.
fn run(args: &[&str]) -> Duration {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_webserv"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run webserv");
    let elapsed = start.elapsed();
    assert!(status.success(), "webserv {args:?} failed");
    elapsed
}

fn spread(mut times: Vec<Duration>) -> String {
    times.sort();
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.conf");
    let text = generate();
    std::fs::write(&path, &text).expect("write config");
    println!("config_parse: {LOCATIONS} locations, {} bytes", text.len());
    let first = load(&path);
    println!("  in process, first load:      {:.1} ms", ms(first));
    let warm: Vec<Duration> = (0..RUNS).map(|_| load(&path)).collect();
    println!("  in process, next {RUNS} loads:   {}", spread(warm));
    let file = path.to_str().expect("UTF-8 temp path");
    // The generated text is already in the canonical layout: `--check`
    // formats all of it and exits 0.
    let commands: [(&str, Vec<&str>); 3] = [
        ("check", vec!["check", file]),
        ("fmt --check", vec!["fmt", "--check", file]),
        (
            "route",
            vec!["route", file, "http://localhost:8080/c9999/x.py"],
        ),
    ];
    for (name, args) in commands {
        let processes: Vec<Duration> = (0..RUNS).map(|_| run(&args)).collect();
        println!(
            "  {:<34}{}",
            format!("`webserv {name}`, {RUNS} runs:"),
            spread(processes)
        );
    }
}

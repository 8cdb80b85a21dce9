//! Parse + validate + build of a generated configuration with 10,000
//! locations, timed in-process. Target: under 100 ms in release.
//!
//! `cargo bench --bench config_parse` (or `make bench-config`)

use std::fmt::Write as _;
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

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.conf");
    let text = generate();
    std::fs::write(&path, &text).expect("write config");
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let (table, report) = webserv::config::load(&path);
        times.push(start.elapsed());
        let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
        assert_eq!(table.servers[0].locations.len(), LOCATIONS);
    }
    times.sort();
    println!(
        "config_parse: {LOCATIONS} locations, {} bytes: min {:?}, median {:?}, max {:?} over {RUNS} runs",
        text.len(),
        times[0],
        times[RUNS / 2],
        times[RUNS - 1]
    );
}

//! `cargo bench --bench http_date`: our HTTP dates (`src/http/date.rs`)
//! against the `httpdate` crate, which does the same job: the same outputs
//! for formatting and parsing (checked here first), then the time per call.
//! The README's dependency list says which was kept and why.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use webserv::http::date::{fmt_http_date, parse_http_date};

const N: u64 = 1_000_000;

fn per_call(start: Instant) -> f64 {
    start.elapsed().as_nanos() as f64 / N as f64
}

fn main() {
    // A second every 997 s from 2001 on: every field changes.
    let times: Vec<SystemTime> = (0..N)
        .map(|i| UNIX_EPOCH + Duration::from_secs(1_000_000_000 + i * 997))
        .collect();
    for &t in times.iter().step_by(101) {
        let ours = fmt_http_date(t);
        assert_eq!(ours, httpdate::fmt_http_date(t), "formatting {t:?}");
        assert_eq!(parse_http_date(&ours), Some(t));
        assert_eq!(httpdate::parse_http_date(&ours).ok(), Some(t));
    }
    let texts: Vec<String> = times.iter().map(|&t| fmt_http_date(t)).collect();
    let obsolete = ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"];
    for text in obsolete {
        assert_eq!(
            parse_http_date(text),
            httpdate::parse_http_date(text).ok(),
            "{text}"
        );
    }

    let start = Instant::now();
    for &t in &times {
        black_box(fmt_http_date(black_box(t)));
    }
    let ours_fmt = per_call(start);
    let start = Instant::now();
    for &t in &times {
        black_box(httpdate::fmt_http_date(black_box(t)));
    }
    let theirs_fmt = per_call(start);

    let start = Instant::now();
    for text in &texts {
        black_box(parse_http_date(black_box(text)));
    }
    let ours_parse = per_call(start);
    let start = Instant::now();
    for text in &texts {
        black_box(httpdate::parse_http_date(black_box(text)).ok());
    }
    let theirs_parse = per_call(start);

    println!("http_date: {N} calls each, ns per call (lower is better)");
    println!("| | webserv | httpdate |");
    println!("|---|---:|---:|");
    println!("| format IMF-fixdate | {ours_fmt:.1} | {theirs_fmt:.1} |");
    println!("| parse IMF-fixdate | {ours_parse:.1} | {theirs_parse:.1} |");
}

//! Writes a self-signed certificate for the TLS demo:
//! `cargo run --example selfsigned -- DIR [NAME...]` creates `DIR/localhost.crt`
//! and `DIR/localhost.key` for NAME... (default: localhost, 127.0.0.1, ::1).
//! `make cert` runs it for `conf.d/examples/tls.conf`. For real use, point
//! `ssl_certificate` and `ssl_certificate_key` at a certificate from a CA.

#[path = "../tests/common/certs.rs"]
mod certs;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: selfsigned DIR [NAME...]");
        return ExitCode::FAILURE;
    };
    let names: Vec<String> = args.collect();
    let names: Vec<&str> = if names.is_empty() {
        vec!["localhost", "127.0.0.1", "::1"]
    } else {
        names.iter().map(String::as_str).collect()
    };
    match certs::write_self_signed(&dir, "localhost", &names) {
        Ok(()) => {
            println!(
                "wrote {0}/localhost.crt and {0}/localhost.key for {1}",
                dir.display(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("selfsigned: {}: {err}", dir.display());
            ExitCode::FAILURE
        }
    }
}

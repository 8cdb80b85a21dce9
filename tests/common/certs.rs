//! Self-signed certificates for tests and the TLS demo (rcgen, ECDSA
//! P-256). Shared by `tests/` and `examples/selfsigned.rs`; no private key
//! is ever committed.

#![allow(dead_code)] // each user takes a different part

use std::fs;
use std::io;
use std::path::Path;

/// A certificate and its key, PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A self-signed certificate for `names` (DNS names or IP addresses), its
/// subject's common name the first of them (what a browser shows).
pub fn self_signed(names: &[&str]) -> Pem {
    let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(owned).expect("params");
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(
        rcgen::DnType::CommonName,
        names.first().copied().unwrap_or("localhost"),
    );
    params.distinguished_name = subject;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A self-signed certificate valid from `from` to `until` (year, month,
/// day).
pub fn self_signed_between(names: &[&str], from: (i32, u8, u8), until: (i32, u8, u8)) -> Pem {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("params");
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// Writes `DIR/NAME.crt` and `DIR/NAME.key` (mode 0600) for `names`.
pub fn write_self_signed(dir: &Path, name: &str, names: &[&str]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir)?;
    let pem = self_signed(names);
    let key = dir.join(format!("{name}.key"));
    fs::write(&key, pem.key)?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
    fs::write(dir.join(format!("{name}.crt")), pem.cert)
}

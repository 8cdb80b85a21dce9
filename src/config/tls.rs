//! TLS as configuration data (SPEC §9.2): certificates and keys are read,
//! parsed and checked when the configuration loads, so `check` reports what
//! the server would trip on, at the directive's line and column; the
//! server then shares the loaded keys (`Arc`) with every connection.
//!
//! One rustls [`ServerConfig`] per `ssl` listen address: its certificate
//! resolver picks among the servers of that address by SNI with the same
//! rule as `Host` ([`ServerNames::find`]); without SNI, or for an
//! unknown name, the default server's certificate answers.

use std::collections::HashMap;
use std::fs;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::diag::{Diagnostic, Report};
use super::scope::{At, PathArg, Scope};
use crate::routing::{ListenSocket, Server, ServerNames, TlsVersions};

/// A certificate expiring sooner than this is warned about.
const EXPIRY_WARNING: u64 = 30 * 24 * 3600;

/// The crypto provider every TLS config uses: rustls's default (aws-lc-rs),
/// with AES-128-GCM and SHA-256 preferred. Each handshake hashes its
/// transcript and derives its keys with the suite's hash: SHA-256 has
/// instructions of its own on current x86 and ARM CPUs, SHA-384 does not,
/// and AES-128 encrypts faster than AES-256 at a strength nobody can break
/// (Mozilla's "intermediate" list starts with it too).
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

/// Loads the certificate of each server that has one, and builds the TLS
/// config of each `ssl` address. `scopes[i]` is the block of `servers[i]`.
pub fn attach(
    scopes: &[&Scope],
    servers: &mut [Server],
    sockets: &mut [ListenSocket],
    report: &mut Report,
) {
    let provider = provider();
    for (scope, server) in scopes.iter().zip(servers.iter_mut()) {
        let ssl_listen = scope.listen.iter().find(|l| l.value.ssl.is_some());
        let cert = scope.settings.ssl_certificate.as_deref();
        let key = scope.settings.ssl_certificate_key.as_deref();
        match (cert, key) {
            (Some(cert), Some(key)) => {
                server.tls = load(cert, key, &server.names, &provider, report).map(Arc::new);
            }
            (Some(cert), None) => report.push(Diagnostic::error(
                cert.name,
                "tls-pair",
                "\"ssl_certificate\" without \"ssl_certificate_key\"",
            )),
            (None, Some(key)) => report.push(Diagnostic::error(
                key.name,
                "tls-pair",
                "\"ssl_certificate_key\" without \"ssl_certificate\"",
            )),
            (None, None) => {
                if let Some(listen) = ssl_listen {
                    let at = listen.value.ssl.unwrap_or(listen.arg);
                    report.push(Diagnostic::error(
                        at,
                        "tls-missing-certificate",
                        "\"ssl\" listen address without \"ssl_certificate\" and \"ssl_certificate_key\" in its server",
                    ));
                }
            }
        }
    }
    for socket in sockets.iter_mut() {
        let ssl = socket.servers.iter().any(|&i| {
            scopes[i]
                .listen
                .iter()
                .any(|l| l.value.addr == socket.addr && l.value.ssl.is_some())
        });
        if !ssl {
            continue;
        }
        let default = &servers[socket.default_server];
        let Some(default_key) = default.tls.clone() else {
            // Reported above (a server without certificate), or the
            // default server of an ssl address has none: say so once.
            if !socket
                .servers
                .iter()
                .any(|&i| servers[i].tls.is_none() && has_ssl(scopes[i]))
            {
                report.push(Diagnostic::error(
                    scopes[socket.default_server].at,
                    "tls-missing-certificate",
                    format!(
                        "the default server of ssl address {} has no \"ssl_certificate\"",
                        socket.addr
                    ),
                ));
            }
            continue;
        };
        let resolver = SniResolver {
            names: socket.names.clone(),
            keys: socket
                .servers
                .iter()
                .filter_map(|&i| Some((i, servers[i].tls.clone()?)))
                .collect(),
            default: default_key,
        };
        let versions = default.tls_versions.protocol_versions();
        let config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map(|b| {
                b.with_no_client_auth()
                    .with_cert_resolver(Arc::new(resolver))
            });
        match config {
            Ok(mut config) => {
                warm_up(&provider);
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                // Our order of suites, not the client's (see `provider`).
                config.ignore_client_order = true;
                // Stateless session tickets, as nginx's: the key is made
                // here, before the workers are forked, so a client resumes
                // with whichever worker takes its next connection (with
                // rustls's default, a per-process session cache, half the
                // resumptions at 2 workers fell back to full handshakes).
                // The key rotates every 6 hours in each worker on its own;
                // a reload makes a new shared one.
                match rustls::crypto::aws_lc_rs::Ticketer::new() {
                    Ok(ticketer) => config.ticketer = ticketer,
                    Err(err) => report.push(Diagnostic::error(
                        scopes[socket.default_server].at,
                        "tls-setup",
                        format!("TLS session tickets for {}: {err}", socket.addr),
                    )),
                }
                socket.tls = Some(Arc::new(config));
            }
            Err(err) => report.push(Diagnostic::error(
                scopes[socket.default_server].at,
                "tls-setup",
                format!("TLS for {}: {err}", socket.addr),
            )),
        }
    }
}

/// aws-lc seeds its random generator on first use, which takes tens of
/// milliseconds (about 80 ms here): done at load, so that the first client
/// does not wait for it inside the event loop, and nothing else waits
/// behind that client. Later calls cost microseconds.
fn warm_up(provider: &CryptoProvider) {
    // A failure here would show at the first handshake, which reports it.
    let _ = provider.secure_random.fill(&mut [0u8; 16]);
}

/// [`warm_up`] for a forked worker: aws-lc reseeds after a fork (about
/// 28 ms), which would again fall on a worker's first client.
pub fn warm_up_after_fork(table: &crate::routing::RoutingTable) {
    if table.sockets.iter().any(|s| s.tls.is_some()) {
        warm_up(&provider());
    }
}

fn has_ssl(scope: &Scope) -> bool {
    scope.listen.iter().any(|l| l.value.ssl.is_some())
}

/// Chooses the certificate for a ClientHello, as `Host` chooses a server.
#[derive(Debug)]
struct SniResolver {
    /// The address's names, as `Host` looks them up.
    names: ServerNames,
    /// Server index → its certificate.
    keys: HashMap<usize, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let (server, _) = self.names.find(&name)?;
            self.keys.get(&server).cloned()
        });
        Some(chosen.unwrap_or_else(|| self.default.clone()))
    }
}

/// Reads, parses and checks one certificate chain and its key. Problems are
/// reported at the directive that names the file.
fn load(
    cert: &At<PathArg>,
    key: &At<PathArg>,
    names: &[String],
    provider: &CryptoProvider,
    report: &mut Report,
) -> Option<CertifiedKey> {
    let chain = read_chain(cert, report);
    let private = read_key(key, report);
    let (chain, private) = (chain?, private?);
    let certified = match CertifiedKey::from_der(chain, private, provider) {
        Ok(certified) => certified,
        Err(rustls::Error::InconsistentKeys(_)) => {
            report.push(Diagnostic::error(
                key.arg,
                "tls-key-mismatch",
                format!(
                    "the key in \"{}\" does not match the certificate in \"{}\"",
                    key.value.written, cert.value.written
                ),
            ));
            return None;
        }
        Err(err) => {
            report.push(Diagnostic::error(
                key.arg,
                "tls-bad-key",
                format!("unusable key in \"{}\": {err}", key.value.written),
            ));
            return None;
        }
    };
    check_leaf(&certified.cert[0], cert, names, report).then_some(certified)
}

fn read_file(at: &At<PathArg>, what: &str, report: &mut Report) -> Option<Vec<u8>> {
    match fs::read(&at.value.path) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            report.push(Diagnostic::error(
                at.arg,
                "tls-unreadable",
                format!("cannot read {what} \"{}\": {err}", at.value.written),
            ));
            None
        }
    }
}

fn read_chain(at: &At<PathArg>, report: &mut Report) -> Option<Vec<CertificateDer<'static>>> {
    let pem = read_file(at, "certificate", report)?;
    let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match chain {
        Ok(chain) if !chain.is_empty() => Some(chain),
        Ok(_) => {
            report.push(Diagnostic::error(
                at.arg,
                "tls-bad-certificate",
                format!("no PEM certificate in \"{}\"", at.value.written),
            ));
            None
        }
        Err(err) => {
            report.push(Diagnostic::error(
                at.arg,
                "tls-bad-certificate",
                format!("unparsable certificate \"{}\": {err}", at.value.written),
            ));
            None
        }
    }
}

fn read_key(at: &At<PathArg>, report: &mut Report) -> Option<PrivateKeyDer<'static>> {
    let pem = read_file(at, "key", report)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Some(key),
        Err(err) => {
            report.push(Diagnostic::error(
                at.arg,
                "tls-bad-key",
                format!(
                    "no usable PEM private key (PKCS#8, PKCS#1 or SEC1) in \"{}\": {err}",
                    at.value.written
                ),
            ));
            None
        }
    }
}

/// Validity and names of the end-entity certificate: expired is an error;
/// expiring within 30 days, or names that do not cover every `server_name`,
/// a warning. Returns false on an error.
fn check_leaf(
    der: &CertificateDer<'_>,
    at: &At<PathArg>,
    names: &[String],
    report: &mut Report,
) -> bool {
    let Ok((_, leaf)) = X509Certificate::from_der(der) else {
        report.push(Diagnostic::error(
            at.arg,
            "tls-bad-certificate",
            format!("unparsable certificate \"{}\"", at.value.written),
        ));
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let not_after = leaf.validity().not_after.timestamp();
    let written = &at.value.written;
    if not_after < now {
        report.push(Diagnostic::error(
            at.arg,
            "certificate-expired",
            format!(
                "certificate \"{written}\" expired on {}",
                leaf.validity().not_after
            ),
        ));
        return false;
    }
    if not_after - now < EXPIRY_WARNING as i64 {
        report.push(Diagnostic::warning(
            at.arg,
            "certificate-expiring",
            format!(
                "certificate \"{written}\" expires on {}, within 30 days",
                leaf.validity().not_after
            ),
        ));
    }
    let covered = cert_names(&leaf);
    let missing: Vec<&str> = names
        .iter()
        .filter(|name| is_host_name(name))
        .filter(|name| !covered.iter().any(|c| name_matches(c, name)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        report.push(Diagnostic::warning(
            at.arg,
            "certificate-name",
            format!(
                "certificate \"{written}\" does not cover server_name {} (it names {})",
                missing.join(", "),
                if covered.is_empty() {
                    "no host".to_string()
                } else {
                    covered.join(", ")
                }
            ),
        ));
    }
    true
}

/// DNS names of the certificate: its subjectAltName entries, else its
/// common name (as clients did before SANs).
fn cert_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                        names.push(std::net::Ipv4Addr::from(octets).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        for cn in leaf.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    names
}

/// Whether `server_name` value `name` can be a host a client asks for (by
/// SNI or `Host`), so a certificate should cover it: not `""` (requests
/// without `Host`) nor nginx's catch-all `_`, which no client sends and no
/// certificate names.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'*' | b':'))
}

/// Whether certificate name `pattern` (`host` or `*.domain`, RFC 6125)
/// covers `server_name` (which may itself be `*.domain`, `.domain` or
/// `name.*` in nginx's syntax: then the same wildcard must be there).
fn name_matches(pattern: &str, server_name: &str) -> bool {
    let server_name = server_name.strip_prefix('.').unwrap_or(server_name);
    if pattern == server_name {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(domain) => server_name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && label != "*" && rest == domain),
        None => false,
    }
}

impl TlsVersions {
    fn protocol_versions(self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        let mut versions = Vec::new();
        if self.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        versions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_names_cover_server_names() {
        let cases = [
            ("localhost", "localhost", true),
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", "*.example.com", true),
            ("example.com", ".example.com", true),
            ("example.com", "other.com", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(name_matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn only_host_names_need_covering() {
        let cases = [
            ("localhost", true),
            ("www.example.com", true),
            ("*.example.com", true),
            ("www.example.*", true),
            ("127.0.0.1", true),
            ("_", false),
            ("", false),
        ];
        for (name, expected) in cases {
            assert_eq!(is_host_name(name), expected, "{name:?}");
        }
    }
}

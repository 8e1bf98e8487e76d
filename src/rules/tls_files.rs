//! Load-time checks of a DSN's TLS settings: the sslmode is one of libpq's, the combination means
//! something, and the certificate and key files it names parse. The source connects with exactly
//! these files later, so a bad file is reported at the DSN's line instead of at the first scrape.
//!
//! The PEM parsing here is rustls' own (pki-types), the same the connection uses.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::conninfo::ConnInfo;

/// libpq's modes, weakest first.
pub const SSL_MODES: &[&str] = &["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

/// The sslmode in effect, as libpq (16+) chooses it: the DSN's, else `verify-full` when
/// `sslrootcert=system`, else `prefer`.
pub fn effective_sslmode(c: &ConnInfo) -> &str {
    match c.get("sslmode") {
        Some(m) => m,
        None if c.get("sslrootcert") == Some("system") => "verify-full",
        None => "prefer",
    }
}

/// Whether the files a DSN names are read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    Read,
    /// A path came from an unset variable (already warned about): it is not looked at.
    Skip,
}

/// Errors (first) and warnings about the TLS keys of a DSN that parsed.
pub fn check(c: &ConnInfo, files: FileCheck) -> (Vec<String>, Vec<String>) {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let mode = effective_sslmode(c);
    if !SSL_MODES.contains(&mode) {
        errors.push(format!("sslmode must be one of {}", SSL_MODES.join(", ")));
        return (errors, warnings);
    }
    if c.get("sslrootcert") == Some("system") && mode != "verify-full" {
        errors.push(format!(
            "sslrootcert=system trusts every public CA, so it needs sslmode=verify-full (as in libpq 16), not {mode}"
        ));
    }
    if matches!(mode, "verify-ca" | "verify-full") && c.get("sslrootcert").is_none() {
        errors.push(format!(
            "sslmode={mode} needs sslrootcert: the CA certificate file, or system for the operating system's store"
        ));
    }
    match (c.get("sslcert"), c.get("sslkey")) {
        (Some(_), None) => errors.push("sslcert is set without sslkey; give both for a client certificate".into()),
        (None, Some(_)) => errors.push("sslkey is set without sslcert; give both for a client certificate".into()),
        _ => {}
    }
    match c.get("channel_binding") {
        None | Some("disable" | "prefer" | "require") => {}
        Some(_) => errors.push("channel_binding must be one of disable, prefer, require".into()),
    }
    if c.get("channel_binding") == Some("require") && matches!(mode, "disable" | "allow") {
        errors.push(format!("channel_binding=require needs TLS, which sslmode={mode} does not insist on"));
    }
    if mode == "disable" && ["sslrootcert", "sslcert", "sslkey"].iter().any(|k| c.get(k).is_some()) {
        warnings.push("sslmode=disable: sslrootcert, sslcert and sslkey are ignored".into());
    }
    match mode {
        "allow" => warnings.push(
            "sslmode=allow is treated as prefer: TLS first, plaintext only when the server declines TLS (the driver cannot retry in plaintext after a failed handshake, as libpq does)".into(),
        ),
        "prefer" if c.get("sslmode").is_some() => warnings.push(
            "sslmode=prefer falls back to plaintext only when the server declines TLS, not after a failed handshake as libpq does; and it verifies no certificate: use verify-full for a database across a network".into(),
        ),
        _ => {}
    }
    if files == FileCheck::Skip {
        return (errors, warnings);
    }
    if let Some(path) = c.get("sslrootcert").filter(|p| *p != "system") {
        if let Err(e) = certificates(path) {
            errors.push(format!("sslrootcert: {e}"));
        }
    }
    if let Some(path) = c.get("sslcert") {
        if let Err(e) = certificates(path) {
            errors.push(format!("sslcert: {e}"));
        }
    }
    if let Some(path) = c.get("sslkey") {
        if let Err(e) = private_key(path) {
            errors.push(format!("sslkey: {e}"));
        }
    }
    (errors, warnings)
}

/// Every certificate of a PEM file; an error when there is none or one does not parse.
pub fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path} is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| format!("{path} holds no PEM private key this exporter can read"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(dsn: &str) -> Vec<String> {
        check(&ConnInfo::parse(dsn).unwrap(), FileCheck::Read).0
    }

    #[test]
    fn modes_and_combinations() {
        assert!(errors("host=a sslmode=verify-full")[0].contains("needs sslrootcert"));
        assert!(errors("host=a sslmode=strict")[0].contains("one of"));
        assert!(errors("host=a sslrootcert=system").is_empty());
        assert!(errors("host=a sslrootcert=system sslmode=require")[0].contains("verify-full"));
        assert!(errors("host=a sslcert=/x")[0].contains("without sslkey"));
        assert!(errors("host=a sslmode=verify-ca sslrootcert=/nonexistent")[0].contains("cannot read /nonexistent"));
        assert_eq!(effective_sslmode(&ConnInfo::parse("host=a").unwrap()), "prefer");
    }

    #[test]
    fn a_file_that_is_not_pem_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        let e = errors(&format!("host=a sslmode=verify-ca sslrootcert={}", p.display()));
        assert!(e[0].contains("holds no PEM certificate"), "{e:?}");
    }
}

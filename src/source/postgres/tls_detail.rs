//! What a TLS failure means, in words an operator can act on, and the channel-binding hash.
//!
//! A failed handshake reaches us as a rustls error wrapped in an I/O error wrapped in a driver
//! error; a server that declines TLS or refuses plaintext reaches us as a driver or server message.
//! [`describe`] finds the cause in the chain and names it.

use rustls::{AlertDescription, CertificateError, Error as TlsError};

/// The TLS cause of a driver error, named; `None` when TLS is not what failed.
pub(super) fn describe(e: &tokio_postgres::Error) -> Option<String> {
    if let Some(db) = e.as_db_error() {
        // pg_hba.conf matched no line for a plaintext connection, or `cert` found no certificate.
        if db.code().code() == "28000" && db.message().contains("no encryption") {
            return Some("the server refuses plaintext connections (pg_hba.conf has no line for them): set sslmode=verify-full (or require)".into());
        }
        if db.message().contains("requires a valid client certificate") {
            return Some(
                "client certificate refused: the server requires one (sslcert and sslkey) that its CA signed".into(),
            );
        }
        return None;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<TlsError>() {
            return Some(tls_error(t));
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<TlsError>()) {
                return Some(tls_error(t));
            }
        }
        if s.to_string().contains("server does not support TLS") {
            return Some("the server does not speak TLS (it declined the TLS request; is ssl=on?)".into());
        }
        source = s.source();
    }
    None
}

fn tls_error(e: &TlsError) -> String {
    use CertificateError as C;
    match e {
        TlsError::InvalidCertificate(c) => match c {
            C::UnknownIssuer => {
                "unknown CA: the server's certificate is not signed by a CA in sslrootcert".to_string()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "host name mismatch: the server's certificate does not name the host in the DSN (verify-full checks it; verify-ca does not)".to_string()
            }
            C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired".to_string(),
            C::NotValidYet | C::NotValidYetContext { .. } => "the server's certificate is not valid yet".to_string(),
            C::Revoked => "the server's certificate is revoked".to_string(),
            other => format!("the server's certificate is not acceptable: {other:?}"),
        },
        TlsError::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                "client certificate refused: the server requires one (set sslcert and sslkey)".to_string()
            }
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied => {
                format!("client certificate refused by the server (TLS alert {alert:?})")
            }
            other => format!("the server ended the TLS handshake (alert {other:?})"),
        },
        TlsError::InvalidMessage(_) | TlsError::InappropriateMessage { .. } => {
            "the server's answer is not TLS (is it PostgreSQL, with ssl=on?)".to_string()
        }
        other => format!("TLS failed: {other}"),
    }
}

/// RFC 5929 `tls-server-end-point`: the certificate hashed with its signature's hash, SHA-256 for
/// MD5 and SHA-1.
pub(super) fn end_point_hash(cert: &[u8]) -> Vec<u8> {
    let algorithm = match signature_oid(cert) {
        Some(oid) if SHA384.contains(&oid) => &ring::digest::SHA384,
        Some(oid) if SHA512.contains(&oid) => &ring::digest::SHA512,
        _ => &ring::digest::SHA256,
    };
    ring::digest::digest(algorithm, cert).as_ref().to_vec()
}

// sha384WithRSAEncryption, ecdsa-with-SHA384; sha512WithRSAEncryption, ecdsa-with-SHA512 (DER bodies).
const SHA384: &[&[u8]] =
    &[&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]];
const SHA512: &[&[u8]] =
    &[&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04]];

/// The OID of `Certificate.signatureAlgorithm`: SEQUENCE { tbs SEQUENCE, SEQUENCE { OID, … }, … }.
fn signature_oid(der: &[u8]) -> Option<&[u8]> {
    let (_, outer) = element(der, 0x30)?;
    let (after_tbs, _) = element(outer, 0x30)?;
    let (_, alg) = element(after_tbs, 0x30)?;
    element(alg, 0x06).map(|(_, oid)| oid)
}

/// One DER element of `tag` at the start of `data`: (what follows it, its contents).
fn element(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *data.first()? != tag {
        return None;
    }
    let first = *data.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = data.get(2..2 + n)?.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    let body = data.get(header..header + len)?;
    Some((data.get(header + len..)?, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_words() {
        let cert = |c| tls_error(&TlsError::InvalidCertificate(c));
        assert!(cert(CertificateError::UnknownIssuer).starts_with("unknown CA"));
        assert!(cert(CertificateError::NotValidForName).starts_with("host name mismatch"));
        assert!(cert(CertificateError::Expired).contains("has expired"));
        let alert = |a| tls_error(&TlsError::AlertReceived(a));
        assert!(alert(AlertDescription::CertificateRequired).starts_with("client certificate refused"));
        assert!(alert(AlertDescription::UnknownCA).starts_with("client certificate refused"));
    }

    #[test]
    fn the_end_point_hash_follows_the_signature() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let der = rcgen::CertificateParams::new(vec!["a".to_string()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(signature_oid(der.der()), Some(SHA384[1]));
        assert_eq!(end_point_hash(der.der()).len(), 48);
        let key = rcgen::KeyPair::generate().unwrap();
        let der = rcgen::CertificateParams::new(vec!["a".to_string()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(end_point_hash(der.der()).len(), 32);
    }
}

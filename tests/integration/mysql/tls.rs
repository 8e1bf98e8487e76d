//! TLS to MariaDB with a test CA: a server that refuses plaintext; every ssl-mode with the CA
//! connects; a wrong CA and a host mismatch are each named while the Kanary targets stay fail-safe
//! (under `VERIFY_CA` too: the driver cannot skip the name check, which the message says);
//! `DISABLED` is refused by the server. The certificates are made here (rcgen), the server is a
//! private MariaDB with `require_secure_transport`.

use crate::harness::MyDb;
use crate::harness::{once, repo_root};
use crate::postgres_tls::setup::{assert_once_fail_safe, ca, leaf, write};
use tempdb::TempMariaDbOptions;

#[test]
fn tls_verify_identity_and_each_failure_named_while_fail_safe() {
    let dir = tempfile::tempdir().unwrap();
    let (good_ca, other_ca) = (ca("mysql test CA"), ca("another CA"));
    let ca_file = write(dir.path(), "ca.pem", &good_ca.issuer.pem(), 0o644);
    let other_file = write(dir.path(), "other-ca.pem", &other_ca.issuer.pem(), 0o644);
    let (cert, key) = leaf(&good_ca, &["127.0.0.1"], "127.0.0.1");
    let cert = write(dir.path(), "server.crt", &cert, 0o644);
    let key = write(dir.path(), "server.key", &key, 0o600);
    let opts = TempMariaDbOptions {
        server_args: vec![
            format!("--ssl-ca={}", ca_file.display()),
            format!("--ssl-cert={}", cert.display()),
            format!("--ssl-key={}", key.display()),
            "--require-secure-transport=ON".into(),
        ],
    };
    let Some(my) = MyDb::private(opts) else { return };
    let rules = repo_root().join("examples/kanary/mysql/kanary.yaml");
    let run = |query: String| {
        let (code, stdout, stderr) = once(&rules, &[("CONNECTION_STRING", &format!("{}?{query}", my.dsn()))]);
        assert!(!stdout.contains(my.password()) && !stderr.contains(my.password()), "a password leaked:\n{stderr}");
        (code, stdout, stderr)
    };
    for mode in ["VERIFY_IDENTITY", "VERIFY_CA", "REQUIRED", "PREFERRED"] {
        let (code, _, stderr) = run(format!("ssl-mode={mode}&ssl-ca={}", ca_file.display()));
        assert_eq!(code, Some(0), "{mode}: {stderr}");
    }
    let (code, stdout, stderr) = run(format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", other_file.display()));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("TLS handshake failed under ssl-mode=VERIFY_IDENTITY") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    assert_once_fail_safe(&stdout);

    // A certificate for another name: VERIFY_IDENTITY refuses it, VERIFY_CA (chain only) accepts it.
    let (cert, key) = leaf(&good_ca, &["db.example"], "db.example");
    std::fs::write(dir.path().join("server.crt"), cert).unwrap();
    std::fs::write(dir.path().join("server.key"), key).unwrap();
    my.mariadb("FLUSH SSL").unwrap();
    let (code, stdout, stderr) = run(format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca_file.display()));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("TLS handshake failed under ssl-mode=VERIFY_IDENTITY") && stderr.contains("not valid for name"),
        "{stderr}"
    );
    assert_once_fail_safe(&stdout);
    // A known limit of the driver (see the README): VERIFY_CA checks the name too, and says so.
    let (code, stdout, stderr) = run(format!("ssl-mode=VERIFY_CA&ssl-ca={}", ca_file.display()));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("VERIFY_CA verifies the name too"), "{stderr}");
    assert_once_fail_safe(&stdout);

    let (code, stdout, stderr) = run("ssl-mode=DISABLED".into());
    assert_eq!(code, Some(1));
    // MySQL says ER_SECURE_TRANSPORT_REQUIRED (3159); MariaDB 10.11 answers a plaintext login with 1045.
    assert!(stderr.contains("error 3159") || stderr.contains("error 1045"), "{stderr}");
    assert_once_fail_safe(&stdout);
}

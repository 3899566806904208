//! Tests across the PKI's parts: files on disk, CSR signing, real TLS handshakes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::extensions::GeneralName;

use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn central(dir: &Path) -> CentralPki {
    CentralPki::load_or_create(dir, &["central.example".into(), "10.1.2.3".into()])
        .unwrap()
        .0
}

/// A host enrolled with `pki` under `dir`.
fn enroll(pki: &CentralPki, dir: &Path, host: &str) -> (HostIdentity, SignedCert) {
    let csr = HostIdentity::new_csr(dir, host).unwrap();
    let signed = pki.sign_host_csr(&csr, host, DAY).unwrap();
    let id = HostIdentity::install(dir, &signed.cert_pem, pki.ca_pem()).unwrap();
    (id, signed)
}

fn parse_pem(pem: &str) -> Vec<u8> {
    certs_from_pem("test", pem).unwrap()[0].to_vec()
}

fn server_names(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let ext = cert.subject_alternative_name().unwrap().unwrap();
    ext.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
            }
            GeneralName::IPAddress(b) => {
                std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
            }
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn load_or_create_writes_private_files_and_reloads_the_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (pki, created) =
        CentralPki::load_or_create(tmp.path(), &["central.example".into()]).unwrap();
    assert!(created);
    for f in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        assert_eq!(mode(&tmp.path().join(f)), 0o600, "{f}");
    }
    assert_eq!(pki.ca_path(), tmp.path().join("ca.pem"));
    assert_eq!(pki.ca_sha256().len(), 64);
    assert_eq!(pki.ca_sha256(), sha256_hex(&parse_pem(pki.ca_pem())));
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");

    // The CA: self-signed, CN, a CA, P-256.
    let ca_der = parse_pem(pki.ca_pem());
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert_eq!(common_name(&ca).unwrap(), "Roost central CA");
    assert!(ca.is_ca());
    assert_eq!(ca.subject(), ca.issuer());
    let ku = ca.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let life = ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp();
    assert!((3649 * 86400..=3651 * 86400).contains(&life), "{life}");

    // server.pem: the leaf, then the CA; names asked for plus the defaults.
    let chain = certs_from_pem(
        "server.pem",
        &std::fs::read_to_string(tmp.path().join("server.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1].as_ref(), ca_der.as_slice());
    let names = server_names(&chain[0]);
    for n in ["central.example", "localhost", "127.0.0.1", "::1"] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);

    let server_before = std::fs::read(tmp.path().join("server.pem")).unwrap();
    let (again, created) =
        CentralPki::load_or_create(tmp.path(), &["central.example".into()]).unwrap();
    assert!(!created);
    assert_eq!(again.ca_sha256(), pki.ca_sha256());
    assert_eq!(
        std::fs::read(tmp.path().join("server.pem")).unwrap(),
        server_before,
        "nothing to reissue"
    );
}

#[test]
fn a_new_san_reissues_only_the_server_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let (pki, _) = CentralPki::load_or_create(tmp.path(), &["a.example".into()]).unwrap();
    let ca_before = std::fs::read(tmp.path().join("ca.pem")).unwrap();
    let key_before = std::fs::read(tmp.path().join("ca.key")).unwrap();
    let server_before = std::fs::read(tmp.path().join("server.pem")).unwrap();

    let (again, created) =
        CentralPki::load_or_create(tmp.path(), &["a.example".into(), "192.0.2.7".into()]).unwrap();
    assert!(!created);
    assert_eq!(again.ca_sha256(), pki.ca_sha256());
    assert_eq!(std::fs::read(tmp.path().join("ca.pem")).unwrap(), ca_before);
    assert_eq!(
        std::fs::read(tmp.path().join("ca.key")).unwrap(),
        key_before
    );
    let server_after = std::fs::read_to_string(tmp.path().join("server.pem")).unwrap();
    assert_ne!(server_after.as_bytes(), server_before.as_slice());
    let names = server_names(&parse_pem(&server_after));
    assert!(
        names.contains(&"192.0.2.7".to_string()) && names.contains(&"a.example".to_string()),
        "{names:?}"
    );
    assert_eq!(mode(&tmp.path().join("server.pem")), 0o600);
    assert_eq!(mode(&tmp.path().join("server.key")), 0o600);
}

#[test]
fn a_ca_cert_without_its_key_is_refused_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    central(tmp.path());
    std::fs::remove_file(tmp.path().join("ca.key")).unwrap();
    let err = CentralPki::load_or_create(tmp.path(), &[]).unwrap_err();
    assert!(matches!(err, PkiError::Cert { .. }), "{err:?}");
    assert!(err.to_string().contains("restore ca.key"), "{err}");
}

#[test]
fn a_bad_server_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = CentralPki::load_or_create(tmp.path(), &["not a name".into()]).unwrap_err();
    assert!(
        err.to_string()
            .contains("neither an IP address nor a DNS name"),
        "{err}"
    );
}

#[test]
fn sign_host_csr_forces_the_subject_and_client_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(&tmp.path().join("central"));
    let host_dir = tmp.path().join("host");
    let csr = HostIdentity::new_csr(&host_dir, "evil-asks-for-another-name").unwrap();
    assert_eq!(mode(&host_dir.join("host.key.new")), 0o600);
    let signed = pki.sign_host_csr(&csr, "edge-1", DAY).unwrap();

    let der = parse_pem(&signed.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(common_name(&cert).unwrap(), "edge-1");
    assert_eq!(server_names(&der), vec!["edge-1".to_string()]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any);
    assert!(!cert.is_ca());
    assert_eq!(cert.issuer().to_string(), "CN=Roost central CA");
    let nb = asn1_ms(&cert.validity().not_before);
    let na = asn1_ms(&cert.validity().not_after);
    let now = now_ms();
    assert!(
        nb <= now - 4 * 60 * 1000 && nb >= now - 6 * 60 * 1000,
        "backdated 5 minutes"
    );
    assert!(na.abs_diff(now + 86_400_000) < 5_000, "valid for the ttl");
    assert_eq!(signed.not_after_ms, na);

    // The serial: 16 random positive bytes, the same string the link will see.
    let id = peer_identity(&der).unwrap();
    assert_eq!(id.serial_hex, signed.serial_hex);
    assert_eq!(id.serial_hex, hex::encode(cert.raw_serial()));
    assert_eq!(signed.serial_hex.len(), 32);
    let again = pki.sign_host_csr(&csr, "edge-1", DAY).unwrap();
    assert_ne!(again.serial_hex, signed.serial_hex);
}

#[test]
fn garbage_and_forged_csrs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(tmp.path());
    let err = pki.sign_host_csr("not a csr", "edge-1", DAY).unwrap_err();
    assert!(matches!(err, PkiError::Csr(_)), "{err:?}");
    assert!(err.to_string().contains("PKCS#10"), "{err}");

    // Flip a bit of the signature (the last byte of the DER): it must not verify.
    let csr = HostIdentity::new_csr(&tmp.path().join("h"), "edge-1").unwrap();
    let parsed =
        rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).unwrap();
    let mut der = parsed.as_ref().to_vec();
    *der.last_mut().unwrap() ^= 1;
    let forged = pem_encode("CERTIFICATE REQUEST", &der);
    let err = pki.sign_host_csr(&forged, "edge-1", DAY).unwrap_err();
    assert!(matches!(err, PkiError::Csr(_)), "{err:?}");
    assert!(err.to_string().contains("signature"), "{err}");

    let err = pki.sign_host_csr(&csr, "bad host/../", DAY).unwrap_err();
    assert!(
        err.to_string().contains("cannot be a certificate name"),
        "{err}"
    );
    let err = pki
        .sign_host_csr(&csr, "edge-1", Duration::from_secs(1))
        .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}

#[test]
fn install_refuses_a_cert_for_another_key_or_from_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(&tmp.path().join("c1"));
    let other = central(&tmp.path().join("c2"));
    let dir = tmp.path().join("host");

    // Signed for a key that is not the pending one.
    let other_csr = HostIdentity::new_csr(&tmp.path().join("elsewhere"), "edge-1").unwrap();
    HostIdentity::new_csr(&dir, "edge-1").unwrap();
    let foreign = pki.sign_host_csr(&other_csr, "edge-1", DAY).unwrap();
    let err = HostIdentity::install(&dir, &foreign.cert_pem, pki.ca_pem()).unwrap_err();
    assert!(err.to_string().contains("another key"), "{err}");
    assert!(
        HostIdentity::load(&dir).unwrap().is_none(),
        "nothing installed"
    );

    // Signed by another CA than the one sent with it.
    let csr = HostIdentity::new_csr(&dir, "edge-1").unwrap();
    let signed = other.sign_host_csr(&csr, "edge-1", DAY).unwrap();
    let err = HostIdentity::install(&dir, &signed.cert_pem, pki.ca_pem()).unwrap_err();
    assert!(
        err.to_string().contains("not a valid client certificate"),
        "{err}"
    );
    assert!(!dir.join("host.pem").exists());

    // The right pair installs; the files are private, the key renamed into place.
    let signed = pki.sign_host_csr(&csr, "edge-1", DAY).unwrap();
    let id = HostIdentity::install(&dir, &signed.cert_pem, pki.ca_pem()).unwrap();
    assert_eq!(id.name(), "edge-1");
    assert_eq!(id.ca_pem(), pki.ca_pem());
    assert_eq!(id.not_after_ms(), signed.not_after_ms);
    assert!(!dir.join("host.key.new").exists());
    for f in ["host.key", "host.pem", "ca.pem"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    // Installing the same certificate again (a retried response) is fine.
    HostIdentity::install(&dir, &signed.cert_pem, pki.ca_pem()).unwrap();
}

#[test]
fn a_renewal_in_flight_keeps_the_working_key_and_load_finishes_an_interrupted_install() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(&tmp.path().join("c"));
    let dir = tmp.path().join("host");
    let (first, _) = enroll(&pki, &dir, "edge-1");
    let key_before = std::fs::read(dir.join("host.key")).unwrap();

    // A renewal CSR does not touch the working key, and the identity still loads.
    let csr = HostIdentity::new_csr(&dir, "edge-1").unwrap();
    assert_eq!(std::fs::read(dir.join("host.key")).unwrap(), key_before);
    let loaded = HostIdentity::load(&dir).unwrap().unwrap();
    assert_eq!(loaded.not_after_ms(), first.not_after_ms());

    // A crash after host.pem was written but before host.key.new was renamed.
    let signed = pki.sign_host_csr(&csr, "edge-1", 2 * DAY).unwrap();
    std::fs::write(dir.join("host.pem"), &signed.cert_pem).unwrap();
    let id = HostIdentity::load(&dir).unwrap().unwrap();
    assert_eq!(id.not_after_ms(), signed.not_after_ms);
    assert!(!dir.join("host.key.new").exists());
    assert_ne!(std::fs::read(dir.join("host.key")).unwrap(), key_before);
    id.client_tls_config().unwrap();
}

#[test]
fn renew_is_due_at_two_thirds_of_the_lifetime() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(&tmp.path().join("c"));
    let dir = tmp.path().join("host");
    let csr = HostIdentity::new_csr(&dir, "edge-1").unwrap();
    let signed = pki
        .sign_host_csr(&csr, "edge-1", Duration::from_secs(3 * 3600))
        .unwrap();
    let id = HostIdentity::install(&dir, &signed.cert_pem, pki.ca_pem()).unwrap();
    let der = parse_pem(&signed.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let nb = asn1_ms(&cert.validity().not_before);
    let na = id.not_after_ms();
    let due = nb + (na - nb) * 2 / 3;
    assert!(!id.renew_due(nb));
    assert!(!id.renew_due(now_ms()));
    assert!(!id.renew_due(due - 1));
    assert!(id.renew_due(due));
    assert!(id.renew_due(na + 1));
}

#[test]
fn load_without_a_cert_is_none() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(HostIdentity::load(tmp.path()).unwrap().is_none());
    assert!(HostIdentity::load(&tmp.path().join("missing"))
        .unwrap()
        .is_none());
}

// ---- handshakes ----

/// Run a TLS handshake over an in-memory pipe; the server reads what the client
/// writes. Returns the server's result (peer certificates, ALPN) and the client's.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> (
    std::io::Result<(Option<Vec<Vec<u8>>>, Option<Vec<u8>>)>,
    std::io::Result<()>,
) {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(name.to_string()).unwrap();
    let srv = async move {
        let mut tls = tokio_rustls::TlsAcceptor::from(server).accept(s).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        let conn = tls.get_ref().1;
        let peers = conn
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.to_vec()).collect());
        Ok((peers, conn.alpn_protocol().map(<[u8]>::to_vec)))
    };
    let cli = async move {
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, c)
            .await?;
        tls.write_all(b"ping").await?;
        tls.flush().await?;
        // Hold the connection until the server has read (or refused).
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        Ok(())
    };
    let (srv, cli) = tokio::join!(
        async move {
            let r = srv.await;
            r
        },
        cli
    );
    (srv, cli)
}

#[tokio::test]
async fn mutual_tls_identifies_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(&tmp.path().join("c"));
    let (id, signed) = enroll(&pki, &tmp.path().join("h"), "edge-1");
    let (srv, _) = tokio::time::timeout(
        Duration::from_secs(10),
        handshake(
            pki.server_tls_config().unwrap(),
            id.client_tls_config().unwrap(),
            "central.example",
        ),
    )
    .await
    .unwrap();
    let (peers, alpn) = srv.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let peers = peers.expect("the host presented its certificate");
    assert_eq!(peers.len(), 1);
    let who = peer_identity(&peers[0]).unwrap();
    assert_eq!(who.cn, "edge-1");
    assert_eq!(who.serial_hex, signed.serial_hex);
    assert_eq!(who.not_after_ms, signed.not_after_ms);
}

#[tokio::test]
async fn a_client_without_a_cert_connects_but_presents_none() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(tmp.path());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certs_from_pem("ca", pki.ca_pem()).unwrap().remove(0))
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (srv, cli) = handshake(pki.server_tls_config().unwrap(), Arc::new(cfg), "10.1.2.3").await;
    cli.unwrap();
    let (peers, alpn) = srv.unwrap();
    assert!(peers.is_none(), "no client certificate");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn a_client_cert_from_another_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(&tmp.path().join("c1"));
    let other = central(&tmp.path().join("c2"));
    let dir = tmp.path().join("h");
    enroll(&other, &dir, "edge-1");
    // Trusts the right central, but presents a certificate from the other CA.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certs_from_pem("ca", pki.ca_pem()).unwrap().remove(0))
        .unwrap();
    let chain = certs_from_pem(
        "host.pem",
        &std::fs::read_to_string(dir.join("host.pem")).unwrap(),
    )
    .unwrap();
    let key = key_from_pem(
        "host.key",
        &std::fs::read_to_string(dir.join("host.key")).unwrap(),
    )
    .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let (srv, _) = tokio::time::timeout(
        Duration::from_secs(10),
        handshake(pki.server_tls_config().unwrap(), Arc::new(cfg), "localhost"),
    )
    .await
    .unwrap();
    let err = srv.unwrap_err();
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn a_host_trusts_only_its_central() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(&tmp.path().join("c1"));
    let other = central(&tmp.path().join("c2"));
    let (id, _) = enroll(&pki, &tmp.path().join("h"), "edge-1");
    let (_, cli) = handshake(
        other.server_tls_config().unwrap(),
        id.client_tls_config().unwrap(),
        "localhost",
    )
    .await;
    assert!(cli.is_err(), "the host must not talk to another central");
}

#[tokio::test]
async fn pinned_enrollment_accepts_the_right_ca_and_yields_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(tmp.path());
    let (cfg, pinned) = pinned_client_config(&pki.ca_sha256()).unwrap();
    assert!(pinned.ca_pem().is_none());
    assert!(cfg.alpn_protocols == vec![b"h2".to_vec()]);
    let (srv, cli) = handshake(pki.server_tls_config().unwrap(), cfg, "central.example").await;
    cli.unwrap();
    let (peers, _) = srv.unwrap();
    assert!(peers.is_none());
    let ca = pinned.ca_pem().expect("the matched CA");
    assert_eq!(ca, pki.ca_pem());
    assert_eq!(sha256_hex(&parse_pem(&ca)), pki.ca_sha256());
}

#[tokio::test]
async fn pinned_enrollment_refuses_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(&tmp.path().join("c1"));
    let other = central(&tmp.path().join("c2"));
    let (cfg, pinned) = pinned_client_config(&other.ca_sha256()).unwrap();
    let (_, cli) = handshake(pki.server_tls_config().unwrap(), cfg, "central.example").await;
    let err = cli.unwrap_err().to_string();
    let want = format!(
        "central's CA certificate does not match the join token's CA hash (sha256 {}…): the token is for another central, or someone is in the middle",
        &other.ca_sha256()[..16]
    );
    assert!(err.contains(&want), "{err}");
    assert!(pinned.ca_pem().is_none());
}

#[tokio::test]
async fn pinned_enrollment_still_checks_the_server_name() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = central(tmp.path());
    let (cfg, pinned) = pinned_client_config(&pki.ca_sha256()).unwrap();
    let (_, cli) = handshake(pki.server_tls_config().unwrap(), cfg, "not-central.example").await;
    assert!(cli.is_err());
    assert!(
        pinned.ca_pem().is_none(),
        "nothing pinned from a failed verification"
    );
    assert!(matches!(
        pinned_client_config("abc"),
        Err(PkiError::Token(_))
    ));
}

// ---- tokens ----

#[test]
fn join_token_round_trips() {
    let hash = sha256_hex(b"ca");
    let t = JoinTokenSecret::generate(&hash);
    assert_eq!(t.id.len(), 8);
    assert_eq!(t.secret.len(), 32);
    assert!(t
        .id
        .bytes()
        .chain(t.secret.bytes())
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let s = t.encode();
    assert!(s.starts_with("roostjoin1."));
    assert_eq!(JoinTokenSecret::parse(&s).unwrap(), t);
    assert_eq!(JoinTokenSecret::parse(&format!("  {s}\n")).unwrap(), t);
    assert_eq!(t.secret_sha256(), sha256_hex(t.secret.as_bytes()));
    assert_ne!(JoinTokenSecret::generate(&hash).secret, t.secret);
    assert!(
        !format!("{t:?}").contains(&t.secret),
        "Debug hides the secret"
    );
}

#[test]
fn join_token_parse_errors_name_the_part_and_hide_the_secret() {
    let hash = sha256_hex(b"ca");
    let secret = "s3cr3ts3cr3ts3cr3ts3cr3ts3cr3tab";
    let good = format!("roostjoin1.abcd1234.{secret}.{hash}");
    JoinTokenSecret::parse(&good).unwrap();
    let msg = |s: &str| match JoinTokenSecret::parse(s) {
        Err(PkiError::Token(m)) => m,
        other => panic!("{s}: {other:?}"),
    };

    let m = msg("abcdef.0123456789abcdef");
    assert!(
        m.contains("4 dot-separated parts") && m.contains("this one has 2"),
        "{m}"
    );
    let m = msg(&format!("kubejoin1.abcd1234.{secret}.{hash}"));
    assert!(
        m.contains("must start with `roostjoin1.`") && m.contains("`kubejoin1`"),
        "{m}"
    );
    let m = msg(&format!("roostjoin1.ABCD1234.{secret}.{hash}"));
    assert!(
        m.contains("ID (part 2)") && m.contains("`A` at position 1"),
        "{m}"
    );
    let m = msg(&format!("roostjoin1.abc.{secret}.{hash}"));
    assert!(
        m.contains("ID (part 2)") && m.contains("has 3 characters"),
        "{m}"
    );
    let bad_secret = secret.replace('s', "S");
    let m = msg(&format!("roostjoin1.abcd1234.{bad_secret}.{hash}"));
    assert!(
        m.contains("secret (part 3)")
            && m.contains("a character at position 1")
            && !m.contains("`S`"),
        "{m}"
    );
    let m = msg(&format!("roostjoin1.abcd1234.{}.{hash}", &secret[..31]));
    assert!(
        m.contains("secret (part 3)") && m.contains("has 31 characters"),
        "{m}"
    );
    let m = msg(&format!(
        "roostjoin1.abcd1234.{secret}.{}",
        hash.to_uppercase()
    ));
    assert!(
        m.contains("CA hash (part 4)") && m.contains("lower-case hex"),
        "{m}"
    );
    let m = msg(&format!("roostjoin1.abcd1234.{secret}.{}", &hash[..60]));
    assert!(
        m.contains("CA hash (part 4)") && m.contains("has 60 characters"),
        "{m}"
    );
    let m = msg(&format!("roostjoin1.abcd1234.{secret}.{}g", &hash[..63]));
    assert!(m.contains("`g` at position 64"), "{m}");
    // Whatever is wrong, the secret never comes back.
    for s in [
        format!("roostjoin1.abcd1234.{secret}"),
        format!("roostjoin2.abcd1234.{secret}.{hash}"),
        format!("roostjoin1.ab.{secret}.{hash}"),
        format!("roostjoin1.abcd1234.{secret}.zz"),
        format!("roostjoin1.abcd1234.{secret}x.{hash}"),
    ] {
        let m = msg(&s);
        assert!(!m.contains(secret) && !m.contains(&secret[..8]), "{m}");
    }
}

#[test]
fn operator_token_is_made_once_and_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let (t, path, created) = operator_token(&dir).unwrap();
    assert!(created);
    assert_eq!(path, dir.join("operator.token"));
    assert_eq!(t.len(), 64);
    assert!(t
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{t}\n"));
    assert_eq!(mode(&path), 0o600);
    let (again, _, created) = operator_token(&dir).unwrap();
    assert!(!created);
    assert_eq!(again, t);
    std::fs::write(&path, "short\n").unwrap();
    assert!(matches!(operator_token(&dir), Err(PkiError::Token(_))));
}

#[test]
fn helpers() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
    assert!(constant_time_eq(b"", b""));
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
    assert_eq!(serial_hex(&[0x00]), "00");
    // PEM encoding round-trips through rustls' decoder, at every padding length.
    for n in [0usize, 1, 2, 3, 47, 48, 49, 100] {
        let data: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
        let pem = pem_encode("CERTIFICATE", &data);
        assert!(pem.lines().all(|l| l.len() <= 64));
        if n > 0 {
            let back = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(back.as_ref(), data.as_slice(), "{n}");
        }
    }
}

#[test]
fn central_pki_is_shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CentralPki>();
    assert_send_sync::<HostIdentity>();
    assert_send_sync::<PinnedCa>();
}

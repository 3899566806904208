//! Enrollment's TLS: trust central only if it presents the CA the join token names.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{pem_encode, provider, sha256_hex, PkiError};

/// The CA certificate a pinned handshake matched, readable after the handshake.
#[derive(Debug, Clone, Default)]
pub struct PinnedCa(Arc<Mutex<Option<Vec<u8>>>>);

impl PinnedCa {
    /// The matched CA certificate (PEM), or None before a successful handshake.
    pub fn ca_pem(&self) -> Option<String> {
        // A poisoned lock still holds a whole Vec: the writer only assigns.
        let der = self.0.lock().unwrap_or_else(|e| e.into_inner());
        der.as_deref().map(|d| pem_encode("CERTIFICATE", d))
    }

    fn set(&self, der: &[u8]) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(der.to_vec());
    }
}

/// A TLS client config for enrollment, before the host has central's CA: ALPN
/// `http/1.1`, no client certificate, and a verifier that accepts central only if one
/// certificate of its chain has SHA-256 `ca_sha256` and the leaf verifies (for the
/// server name dialed) with that certificate as the only trust anchor. The returned
/// [`PinnedCa`] yields that CA certificate after the handshake.
pub fn pinned_client_config(
    ca_sha256: &str,
) -> Result<(Arc<rustls::ClientConfig>, PinnedCa), PkiError> {
    let pin = ca_sha256.trim().to_ascii_lowercase();
    if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PkiError::Token(
            "the CA hash to pin must be 64 hex characters (the last part of the join token)".into(),
        ));
    }
    let provider = provider();
    let pinned = PinnedCa::default();
    let verifier = PinnedVerifier {
        pin,
        provider: provider.clone(),
        matched: pinned.clone(),
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            PkiError::cert(
                "the enrollment TLS client config",
                format!("cannot be built: {e}"),
            )
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(cfg), pinned))
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
    matched: PinnedCa,
}

/// Why a pinned handshake failed, as rustls carries it to the caller.
#[derive(Debug)]
struct PinMismatch(String);

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PinMismatch {}

/// rustls shows `Error::Other` with our Display (a `CertificateError::Other` would be
/// shown with Debug, wrapped in type names), so the operator reads the message as is.
fn refuse(message: String) -> rustls::Error {
    rustls::Error::Other(OtherError(Arc::new(PinMismatch(message))))
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| sha256_hex(c) == self.pin) else {
            let sent: Vec<String> = intermediates
                .iter()
                .map(|c| sha256_hex(c)[..16].to_string())
                .collect();
            return Err(refuse(format!(
                "central's CA certificate does not match the join token's CA hash (sha256 {}…): \
                 the token is for another central, or someone is in the middle (central sent CA sha256 {})",
                &self.pin[..16],
                if sent.is_empty() { "none".to_string() } else { sent.join("…, ") + "…" }
            )));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned()).map_err(|e| {
            refuse(format!(
                "central's CA certificate matches the join token but cannot be a trust anchor: {e}"
            ))
        })?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| {
                    refuse(format!(
                        "cannot verify against central's CA certificate: {e}"
                    ))
                })?;
        let verified =
            inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        self.matched.set(ca);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

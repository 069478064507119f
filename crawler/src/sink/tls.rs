//! The sink's certificate: a researcher's (PEM chain and key) or one made at start, and its
//! pin (SHA-256 of the leaf's DER), which egress clients compare with what they are shown.

use crate::job::config::ConfigError;
use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// ring, not the aws-lc-rs default (see rust-stack notes: cmake, build minutes).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lower-case hex SHA-256 of a DER certificate: the pin.
pub fn pin_of(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

pub struct SinkCert {
    pub config: Arc<rustls::ServerConfig>,
    pub pin: String,
    /// Made at start (self-signed), not loaded.
    pub generated: bool,
    /// DER bytes of the chain: each handshake sends them once, so the output bound grows by it.
    pub chain_bytes: usize,
}

/// Load `cert` (PEM chain, leaf first) and `key` (PEM private key).
pub fn load(cert: &Path, key: &Path) -> Result<SinkCert> {
    let bad = |p: &Path, e: &dyn std::fmt::Display| ConfigError(format!("{}: {e}", p.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert).map_err(|e| bad(cert, &e))?.collect::<Result<_, _>>().map_err(|e| bad(cert, &e))?;
    let Some(leaf) = chain.first() else { return Err(bad(cert, &"no certificate in the file").into()) };
    let pin = pin_of(leaf);
    let chain_bytes = chain.iter().map(|c| c.len()).sum();
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let config = server_config(chain, key_der).map_err(|e| ConfigError(format!("{} and {}: {e:#}", cert.display(), key.display())))?;
    Ok(SinkCert { config, pin, generated: false, chain_bytes })
}

/// A self-signed certificate for `name`, made now: enough for a pin, which is all a client of
/// the sink checks.
pub fn self_signed(name: &str) -> Result<SinkCert> {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).context("making a self-signed certificate")?;
    let der = ck.cert.der().clone();
    let pin = pin_of(&der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let chain_bytes = der.len();
    Ok(SinkCert { config: server_config(vec![der], key)?, pin, generated: true, chain_bytes })
}

fn server_config(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<rustls::ServerConfig>> {
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key do not make a TLS server (key does not match, or unsupported)")?;
    // No client resumes a session with a sink: tickets would only add bytes to every reply.
    c.send_tls13_tickets = 0;
    Ok(Arc::new(c))
}

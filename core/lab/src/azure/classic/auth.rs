//! Stand-in for classic management-certificate authentication.
//!
//! Real Service Management authenticates the caller by the client TLS certificate: the
//! certificate's thumbprint must be registered on the subscription and the TLS handshake
//! proves the caller holds the private key. The lab serves plain HTTP on loopback, so the
//! same two facts travel in headers instead:
//!
//! - `x-homeward-certificate-thumbprint`: the certificate thumbprint (40 upper-case hex
//!   characters, as the portal shows it);
//! - `x-homeward-certificate-signature`: base64 of HMAC-SHA256, keyed with the
//!   certificate's private key material, over
//!   `METHOD \n path \n query \n x-ms-version \n hex(SHA-256(body))`
//!   (path and query exactly as sent, query without `?`).
//!
//! A missing, unknown or wrong proof is refused with the real `403 ForbiddenError` body.
//! Adapters sign with the key material the operator configures, just as they would present
//! the certificate to real Azure.

use crate::azure::blob::shared_key::hmac_base64;
use sha2::{Digest, Sha256};

/// Header carrying the certificate thumbprint.
pub const THUMBPRINT_HEADER: &str = "x-homeward-certificate-thumbprint";
/// Header carrying the proof of possession.
pub const SIGNATURE_HEADER: &str = "x-homeward-certificate-signature";

/// A management certificate: its thumbprint and the key material that proves possession.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagementCertificate {
    /// Upper-case hex thumbprint (20 bytes).
    pub thumbprint: String,
    /// Private key material used for the HMAC proof.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for ManagementCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementCertificate").field("thumbprint", &self.thumbprint).field("key", &"<redacted>").finish()
    }
}

impl ManagementCertificate {
    /// A certificate for `key`; the thumbprint is derived from the key so both stay paired.
    pub fn from_key(key: Vec<u8>) -> Self {
        let digest = Sha256::digest(&key);
        let thumbprint = digest[..20].iter().map(|b| format!("{b:02X}")).collect();
        Self { thumbprint, key }
    }

    /// A fresh random certificate.
    pub fn generate() -> Self {
        Self::from_key((0..32).map(|_| rand::random::<u8>()).collect())
    }

    /// The string the proof is computed over.
    pub fn string_to_sign(method: &str, raw_path: &str, raw_query: &str, x_ms_version: &str, body: &[u8]) -> String {
        let body_hash: String = Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
        format!("{}\n{raw_path}\n{raw_query}\n{x_ms_version}\n{body_hash}", method.to_ascii_uppercase())
    }

    /// The proof header value for a request.
    pub fn sign(&self, method: &str, raw_path: &str, raw_query: &str, x_ms_version: &str, body: &[u8]) -> String {
        hmac_base64(&self.key, &Self::string_to_sign(method, raw_path, raw_query, x_ms_version, body))
    }

    /// Both authentication headers for a request, ready to add.
    pub fn headers(&self, method: &str, raw_path: &str, raw_query: &str, x_ms_version: &str, body: &[u8]) -> [(&'static str, String); 2] {
        [
            (THUMBPRINT_HEADER, self.thumbprint.clone()),
            (SIGNATURE_HEADER, self.sign(method, raw_path, raw_query, x_ms_version, body)),
        ]
    }
}

/// Constant-time comparison, so the proof check does not leak how much of it matched.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

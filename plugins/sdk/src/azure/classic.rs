//! Classic Service Management: XML calls under `/{subscription-id}/…` with `x-ms-version`,
//! authenticated by the management certificate, and asynchronous operations tracked by
//! the `x-ms-request-id` they return.
//!
//! Real Service Management checks the certificate in the TLS handshake. Where the endpoint
//! is plain HTTP (the Homeward lab), the same proof travels in headers: the thumbprint in
//! `x-homeward-certificate-thumbprint` and, in `x-homeward-certificate-signature`, base64
//! HMAC-SHA256 under the certificate key over
//! `METHOD\npath\nquery\nx-ms-version\nhex(sha256(body))`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::errors;
use super::xml::Element;
use crate::error;
use crate::http::{Request, Response, split_url};
use crate::types::AdapterError;

/// Header carrying the certificate thumbprint.
pub const THUMBPRINT_HEADER: &str = "x-homeward-certificate-thumbprint";
/// Header carrying the proof of the certificate key.
pub const SIGNATURE_HEADER: &str = "x-homeward-certificate-signature";
/// The XML namespace of Service Management documents.
pub const NS: &str = "http://schemas.microsoft.com/windowsazure";

/// A classic subscription's Service Management endpoint with its certificate.
#[derive(Clone)]
pub struct Classic {
    /// Such as `https://management.core.windows.net`.
    pub base: String,
    pub subscription: String,
    pub version: String,
    pub thumbprint: String,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Classic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classic").field("base", &self.base).field("subscription", &self.subscription).finish_non_exhaustive()
    }
}

/// Where an asynchronous classic operation stands.
#[derive(Debug, Clone)]
pub enum Status {
    Running,
    Succeeded,
    Failed(AdapterError),
}

/// The classic error of a response (`<Error><Code/><Message/></Error>`), mapped.
pub fn error_of(what: &str, resp: &Response) -> AdapterError {
    let doc = Element::parse(&resp.body).ok();
    let code = doc.as_ref().and_then(|d| d.text_at("Code")).unwrap_or_default().to_string();
    let message = doc.as_ref().and_then(|d| d.text_at("Message")).map(str::to_string).unwrap_or_else(|| resp.text());
    errors::from_azure(what, resp.status, &code, &message, resp.retry_after_ms())
}

impl Classic {
    /// Reads `management_endpoint`, `subscription_id`, `certificate_thumbprint` and optional
    /// `x_ms_version` from config; the certificate key (base64) is the secret
    /// `management_certificate_key`.
    pub fn from_config() -> Result<Self, AdapterError> {
        let key = STANDARD
            .decode(crate::host::secret("management_certificate_key")?.trim())
            .map_err(|e| error::invalid(format!("secret `management_certificate_key` is not base64: {e}")))?;
        Ok(Self {
            base: crate::host::require("management_endpoint")?.trim_end_matches('/').to_string(),
            subscription: crate::host::require("subscription_id")?,
            version: crate::host::config_or("x_ms_version", "2015-04-01"),
            thumbprint: crate::host::require("certificate_thumbprint")?,
            key,
        })
    }

    /// The certificate proof for one request.
    pub fn signature(&self, method: &str, path: &str, query: &str, body: &[u8]) -> String {
        let hash: String = Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
        let sts = format!("{}\n{path}\n{query}\n{}\n{hash}", method.to_ascii_uppercase(), self.version);
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(sts.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// Sends a call to `/{subscription}{path}` (path may carry a query). Answers of 400 and
    /// above become the mapped error, naming `what`.
    pub fn send(&self, what: &str, method: &str, path: &str, body: Option<String>) -> Result<Response, AdapterError> {
        let url = format!("{}/{}{path}", self.base, self.subscription);
        let parts = split_url(&url).map_err(AdapterError::from)?;
        let (raw_path, query) = parts.path_with_query.split_once('?').unwrap_or((parts.path_with_query, ""));
        let body = body.unwrap_or_default().into_bytes();
        let sig = self.signature(method, raw_path, query, &body);
        let mut req = Request::new(method, url.clone())
            .header("x-ms-version", self.version.clone())
            .header(THUMBPRINT_HEADER, self.thumbprint.clone())
            .header(SIGNATURE_HEADER, sig);
        if !body.is_empty() {
            req = req.header("content-type", "application/xml").body(body);
        }
        let resp = req.send().map_err(|e| match AdapterError::from(e) {
            AdapterError::Unavailable(u) => error::unavailable(format!("{what}: {}", u.message), u.retry_after_ms),
            other => other,
        })?;
        if resp.status >= 400 {
            return Err(error_of(what, &resp));
        }
        Ok(resp)
    }

    /// GETs a document.
    pub fn get(&self, what: &str, path: &str) -> Result<Element, AdapterError> {
        let resp = self.send(what, "GET", path, None)?;
        Element::parse(&resp.body).map_err(|e| error::internal(format!("{what}: Service Management answered with invalid XML ({e})")))
    }

    /// GETs a document; `None` when the object does not exist.
    pub fn get_opt(&self, what: &str, path: &str) -> Result<Option<Element>, AdapterError> {
        match self.get(what, path) {
            Ok(d) => Ok(Some(d)),
            Err(AdapterError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a call that starts an asynchronous operation and returns its request id.
    pub fn start(&self, what: &str, method: &str, path: &str, body: Option<String>) -> Result<String, AdapterError> {
        let resp = self.send(what, method, path, body)?;
        resp.header("x-ms-request-id").map(str::to_string).ok_or_else(|| error::internal(format!("{what}: Service Management answered {} without x-ms-request-id", resp.status)))
    }

    /// Reads an asynchronous operation's status once.
    pub fn poll(&self, what: &str, request_id: &str) -> Result<Status, AdapterError> {
        let doc = self.get(what, &format!("/operations/{request_id}"))?;
        Ok(match doc.text_at("Status").unwrap_or("InProgress") {
            "Succeeded" => Status::Succeeded,
            "Failed" => {
                let status = doc.text_at("HttpStatusCode").and_then(|s| s.parse().ok()).unwrap_or(400);
                let code = doc.text_at("Error/Code").unwrap_or("OperationFailed");
                let message = doc.text_at("Error/Message").unwrap_or("the operation failed without a message");
                Status::Failed(errors::from_azure(what, status, code, message, None))
            }
            _ => Status::Running,
        })
    }
}

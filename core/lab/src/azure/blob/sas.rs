//! Blob service SAS: signing and verification of `sv, sr, sp, st, se, sig` URLs.
//!
//! The string-to-sign follows the service's versions: 2015-04-05 up to 2018-03-28, then
//! 2018-11-09 (adds `sr` and the snapshot time), then 2020-12-06 (adds the encryption scope).

use super::shared_key::hmac_base64;
use crate::azure::http::{encode, iso8601};

/// Newest SAS version the lab signs with.
pub const SIGN_VERSION: &str = "2020-12-06";

/// Parameters of a service SAS for one blob (or snapshot) or container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SasParams {
    /// `sv`: signed version.
    pub version: String,
    /// `sr`: `b` (blob), `bs` (blob snapshot) or `c` (container).
    pub resource: String,
    /// `sp`: permissions, a subset of `racwdl` in that order.
    pub permissions: String,
    /// `st`: optional start, ISO 8601.
    pub start: String,
    /// `se`: expiry, ISO 8601.
    pub expiry: String,
    /// `si`: stored access policy identifier (the lab has none, so must be empty).
    pub identifier: String,
    /// `sip`: allowed IP range.
    pub ip: String,
    /// `spr`: allowed protocols.
    pub protocol: String,
    /// `snapshot`: the snapshot a `bs` SAS is scoped to.
    pub snapshot: String,
    /// `ses`: encryption scope.
    pub encryption_scope: String,
    /// `rscc`, `rscd`, `rsce`, `rscl`, `rsct`: response header overrides.
    pub response_headers: [String; 5],
}

impl SasParams {
    /// A SAS for a blob with the lab's signing version, expiring at `expiry_unix`.
    pub fn blob(permissions: &str, expiry_unix: u64) -> Self {
        Self {
            version: SIGN_VERSION.into(),
            resource: "b".into(),
            permissions: permissions.into(),
            expiry: iso8601(expiry_unix),
            ..Default::default()
        }
    }

    /// Reads the SAS fields from decoded query pairs; `None` when there is no `sig`.
    pub fn from_query(q: &[(String, String)]) -> Option<(Self, String)> {
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let sig = q.iter().find(|(n, _)| n == "sig")?.1.clone();
        Some((
            Self {
                version: get("sv"),
                resource: get("sr"),
                permissions: get("sp"),
                start: get("st"),
                expiry: get("se"),
                identifier: get("si"),
                ip: get("sip"),
                protocol: get("spr"),
                snapshot: get("snapshot"),
                encryption_scope: get("ses"),
                response_headers: [get("rscc"), get("rscd"), get("rsce"), get("rscl"), get("rsct")],
            },
            sig,
        ))
    }

    /// The string-to-sign for `canonical_resource` (`/blob/{account}/{container}[/{blob}]`).
    pub fn string_to_sign(&self, canonical_resource: &str) -> String {
        let mut parts: Vec<&str> = vec![
            &self.permissions,
            &self.start,
            &self.expiry,
            canonical_resource,
            &self.identifier,
            &self.ip,
            &self.protocol,
            &self.version,
        ];
        if self.version.as_str() >= "2018-11-09" {
            parts.push(&self.resource);
            parts.push(&self.snapshot);
        }
        if self.version.as_str() >= "2020-12-06" {
            parts.push(&self.encryption_scope);
        }
        for r in &self.response_headers {
            parts.push(r);
        }
        parts.join("\n")
    }

    /// Signs and renders the query string (without `?`) for `canonical_resource`.
    pub fn to_query(&self, key: &[u8], canonical_resource: &str) -> String {
        let sig = hmac_base64(key, &self.string_to_sign(canonical_resource));
        let mut q = vec![("sv", self.version.as_str()), ("sr", &self.resource), ("sp", &self.permissions)];
        if !self.start.is_empty() {
            q.push(("st", &self.start));
        }
        q.push(("se", &self.expiry));
        if !self.protocol.is_empty() {
            q.push(("spr", &self.protocol));
        }
        let mut out: Vec<String> = q.into_iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        out.push(format!("sig={}", encode(&sig)));
        out.join("&")
    }
}

/// `/blob/{account}/{container}/{blob}`, the canonicalized resource of a blob SAS.
pub fn canonical_blob(account: &str, container: &str, blob: &str) -> String {
    format!("/blob/{account}/{container}/{blob}")
}

/// Whether `granted` (the `sp` value) contains every permission letter in `needed`.
pub fn permits(granted: &str, needed: char) -> bool {
    granted.contains(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_grows_with_the_version() {
        let mut p = SasParams::blob("r", 0);
        let newest = p.string_to_sign("/blob/a/c/b");
        assert_eq!(newest.split('\n').count(), 16);
        p.version = "2019-02-02".into();
        assert_eq!(p.string_to_sign("/blob/a/c/b").split('\n').count(), 15);
        p.version = "2017-11-09".into();
        assert_eq!(p.string_to_sign("/blob/a/c/b").split('\n').count(), 13);
    }

    #[test]
    fn query_round_trips() {
        let p = SasParams::blob("rw", 1_900_000_000);
        let q = p.to_query(b"key", "/blob/a/c/b");
        let (parsed, sig) = SasParams::from_query(&crate::azure::http::parse_query(&q)).unwrap();
        assert_eq!(parsed, p);
        assert_eq!(sig, hmac_base64(b"key", &p.string_to_sign("/blob/a/c/b")));
    }
}

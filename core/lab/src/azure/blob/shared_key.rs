//! Storage SharedKey authorization: the real string-to-sign (version 2015-02-21 and later)
//! signed with HMAC-SHA256 under the account key. Exposed so tests and native transports
//! sign requests the same way the Azure SDKs do.

use axum::http::{HeaderMap, Method};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `message` under `key`, base64-encoded.
pub fn hmac_base64(key: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The SharedKey string-to-sign for a Blob request.
///
/// `raw_path` is the request path as sent (percent-encoded); on the lab's path-style URLs it
/// already starts with `/{account}`, so the canonicalized resource is
/// `/{account}/{account}/{container}/{blob}`, exactly as for Azurite and the emulator.
/// `raw_query` is the query string without `?`.
pub fn string_to_sign(method: &Method, account: &str, raw_path: &str, raw_query: &str, headers: &HeaderMap) -> String {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_string();
    let content_length = match h("content-length").as_str() {
        "0" => String::new(),
        other => other.to_string(),
    };
    let mut s = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        method.as_str(),
        h("content-encoding"),
        h("content-language"),
        content_length,
        h("content-md5"),
        h("content-type"),
        h("date"),
        h("if-modified-since"),
        h("if-match"),
        h("if-none-match"),
        h("if-unmodified-since"),
        h("range"),
    );
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-ms-"))
        .map(|(k, v)| (k.as_str().to_string(), unfold(v.to_str().unwrap_or(""))))
        .collect();
    ms.sort();
    for (k, v) in ms {
        s.push_str(&format!("{k}:{v}\n"));
    }
    s.push_str(&format!("/{account}{raw_path}"));
    let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in crate::azure::http::parse_query(raw_query) {
        params.entry(k.to_ascii_lowercase()).or_default().push(v);
    }
    for (k, mut vs) in params {
        vs.sort();
        s.push_str(&format!("\n{k}:{}", vs.join(",")));
    }
    s
}

/// Collapses runs of whitespace as the service does before signing header values.
fn unfold(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `Authorization` header value for a request: `SharedKey {account}:{signature}`.
pub fn authorization(key: &[u8], method: &Method, account: &str, raw_path: &str, raw_query: &str, headers: &HeaderMap) -> String {
    let sig = hmac_base64(key, &string_to_sign(method, account, raw_path, raw_query, headers));
    format!("SharedKey {account}:{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn canonicalizes_headers_and_query() {
        let mut h = HeaderMap::new();
        h.insert("x-ms-version", HeaderValue::from_static("2021-08-06"));
        h.insert("x-ms-date", HeaderValue::from_static("Sun, 22 Nov 2026 00:00:00 GMT"));
        h.insert("content-length", HeaderValue::from_static("0"));
        let s = string_to_sign(&Method::GET, "acct", "/acct/c/b", "comp=pagelist&prevsnapshot=2026-11-22T00%3A00%3A00.0000000Z", &h);
        assert_eq!(
            s,
            "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Sun, 22 Nov 2026 00:00:00 GMT\nx-ms-version:2021-08-06\n/acct/acct/c/b\ncomp:pagelist\nprevsnapshot:2026-11-22T00:00:00.0000000Z"
        );
    }
}

//! Shared guest-side code of the Azure adapters (Resource Manager and classic).
//!
//! - [`token`]: client-credentials bearer tokens, cached in the key-value store;
//! - [`arm`]: Resource Manager JSON calls with `api-version`, error mapping and
//!   long-running operations (`Azure-AsyncOperation` / `Location`, `Retry-After`);
//! - [`classic`]: Service Management XML with `x-ms-version`, the management-certificate
//!   proof and asynchronous operation status by `x-ms-request-id`;
//! - [`blob`]: SharedKey signing, service SAS and Get Page Ranges (with diffs);
//! - [`ops`]: operations the host polls, persisted in the key-value store;
//! - [`errors`]: Azure error codes to the contract's error variant;
//! - [`xml`]: a small element tree for the XML documents Azure returns;
//! - [`clock`]: wall-clock time in the formats Azure wants, and sleeping.

pub mod arm;
pub mod blob;
pub mod classic;
pub mod clock;
pub mod errors;
pub mod ops;
pub mod token;
pub mod xml;

/// Percent-encodes everything but RFC 3986 unreserved characters (query values, form fields).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as a space, as form encoding does).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a query string into decoded `(key, value)` pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode(k), decode(v))
    }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        let s = "2026-11-22T00:00:00.0000000Z a/b+c";
        assert_eq!(decode(&encode(s)), s);
        assert_eq!(parse_query("a=1&b=x%3Ay"), vec![("a".into(), "1".into()), ("b".into(), "x:y".into())]);
    }
}

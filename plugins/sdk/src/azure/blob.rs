//! Blob storage: SharedKey request signing, service SAS URLs, and page lists.
//!
//! URLs may be host-style (`https://acct.blob.core.windows.net/c/b`) or path-style
//! (`http://127.0.0.1:10000/acct/c/b`, emulators); [`BlobUrl`] tells container and blob
//! apart in both.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::xml::Element;
use super::{clock, decode, encode, errors, parse_query};
use crate::error;
use crate::http::{Request, Response, split_url};
use crate::types::{AdapterError, Extent};

/// The storage service version this code speaks.
pub const SERVICE_VERSION: &str = "2021-08-06";
/// The SAS signing version (adds `sr`, snapshot time and encryption scope to the string).
pub const SAS_VERSION: &str = "2020-12-06";
/// Page size of page blobs.
pub const PAGE: u64 = 512;

/// A storage account and its key.
#[derive(Clone)]
pub struct Account {
    pub name: String,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A blob URL split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUrl {
    /// `scheme://authority` plus `/{account}` for path-style URLs.
    pub base: String,
    pub container: String,
    pub blob: String,
}

impl BlobUrl {
    /// Splits `url` (any query is dropped). `account` tells path-style URLs apart.
    pub fn parse(url: &str, account: &str) -> Result<BlobUrl, AdapterError> {
        let parts = split_url(url).map_err(AdapterError::from)?;
        let path = parts.path_with_query.split('?').next().unwrap_or("");
        let origin = format!("{}://{}", parts.scheme, parts.authority);
        let (base, rest) = match path.strip_prefix(&format!("/{account}/")) {
            Some(rest) => (format!("{origin}/{account}"), rest),
            None => (origin, path.trim_start_matches('/')),
        };
        let (container, blob) = rest.split_once('/').ok_or_else(|| error::invalid(format!("`{url}` is not a blob URL (no container/blob path)")))?;
        Ok(BlobUrl { base, container: decode(container), blob: decode(blob) })
    }

    /// The URL without query.
    pub fn url(&self) -> String {
        format!("{}/{}/{}", self.base, encode_path(&self.container), encode_path(&self.blob))
    }
}

fn encode_path(p: &str) -> String {
    p.split('/').map(encode).collect::<Vec<_>>().join("/")
}

fn hmac_base64(key: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

impl Account {
    /// Reads the account name from config key `name_key` and its base64 key from the secret
    /// `secret_name`.
    pub fn from_config(name_key: &str, secret_name: &str) -> Result<Account, AdapterError> {
        let name = crate::host::require(name_key)?;
        let key = STANDARD
            .decode(crate::host::secret(secret_name)?.trim())
            .map_err(|e| error::invalid(format!("secret `{secret_name}` is not a base64 storage key: {e}")))?;
        Ok(Account { name, key })
    }

    /// The SharedKey string-to-sign (service version 2015-02-21 and later).
    pub fn string_to_sign(&self, method: &str, url: &str, headers: &[(String, String)]) -> Result<String, AdapterError> {
        let parts = split_url(url).map_err(AdapterError::from)?;
        let (path, query) = parts.path_with_query.split_once('?').unwrap_or((parts.path_with_query, ""));
        let h = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()).unwrap_or_default();
        let content_length = match h("content-length").as_str() {
            "0" => String::new(),
            other => other.to_string(),
        };
        let mut s = format!(
            "{method}\n{}\n{}\n{content_length}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            h("content-encoding"),
            h("content-language"),
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
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-ms-"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect();
        ms.sort();
        for (k, v) in ms {
            s.push_str(&format!("{k}:{v}\n"));
        }
        s.push_str(&format!("/{}{path}", self.name));
        let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (k, v) in parse_query(query) {
            params.entry(k.to_ascii_lowercase()).or_default().push(v);
        }
        for (k, mut vs) in params {
            vs.sort();
            s.push_str(&format!("\n{k}:{}", vs.join(",")));
        }
        Ok(s)
    }

    /// Sends a SharedKey-signed request (adds `x-ms-date`, `x-ms-version`, `Authorization`).
    /// Answers of 400 and above become the mapped error, naming `what`.
    pub fn send(&self, what: &str, method: &str, url: &str, mut headers: Vec<(String, String)>, body: Vec<u8>) -> Result<Response, AdapterError> {
        headers.push(("x-ms-date".into(), clock::http_date(clock::unix_now())));
        headers.push(("x-ms-version".into(), SERVICE_VERSION.into()));
        // Storage answers 411 to a PUT without Content-Length, even an empty one.
        if !body.is_empty() || matches!(method, "PUT" | "POST") {
            headers.push(("content-length".into(), body.len().to_string()));
        }
        let sig = hmac_base64(&self.key, &self.string_to_sign(method, url, &headers)?);
        let mut req = Request::new(method, url).header("authorization", format!("SharedKey {}:{sig}", self.name)).body(body);
        for (k, v) in headers {
            req = req.header(&k, v);
        }
        let resp = req.send().map_err(|e| prefix(what, e.into()))?;
        if resp.status >= 400 {
            return Err(error_of(what, &resp));
        }
        Ok(resp)
    }

    /// A service SAS query string for one blob (or one snapshot of it), valid until
    /// `expiry_unix`, with permissions such as `r` or `rw`.
    pub fn sas_query(&self, container: &str, blob: &str, permissions: &str, expiry_unix: u64, snapshot: Option<&str>) -> String {
        let canonical = format!("/blob/{}/{container}/{blob}", self.name);
        let resource = if snapshot.is_some() { "bs" } else { "b" };
        let expiry = clock::iso8601(expiry_unix);
        // sp, st, se, resource, si, sip, spr, sv, sr, snapshot time, ses, then the five
        // response-header overrides (rscc, rscd, rsce, rscl, rsct), all empty here.
        let fields = [permissions, "", &expiry, &canonical, "", "", "", SAS_VERSION, resource, snapshot.unwrap_or(""), "", "", "", "", "", ""];
        let sig = hmac_base64(&self.key, &fields.join("\n"));
        format!("sv={SAS_VERSION}&sr={resource}&sp={}&se={}&sig={}", encode(permissions), encode(&expiry), encode(&sig))
    }

    /// A full SAS URL for `blob` (and `snapshot`).
    pub fn sas_url(&self, blob: &BlobUrl, permissions: &str, expiry_unix: u64, snapshot: Option<&str>) -> String {
        let q = self.sas_query(&blob.container, &blob.blob, permissions, expiry_unix, snapshot);
        match snapshot {
            Some(s) => format!("{}?snapshot={}&{q}", blob.url(), encode(s)),
            None => format!("{}?{q}", blob.url()),
        }
    }
}

fn prefix(what: &str, e: AdapterError) -> AdapterError {
    match e {
        AdapterError::Unavailable(u) => error::unavailable(format!("{what}: {}", u.message), u.retry_after_ms),
        other => other,
    }
}

/// The Blob error of a response (`x-ms-error-code`, or the XML body), mapped.
pub fn error_of(what: &str, resp: &Response) -> AdapterError {
    let doc = Element::parse(&resp.body).ok();
    let code = resp.header("x-ms-error-code").map(str::to_string).or_else(|| doc.as_ref().and_then(|d| d.text_at("Code")).map(str::to_string)).unwrap_or_default();
    let message = doc.as_ref().and_then(|d| d.text_at("Message")).map(|m| m.lines().next().unwrap_or("").to_string()).unwrap_or_else(|| resp.text());
    errors::from_azure(what, resp.status, &code, &message, resp.retry_after_ms())
}

/// A page list: valid (written) ranges and, for a diff, cleared ranges; half-open
/// `[start, end)` byte offsets, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageList {
    pub valid: Vec<(u64, u64)>,
    pub cleared: Vec<(u64, u64)>,
}

impl PageList {
    /// Parses a `<PageList>` document (`<PageRange>` and `<ClearRange>` with inclusive ends).
    pub fn parse(body: &[u8]) -> Result<PageList, AdapterError> {
        let doc = Element::parse(body).map_err(|e| error::internal(format!("Get Page Ranges answered with invalid XML: {e}")))?;
        let mut out = PageList::default();
        for item in &doc.children {
            let start = item.text_at("Start").and_then(|s| s.parse::<u64>().ok());
            let end = item.text_at("End").and_then(|s| s.parse::<u64>().ok());
            let (Some(start), Some(end)) = (start, end) else { continue };
            let range = (start, end + 1);
            match item.name.as_str() {
                "PageRange" => out.valid.push(range),
                "ClearRange" => out.cleared.push(range),
                _ => {}
            }
        }
        out.valid.sort_unstable();
        out.cleared.sort_unstable();
        Ok(out)
    }

    /// Both lists clipped to `[lo, hi)` (the VHD footer past the disk's capacity is not
    /// disk data), merged where adjacent, as extents.
    pub fn extents(&self, lo: u64, hi: u64) -> (Vec<Extent>, Vec<Extent>) {
        (clip(&self.valid, lo, hi), clip(&self.cleared, lo, hi))
    }
}

fn clip(ranges: &[(u64, u64)], lo: u64, hi: u64) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::new();
    for &(s, e) in ranges {
        let (s, e) = (s.max(lo), e.min(hi));
        if s >= e {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.offset + last.length == s => last.length += e - s,
            _ => out.push(Extent { offset: s, length: e - s }),
        }
    }
    out
}

/// Get Page Ranges on a URL that carries its own SAS (managed disks), optionally diffed
/// against a previous snapshot named by its SAS URL (`x-ms-previous-snapshot-url`).
pub fn page_ranges_by_sas(what: &str, sas_url: &str, previous_sas_url: Option<&str>, range: Option<(u64, u64)>) -> Result<PageList, AdapterError> {
    let url = if sas_url.contains('?') { format!("{sas_url}&comp=pagelist") } else { format!("{sas_url}?comp=pagelist") };
    let mut req = Request::new("GET", url).header("x-ms-version", SERVICE_VERSION);
    if let Some(prev) = previous_sas_url {
        req = req.header("x-ms-previous-snapshot-url", prev);
    }
    if let Some((s, e)) = range {
        req = req.header("x-ms-range", format!("bytes={s}-{}", e - 1));
    }
    let resp = req.send().map_err(|e| prefix(what, e.into()))?;
    if resp.status >= 400 {
        return Err(error_of(what, &resp));
    }
    PageList::parse(&resp.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_both_url_styles() {
        let p = BlobUrl::parse("http://127.0.0.1:9/acct/vhds/a/b.vhd?x=1", "acct").unwrap();
        assert_eq!((p.base.as_str(), p.container.as_str(), p.blob.as_str()), ("http://127.0.0.1:9/acct", "vhds", "a/b.vhd"));
        let h = BlobUrl::parse("https://acct.blob.core.windows.net/vhds/b.vhd", "acct").unwrap();
        assert_eq!(h.base, "https://acct.blob.core.windows.net");
        assert_eq!(h.url(), "https://acct.blob.core.windows.net/vhds/b.vhd");
    }

    #[test]
    fn parses_and_clips_page_lists() {
        let xml = "\u{feff}<?xml version=\"1.0\"?><PageList><PageRange><Start>0</Start><End>511</End></PageRange><ClearRange><Start>1024</Start><End>2047</End></ClearRange><PageRange><Start>512</Start><End>1023</End></PageRange><PageRange><Start>4096</Start><End>4607</End></PageRange></PageList>";
        let list = PageList::parse(xml.as_bytes()).unwrap();
        assert_eq!(list.valid, vec![(0, 512), (512, 1024), (4096, 4608)]);
        let (changed, cleared) = list.extents(0, 4096);
        let pairs = |v: Vec<Extent>| v.iter().map(|e| (e.offset, e.length)).collect::<Vec<_>>();
        assert_eq!(pairs(changed), vec![(0, 1024)]);
        assert_eq!(pairs(cleared), vec![(1024, 1024)]);
    }

    #[test]
    fn signs_like_the_service() {
        let a = Account { name: "acct".into(), key: b"k".to_vec() };
        let headers = vec![("x-ms-version".to_string(), "2021-08-06".to_string()), ("x-ms-date".to_string(), "Sun, 22 Nov 2026 00:00:00 GMT".to_string())];
        let s = a.string_to_sign("GET", "http://h/acct/c/b?comp=pagelist&prevsnapshot=2026-11-22T00%3A00%3A00.0000000Z", &headers).unwrap();
        assert_eq!(s, "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Sun, 22 Nov 2026 00:00:00 GMT\nx-ms-version:2021-08-06\n/acct/acct/c/b\ncomp:pagelist\nprevsnapshot:2026-11-22T00:00:00.0000000Z");
    }
}

//! Request plumbing shared by the four simulated services: a buffered request, response
//! builders, XML escaping and the timestamp formats Azure uses.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fully buffered request, so handlers can sign, route and validate without streaming.
#[derive(Debug)]
pub(crate) struct Req {
    pub method: Method,
    /// The path exactly as sent (still percent-encoded); signatures are computed over it.
    pub raw_path: String,
    /// The query string exactly as sent, without the `?`.
    pub raw_query: String,
    /// Percent-decoded, non-empty path segments.
    pub segments: Vec<String>,
    /// Percent-decoded query pairs in their original order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: String,
}

impl Req {
    pub fn new(method: Method, raw_path: &str, raw_query: &str, headers: HeaderMap, body: Bytes) -> Self {
        let segments = raw_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        Self {
            method,
            raw_path: raw_path.to_string(),
            raw_query: raw_query.to_string(),
            segments,
            query: parse_query(raw_query),
            headers,
            body,
            request_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// First value of a query parameter; names compare case-insensitively as Azure does.
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A header as text; non-UTF-8 values count as absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Lower-cased segment `i`, for matching fixed path words case-insensitively.
    pub fn seg_lc(&self, i: usize) -> Option<String> {
        self.segments.get(i).map(|s| s.to_ascii_lowercase())
    }
}

/// Percent-decodes one URL component without turning `+` into a space: SAS signatures are
/// base64 and a literal `+` must survive.
pub(crate) fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Splits a raw query string into decoded pairs.
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Decodes an `application/x-www-form-urlencoded` body, where `+` does mean a space.
pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body).replace('+', " ");
    parse_query(&text)
}

/// Percent-encodes a value for use in a query string.
pub(crate) fn encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// Builds a response; header names and values are produced by the lab and always valid.
pub(crate) fn respond(status: StatusCode, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(*k), HeaderValue::try_from(v.as_str())) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

/// Escapes text for XML element content and attribute values.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-22T00:37:00Z`
pub(crate) fn iso8601(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// `2026-11-22T00:37:00.1234567Z`, the precision of blob snapshot timestamps.
pub(crate) fn iso8601_100ns(ticks_100ns: u128) -> String {
    let secs = (ticks_100ns / 10_000_000) as u64;
    let frac = ticks_100ns % 10_000_000;
    let base = iso8601(secs);
    format!("{}.{frac:07}Z", &base[..base.len() - 1])
}

/// Current time in 100 ns ticks since the Unix epoch.
pub(crate) fn now_ticks() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() / 100
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDThh:mmZ`, `YYYY-MM-DDThh:mm:ssZ` and fractional seconds,
/// the forms SAS `st`/`se` accept.
pub(crate) fn parse_iso8601(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = 0u64;
    if let Some(t) = time {
        let t = t.split('.').next()?;
        let mut tp = t.split(':');
        let h: u64 = tp.next()?.parse().ok()?;
        let mi: u64 = tp.next()?.parse().ok()?;
        let sec: u64 = tp.next().map(|x| x.parse().ok()).unwrap_or(Some(0))?;
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        secs = h * 3600 + mi * 60 + sec;
    }
    let days = days_from_civil(y, m, d);
    if days < 0 {
        return None;
    }
    Some(days as u64 * 86_400 + secs)
}

/// RFC 1123 date as used by `Date`, `Last-Modified` and `x-ms-date`.
pub(crate) fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_round_trips() {
        for t in [0u64, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_iso8601(&iso8601(t)), Some(t));
        }
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_iso8601("2023-11-14"), Some(1_699_920_000));
        assert_eq!(iso8601_100ns(17_000_000_000_000_001), "2023-11-14T22:13:20.0000001Z");
    }

    #[test]
    fn query_keeps_plus_and_decodes_percent() {
        let q = parse_query("sig=a+b%2Fc%3D&sp=r");
        assert_eq!(q[0], ("sig".into(), "a+b/c=".into()));
        assert_eq!(parse_form(b"scope=a+b")[0].1, "a b");
    }
}

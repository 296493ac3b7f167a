//! Blob service, path-style like Azurite: `/{account}/{container}/{blob}`. Page blobs only
//! (what disks are), with SharedKey and SAS authorization.

pub mod sas;
pub mod shared_key;
pub(crate) mod store;
mod auth;

use super::Shared;
use super::http::{Req, http_date, iso8601, respond, unix_now};
use super::state::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use auth::{Auth, auth_failed, authorize};
use store::{BlobFail, BlobRef, MAX_PUT_PAGE, PAGE};

/// Service version the lab reports in `x-ms-version`.
const SERVICE_VERSION: &str = "2021-08-06";

/// `<Error><Code/><Message/></Error>` with `x-ms-error-code`, as the Blob service sends it.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str, headers: &[(&str, String)]) -> Response {
    error_with_detail(status, code, message, None, headers)
}

fn error_with_detail(status: StatusCode, code: &str, message: &str, detail: Option<&str>, headers: &[(&str, String)]) -> Response {
    let rid = headers.iter().find(|(k, _)| *k == "x-ms-request-id").map(|(_, v)| v.clone()).unwrap_or_default();
    let detail = detail.map(|d| format!("<AuthenticationErrorDetail>{}</AuthenticationErrorDetail>", super::http::xml_escape(d))).unwrap_or_default();
    let body = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{}\nRequestId:{rid}\nTime:{}</Message>{detail}</Error>",
        super::http::xml_escape(message),
        iso8601(unix_now()),
    );
    let mut h: Vec<(&str, String)> = headers.to_vec();
    h.push(("x-ms-error-code", code.into()));
    h.push(("x-ms-version", SERVICE_VERSION.into()));
    h.push(("content-type", "application/xml".into()));
    respond(status, &h, body)
}

pub(crate) struct Fail {
    status: u16,
    code: &'static str,
    message: String,
    detail: Option<String>,
}

impl From<BlobFail> for Fail {
    fn from(f: BlobFail) -> Self {
        Fail { status: f.status, code: f.code, message: f.message, detail: None }
    }
}

pub(crate) fn fail(status: u16, code: &'static str, message: impl Into<String>) -> Fail {
    Fail { status, code, message: message.into(), detail: None }
}

/// Handles one Blob request.
pub(crate) fn handle(shared: &Shared, req: &Req) -> Response {
    let rid = ("x-ms-request-id", req.request_id.clone());
    match route(shared, req) {
        Ok(r) => r,
        Err(f) => error_with_detail(
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST),
            f.code,
            &f.message,
            f.detail.as_deref(),
            &[rid],
        ),
    }
}

fn common(req: &Req) -> Vec<(&'static str, String)> {
    vec![
        ("x-ms-request-id", req.request_id.clone()),
        ("x-ms-version", SERVICE_VERSION.into()),
        ("date", http_date(std::time::SystemTime::now())),
    ]
}

/// Parses `bytes=start-end` (inclusive end), from `x-ms-range` or `Range`.
fn range_header(req: &Req) -> Result<Option<(u64, u64)>, Fail> {
    let Some(v) = req.header("x-ms-range").or_else(|| req.header("range")) else { return Ok(None) };
    let bad = || fail(416, "InvalidRange", "The range specified is invalid for the current size of the resource.");
    let spec = v.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (s, e) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = s.trim().parse().map_err(|_| bad())?;
    let end = if e.trim().is_empty() { u64::MAX } else { e.trim().parse().map_err(|_| bad())? };
    if end < start {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

fn route(shared: &Shared, req: &Req) -> Result<Response, Fail> {
    let segs = &req.segments;
    let account = segs.first().ok_or_else(|| fail(400, "InvalidUri", "The requested URI does not represent any resource on the server."))?;
    let container = segs.get(1).map(String::as_str);
    // Blob names may contain '/', so everything after the container is the name.
    let blob_name = (segs.len() > 2).then(|| segs[2..].join("/"));
    let mut st = shared.lock();
    let auth = authorize(&st, req, account, container, blob_name.as_deref())?;
    let restype = req.q("restype").unwrap_or("");
    let comp = req.q("comp").unwrap_or("");
    let Some(container) = container else {
        return Err(fail(400, "InvalidUri", "Account-level operations are not supported by this site."));
    };
    let Some(blob) = blob_name else {
        if restype != "container" {
            return Err(fail(400, "InvalidQueryParameterValue", "restype=container is required for container operations."));
        }
        return container_op(req, &mut st, &auth, account, container, comp);
    };
    if matches!(auth, Auth::Sas(ref p) if p.resource == "c") && comp == "list" {
        return Err(fail(400, "InvalidUri", "Listing needs a container URL."));
    }
    let r = BlobRef::new(account, container, &blob);
    let snapshot = req.q("snapshot").filter(|s| !s.is_empty());
    match (req.method.clone(), comp) {
        (Method::PUT, "") => put_blob(req, &mut st, &r),
        (Method::PUT, "page") => put_page(req, &mut st, &r),
        (Method::PUT, "snapshot") => {
            let stamp = st.blobs.snapshot(&r)?;
            let b = st.blobs.get(&r, None)?;
            let mut h = common(req);
            h.push(("x-ms-snapshot", stamp));
            h.push(("etag", b.etag.clone()));
            h.push(("last-modified", http_date(b.last_modified)));
            h.push(("x-ms-request-server-encrypted", "false".into()));
            Ok(respond(StatusCode::CREATED, &h, ""))
        }
        (Method::GET, "pagelist") => page_list(req, &st, &r, snapshot),
        (Method::GET, "") => get_blob(req, &st, &r, snapshot, true),
        (Method::HEAD, "") => get_blob(req, &st, &r, snapshot, false),
        (Method::DELETE, "") => {
            match snapshot {
                Some(s) => st.blobs.delete_snapshot(&r, s)?,
                None => {
                    let has_snapshots = !st.blobs.entry(&r)?.snapshots.is_empty();
                    match req.header("x-ms-delete-snapshots") {
                        Some("include") => st.blobs.delete_blob(&r)?,
                        Some("only") => {
                            let stamps: Vec<String> = st.blobs.entry(&r)?.snapshots.keys().cloned().collect();
                            for s in stamps {
                                st.blobs.delete_snapshot(&r, &s)?;
                            }
                        }
                        _ if has_snapshots => {
                            return Err(fail(409, "SnapshotsPresent", "This operation is not permitted because the blob has snapshots."));
                        }
                        _ => st.blobs.delete_blob(&r)?,
                    }
                }
            }
            Ok(respond(StatusCode::ACCEPTED, &common(req), ""))
        }
        (m, c) => Err(fail(400, "UnsupportedHttpVerb", format!("The operation {m} with comp='{c}' is not supported on page blobs by this site."))),
    }
}

fn container_op(req: &Req, st: &mut State, auth: &Auth, account: &str, container: &str, comp: &str) -> Result<Response, Fail> {
    if matches!(auth, Auth::Sas(p) if p.resource != "c") {
        return Err(auth_failed("A blob SAS cannot be used on a container."));
    }
    match (req.method.clone(), comp) {
        (Method::PUT, "") => {
            st.blobs.create_container(account, container)?;
            let mut h = common(req);
            h.push(("etag", format!("\"0x{:X}\"", rand::random::<u64>())));
            h.push(("last-modified", http_date(std::time::SystemTime::now())));
            Ok(respond(StatusCode::CREATED, &h, ""))
        }
        (Method::DELETE, "") => {
            st.blobs.delete_container(account, container)?;
            Ok(respond(StatusCode::ACCEPTED, &common(req), ""))
        }
        (Method::GET | Method::HEAD, "") => {
            st.blobs.container(account, container)?;
            Ok(respond(StatusCode::OK, &common(req), ""))
        }
        (Method::GET, "list") => {
            let c = st.blobs.container(account, container)?;
            let prefix = req.q("prefix").unwrap_or("");
            let with_snapshots = req.q("include").is_some_and(|i| i.split(',').any(|x| x == "snapshots"));
            let mut items = String::new();
            for (name, e) in c.blobs.iter().filter(|(n, _)| n.starts_with(prefix)) {
                let mut versions: Vec<(Option<&String>, &store::PageBlob)> = Vec::new();
                if with_snapshots {
                    versions.extend(e.snapshots.iter().map(|(s, b)| (Some(s), b)));
                }
                versions.push((None, &e.live));
                for (snap, b) in versions {
                    let snap = snap.map(|s| format!("<Snapshot>{s}</Snapshot>")).unwrap_or_default();
                    items.push_str(&format!(
                        "<Blob><Name>{}</Name>{snap}<Properties><Last-Modified>{}</Last-Modified><Etag>{}</Etag><Content-Length>{}</Content-Length>\
                         <Content-Type>{}</Content-Type><x-ms-blob-sequence-number>{}</x-ms-blob-sequence-number><BlobType>PageBlob</BlobType>\
                         <LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted></Properties></Blob>",
                        super::http::xml_escape(name),
                        http_date(b.last_modified),
                        b.etag,
                        b.size,
                        super::http::xml_escape(&b.content_type),
                        b.sequence_number,
                    ));
                }
            }
            let body = format!(
                "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"/{account}\" ContainerName=\"{container}\"><Prefix>{}</Prefix><Blobs>{items}</Blobs><NextMarker/></EnumerationResults>",
                super::http::xml_escape(prefix)
            );
            let mut h = common(req);
            h.push(("content-type", "application/xml".into()));
            Ok(respond(StatusCode::OK, &h, body))
        }
        (m, c) => Err(fail(400, "UnsupportedHttpVerb", format!("The container operation {m} comp='{c}' is not supported by this site."))),
    }
}

fn put_blob(req: &Req, st: &mut State, r: &BlobRef) -> Result<Response, Fail> {
    match req.header("x-ms-blob-type") {
        Some("PageBlob") => {}
        Some(other) => return Err(fail(400, "InvalidHeaderValue", format!("The blob type '{other}' is not supported by this site; only PageBlob is."))),
        None => return Err(fail(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type.")),
    }
    let size: u64 = req
        .header("x-ms-blob-content-length")
        .ok_or_else(|| fail(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-blob-content-length."))?
        .parse()
        .map_err(|_| fail(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-blob-content-length."))?;
    if !req.body.is_empty() {
        return Err(fail(400, "InvalidHeaderValue", "A page blob is created empty: Content-Length must be 0."));
    }
    let content_type = req.header("x-ms-blob-content-type").unwrap_or("application/octet-stream").to_string();
    let b = st.blobs.create_page_blob(r, size, &content_type)?;
    let mut h = common(req);
    h.push(("etag", b.etag.clone()));
    h.push(("last-modified", http_date(b.last_modified)));
    h.push(("x-ms-request-server-encrypted", "true".into()));
    Ok(respond(StatusCode::CREATED, &h, ""))
}

fn put_page(req: &Req, st: &mut State, r: &BlobRef) -> Result<Response, Fail> {
    let (start, end) = range_header(req)?.ok_or_else(|| fail(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-range."))?;
    if end == u64::MAX || start % PAGE != 0 || (end + 1) % PAGE != 0 {
        return Err(fail(416, "InvalidPageRange", "The page range specified is invalid."));
    }
    let len = end + 1 - start;
    match req.header("x-ms-page-write") {
        Some("update") => {
            if req.body.len() as u64 > MAX_PUT_PAGE {
                return Err(fail(413, "RequestBodyTooLarge", format!("The request body is too large and exceeds the maximum permissible limit.\nMaxLimit:{MAX_PUT_PAGE}")));
            }
            if req.body.len() as u64 != len {
                return Err(fail(400, "InvalidHeaderValue", format!("The value for one of the HTTP headers is not in the correct format: Content-Length {} does not match the range length {len}.", req.body.len())));
            }
            st.blobs.write_pages(r, start, &req.body)?;
        }
        Some("clear") => {
            if !req.body.is_empty() {
                return Err(fail(400, "InvalidHeaderValue", "Content-Length must be 0 for x-ms-page-write: clear."));
            }
            st.blobs.clear_pages(r, start, len)?;
        }
        _ => return Err(fail(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-page-write must be update or clear.")),
    }
    let b = st.blobs.get(r, None)?;
    let mut h = common(req);
    h.push(("etag", b.etag.clone()));
    h.push(("last-modified", http_date(b.last_modified)));
    h.push(("x-ms-blob-sequence-number", b.sequence_number.to_string()));
    h.push(("x-ms-request-server-encrypted", "true".into()));
    Ok(respond(StatusCode::CREATED, &h, ""))
}

fn get_blob(req: &Req, st: &State, r: &BlobRef, snapshot: Option<&str>, with_body: bool) -> Result<Response, Fail> {
    let b = st.blobs.get(r, snapshot)?;
    let mut h = common(req);
    h.push(("etag", b.etag.clone()));
    h.push(("last-modified", http_date(b.last_modified)));
    h.push(("x-ms-blob-type", "PageBlob".into()));
    h.push(("x-ms-blob-sequence-number", b.sequence_number.to_string()));
    h.push(("content-type", b.content_type.clone()));
    h.push(("accept-ranges", "bytes".into()));
    h.push(("x-ms-server-encrypted", "true".into()));
    let range = if with_body { range_header(req)? } else { None };
    let (status, start, len) = match range {
        Some((s, _)) if s >= b.size => {
            return Err(fail(416, "InvalidRange", "The range specified is invalid for the current size of the resource."));
        }
        Some((s, e)) => {
            let e = e.min(b.size - 1);
            h.push(("content-range", format!("bytes {s}-{e}/{}", b.size)));
            (StatusCode::PARTIAL_CONTENT, s, e + 1 - s)
        }
        None => (StatusCode::OK, 0, b.size),
    };
    if !with_body {
        h.push(("content-length", b.size.to_string()));
        return Ok(respond(status, &h, ""));
    }
    if len > 256 << 20 {
        return Err(fail(416, "InvalidRange", "Reads are limited to 256 MiB per request by this site; use ranged reads."));
    }
    let data = st.blobs.read(r, snapshot, start, len)?;
    Ok(respond(status, &h, data))
}

/// Resolves `x-ms-previous-snapshot-url` (managed disk incremental snapshots) to a blob.
fn previous_from_url(url: &str) -> Option<(BlobRef, Option<String>)> {
    let rest = url.split_once("://")?.1;
    let rest = rest.split_once('/')?.1;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let parts: Vec<String> = path.splitn(3, '/').map(super::http::decode).collect();
    let [a, c, b] = parts.as_slice() else { return None };
    let snapshot = super::http::parse_query(query).into_iter().find(|(k, _)| k == "snapshot").map(|(_, v)| v);
    Some((BlobRef::new(a, c, b), snapshot))
}

fn page_list(req: &Req, st: &State, r: &BlobRef, snapshot: Option<&str>) -> Result<Response, Fail> {
    let target = st.blobs.get(r, snapshot)?;
    let (lo, hi) = match range_header(req)? {
        Some((s, e)) => {
            if s % PAGE != 0 || (e != u64::MAX && (e + 1) % PAGE != 0) {
                return Err(fail(416, "InvalidPageRange", "The page range specified is invalid."));
            }
            (s, e.saturating_add(1).min(target.size))
        }
        None => (0, target.size),
    };
    let prev = match (req.q("prevsnapshot"), req.header("x-ms-previous-snapshot-url")) {
        (Some(p), _) => Some(st.blobs.get(r, Some(p)).map_err(|_| fail(404, "PreviousSnapshotNotFound", "The previous snapshot is not found."))?),
        (None, Some(url)) => {
            let (pr, ps) = previous_from_url(url).ok_or_else(|| fail(400, "InvalidHeaderValue", "x-ms-previous-snapshot-url is not a blob URL."))?;
            Some(st.blobs.get(&pr, ps.as_deref()).map_err(|_| fail(404, "PreviousSnapshotNotFound", "The previous snapshot is not found."))?)
        }
        (None, None) => None,
    };
    let (pages, clears) = match prev {
        Some(p) => {
            if p.lineage != target.lineage || p.as_of_seq == 0 {
                return Err(fail(409, "PreviousSnapshotCannotBeNewer", "The previous snapshot is not a snapshot of this blob's history."));
            }
            if target.as_of_seq != 0 && p.as_of_seq > target.as_of_seq {
                return Err(fail(409, "PreviousSnapshotCannotBeNewer", "The prevsnapshot query parameter value cannot be newer than snapshot query parameter value."));
            }
            target.ranges.diff(&p.ranges, p.as_of_seq, lo, hi)
        }
        None => (target.ranges.valid(lo, hi), Vec::new()),
    };
    // Both lists in one document, ordered by offset, as the service returns them.
    let mut all: Vec<(u64, u64, bool)> = pages.iter().map(|&(s, e)| (s, e, true)).chain(clears.iter().map(|&(s, e)| (s, e, false))).collect();
    all.sort();
    let items: String = all
        .iter()
        .map(|&(s, e, valid)| {
            let tag = if valid { "PageRange" } else { "ClearRange" };
            format!("<{tag}><Start>{s}</Start><End>{}</End></{tag}>", e - 1)
        })
        .collect();
    let body = format!("\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><PageList>{items}</PageList>");
    let mut h = common(req);
    h.push(("etag", target.etag.clone()));
    h.push(("last-modified", http_date(target.last_modified)));
    h.push(("x-ms-blob-content-length", target.size.to_string()));
    h.push(("content-type", "application/xml".into()));
    Ok(respond(StatusCode::OK, &h, body))
}

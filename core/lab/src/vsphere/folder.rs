//! Datastore file access over HTTP, as vCenter and ESXi serve it at
//! `/folder/{path}?dcPath=…&dsName=…`: GET with `Range`, PUT of whole files and of
//! `Content-Range` parts. Writes to a VM disk's running extent count for change tracking.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::Site;
use super::inventory::{Datastore, Inventory, User, flat_of};
use super::vmops::{self, WriteData};

/// Name of the session cookie, shared with `/sdk`.
pub const COOKIE: &str = "vmware_soap_session";

/// The session key from a `Cookie` header.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| v.trim_matches('"').to_string())
        })
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into(),
    )
        .into_response()
}

/// The caller: by session cookie or, as vSphere also allows here, HTTP basic auth.
fn caller(inv: &Inventory, headers: &HeaderMap) -> Option<User> {
    if let Some(key) = session_cookie(headers) {
        let sess = inv.sessions.get(&key)?;
        return inv.users.iter().find(|u| u.name == sess.user).cloned();
    }
    let auth = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let (name, pass) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    inv.users
        .iter()
        .find(|u| u.name == name && u.password == pass)
        .cloned()
}

/// Authenticates, authorises and resolves the request to a datastore file.
#[allow(clippy::result_large_err)]
fn resolve(
    site: &Site,
    headers: &HeaderMap,
    path: &str,
    query: &HashMap<String, String>,
    privilege: &str,
) -> Result<(Datastore, String, std::path::PathBuf), Response> {
    let inv = site.lock();
    let Some(user) = caller(&inv, headers) else {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "authentication required: log in through /sdk and send the vmware_soap_session cookie",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"VMware HTTP server\""
                .parse()
                .expect("static header"),
        );
        return Err(r);
    };
    let dc = query.get("dcPath").map(String::as_str).unwrap_or_default();
    if dc != inv.datacenter.name {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("datacenter '{dc}' not found"),
        ));
    }
    let ds_name = query.get("dsName").map(String::as_str).unwrap_or_default();
    let Some(ds) = inv.datastore_by_name(ds_name).cloned() else {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("datastore '{ds_name}' not found"),
        ));
    };
    if !user.has(privilege) {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!("permission denied: '{privilege}' is required on datastore '{ds_name}'"),
        ));
    }
    let rel = path.trim_start_matches('/').to_string();
    let Some(local) = Inventory::local_path(&ds, &rel).filter(|_| !rel.is_empty()) else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!("invalid datastore path '{rel}'"),
        ));
    };
    Ok((ds, rel, local))
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes.
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (start <= end && start < len).then_some((start, end))
}

/// GET: the whole file or one byte range.
pub async fn get(
    site: Arc<Site>,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
) -> Response {
    let (_, rel, local) = match resolve(&site, &headers, &path, &query, "Datastore.Browse") {
        Ok(x) => x,
        Err(r) => return r,
    };
    let meta = match tokio::fs::metadata(&local).await {
        Ok(m) if m.is_file() => m,
        _ => return text(StatusCode::NOT_FOUND, format!("file '{rel}' not found")),
    };
    let len = meta.len();
    let (status, start, count) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => match parse_range(r, len) {
            Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
            None => {
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                    "",
                )
                    .into_response();
            }
        },
        None => (StatusCode::OK, 0, len),
    };
    let mut file = match tokio::fs::File::open(&local).await {
        Ok(f) => f,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot open '{rel}': {e}"),
            );
        }
    };
    if let Err(e) = file.seek(SeekFrom::Start(start)).await {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot seek '{rel}': {e}"),
        );
    }
    // Stream in chunks so a multi-gigabyte extent is never held in memory.
    let stream = futures_util::stream::unfold((file, count), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(1 << 20) as usize];
        match f.read_exact(&mut buf).await {
            Ok(_) => {
                let n = buf.len() as u64;
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                    (f, left - n),
                ))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().expect("static header"),
    );
    h.insert(header::CONTENT_LENGTH, count.into());
    h.insert(
        header::ACCEPT_RANGES,
        "bytes".parse().expect("static header"),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = format!("bytes {start}-{}/{len}", start + count - 1).parse()
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// Parses `bytes a-b/total` (total may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let spec = v.trim().strip_prefix("bytes ")?;
    let (range, total) = spec.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    let total = if total.trim() == "*" {
        None
    } else {
        Some(total.trim().parse().ok()?)
    };
    (a <= b && total.is_none_or(|t| b < t)).then_some((a, b, total))
}

/// PUT: replaces the file, or with `Content-Range` writes one range into it.
pub async fn put(
    site: Arc<Site>,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (ds, rel, local) = match resolve(&site, &headers, &path, &query, "Datastore.FileManagement")
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let partial = match headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => match parse_content_range(v) {
            Some(r) => Some(r),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("unparseable Content-Range '{v}'"),
                );
            }
        },
        None => None,
    };
    if let Some((vm, running)) = disk_role(&site.lock(), &ds, &rel) {
        // ESXi locks the files of registered disks; the lab lets ranged writes reach a
        // disk's running extent (change tracking sees them) but never rewrites a whole
        // disk, a descriptor, or the frozen files a snapshot depends on.
        if !(running && partial.is_some()) {
            return text(
                StatusCode::CONFLICT,
                format!(
                    "'{rel}' belongs to a disk of VM '{vm}': only ranged writes (Content-Range) to its running extent are allowed"
                ),
            );
        }
    }
    let existed = local.is_file();
    if partial.is_some() && !existed {
        return text(
            StatusCode::NOT_FOUND,
            format!("file '{rel}' not found: a ranged PUT writes into an existing file"),
        );
    }
    if let Some(parent) = local.parent()
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot create the directory of '{rel}': {e}"),
        );
    }
    let open = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(partial.is_none())
        .open(&local);
    if let Err(e) = open.and_then(|f| match partial {
        Some((_, _, Some(total))) if f.metadata()?.len() < total => f.set_len(total),
        _ => Ok(()),
    }) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot open '{rel}': {e}"),
        );
    }
    let start = partial.map(|p| p.0).unwrap_or(0);
    let mut offset = start;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("request body failed: {e}")),
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if let Some((_, end, _)) = partial
            && offset + chunk.len() as u64 > end + 1
        {
            return text(
                StatusCode::BAD_REQUEST,
                "body is longer than its Content-Range",
            );
        }
        if let Err(r) = write_chunk(&site, &ds, &rel, &local, offset, &chunk) {
            return r;
        }
        offset += chunk.len() as u64;
    }
    if let Some((a, b, _)) = partial
        && offset != b + 1
    {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "body has {} bytes but Content-Range announces {}",
                offset - a,
                b - a + 1
            ),
        );
    }
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, "").into_response()
}

/// Whether `rel` is a file of some VM disk: the VM's name, and whether it is the disk's
/// running flat extent.
fn disk_role(inv: &Inventory, ds: &Datastore, rel: &str) -> Option<(String, bool)> {
    inv.vms.values().find_map(|vm| {
        vm.disks
            .iter()
            .filter(|d| d.datastore == ds.moref)
            .find_map(|d| {
                d.chain.iter().enumerate().find_map(|(i, entry)| {
                    if entry == rel {
                        Some((vm.name.clone(), false))
                    } else if flat_of(entry) == rel {
                        Some((vm.name.clone(), i + 1 == d.chain.len()))
                    } else {
                        None
                    }
                })
            })
    })
}

#[allow(clippy::result_large_err)]
fn write_chunk(
    site: &Site,
    ds: &Datastore,
    rel: &str,
    local: &std::path::Path,
    offset: u64,
    chunk: &[u8],
) -> Result<(), Response> {
    let mut inv = site.lock();
    let current = inv
        .datastore(&ds.moref)
        .cloned()
        .unwrap_or_else(|| ds.clone());
    if let Err(f) = Inventory::check_space(&current, &current.ds_path(rel), chunk.len() as u64) {
        return Err(text(StatusCode::INSUFFICIENT_STORAGE, f.message));
    }
    if let Err(e) = vmops::write_flat(local, offset, WriteData::Bytes(chunk)) {
        return Err(text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    }
    let target = inv
        .disk_by_flat(&ds.moref, rel)
        .map(|(vm, i)| (vm.moref.clone(), vm.disks[i].key));
    if let Some((vm, key)) = target {
        vmops::record_write(&mut inv, &vm, key, offset, chunk.len() as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_http() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(
            parse_content_range("bytes 0-511/1024"),
            Some((0, 511, Some(1024)))
        );
        assert_eq!(parse_content_range("bytes 0-511/*"), Some((0, 511, None)));
        assert_eq!(parse_content_range("bytes 600-511/1024"), None);
    }
}

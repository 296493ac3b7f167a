//! Who may do what on the Blob service: SharedKey (account key) and service SAS, with the
//! managed-disk account reachable only through live `beginGetAccess` grants.

use super::sas::{self, SasParams};
use super::shared_key;
use super::store::BlobRef;
use super::{Fail, fail};
use crate::azure::http::{Req, iso8601, parse_iso8601, unix_now};
use crate::azure::state::State;
use axum::http::Method;

/// Largest clock skew SharedKey accepts, as the service does.
const MAX_SKEW_SECS: u64 = 15 * 60;

pub(super) fn auth_failed(detail: impl Into<String>) -> Fail {
    Fail {
        status: 403,
        code: "AuthenticationFailed",
        message: "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.".into(),
        detail: Some(detail.into()),
    }
}

/// What a request needs permission to do, in SAS letters.
fn needed_permission(req: &Req) -> char {
    let comp = req.q("comp").unwrap_or("");
    match req.method {
        Method::GET | Method::HEAD if req.q("restype") == Some("container") && comp == "list" => 'l',
        Method::GET | Method::HEAD => 'r',
        Method::DELETE => 'd',
        Method::PUT if comp == "snapshot" => 'c',
        _ => 'w',
    }
}

pub(crate) enum Auth {
    SharedKey,
    Sas(Box<SasParams>),
}

pub(crate) fn authorize(st: &State, req: &Req, account: &str, container: Option<&str>, blob: Option<&str>) -> Result<Auth, Fail> {
    let Some(acct) = st.blobs.accounts.get(account) else {
        return Err(fail(400, "InvalidUri", format!("The storage account '{account}' does not exist.")));
    };
    if let Some((params, sig)) = SasParams::from_query(&req.query) {
        check_sas(st, req, account, &acct.key, container, blob, &params, &sig)?;
        return Ok(Auth::Sas(Box::new(params)));
    }
    let Some(header) = req.header("authorization") else {
        return Err(Fail {
            status: 401,
            code: "NoAuthenticationInformation",
            message: "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.".into(),
            detail: None,
        });
    };
    if account == st.md_account {
        return Err(auth_failed("Managed disk storage only accepts the SAS returned by beginGetAccess."));
    }
    let Some(rest) = header.strip_prefix("SharedKey ") else {
        return Err(auth_failed("Only SharedKey and SAS authorization are supported."));
    };
    let (name, sig) = rest.split_once(':').unwrap_or((rest, ""));
    if name != account {
        return Err(auth_failed(format!("The account name '{name}' in the Authorization header does not match the request URI account '{account}'.")));
    }
    let date = req.header("x-ms-date").or_else(|| req.header("date")).ok_or_else(|| auth_failed("Request date header not specified."))?;
    let when = httpdate::parse_http_date(date).map_err(|_| auth_failed(format!("The date '{date}' is not in RFC 1123 format.")))?;
    let when = when.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if unix_now().abs_diff(when) > MAX_SKEW_SECS {
        return Err(auth_failed(format!("Request date header too old: '{date}'.")));
    }
    let sts = shared_key::string_to_sign(&req.method, account, &req.raw_path, &req.raw_query, &req.headers);
    let expected = shared_key::hmac_base64(&acct.key, &sts);
    if !crate::azure::classic::auth::same(sig, &expected) {
        return Err(auth_failed(format!("The MAC signature found in the HTTP request '{sig}' is not the same as any computed signature. Server used following string to sign: '{sts}'.")));
    }
    Ok(Auth::SharedKey)
}

#[allow(clippy::too_many_arguments)]
fn check_sas(st: &State, req: &Req, account: &str, key: &[u8], container: Option<&str>, blob: Option<&str>, p: &SasParams, sig: &str) -> Result<(), Fail> {
    if p.version.as_str() < "2015-04-05" {
        return Err(auth_failed(format!("The signed version '{}' is not supported.", p.version)));
    }
    if !p.identifier.is_empty() {
        return Err(auth_failed(format!("The signed identifier '{}' does not match any stored access policy.", p.identifier)));
    }
    let canonical = match (p.resource.as_str(), container, blob) {
        ("b" | "bs", Some(c), Some(b)) => sas::canonical_blob(account, c, b),
        ("c", Some(c), _) => format!("/blob/{account}/{c}"),
        _ => return Err(auth_failed(format!("The signed resource '{}' does not match the request.", p.resource))),
    };
    if p.resource == "bs" && req.q("snapshot").unwrap_or("") != p.snapshot {
        return Err(auth_failed("A blob snapshot SAS can only access the snapshot it was signed for."));
    }
    let sts = p.string_to_sign(&canonical);
    let expected = shared_key::hmac_base64(key, &sts);
    if !crate::azure::classic::auth::same(sig, &expected) {
        return Err(auth_failed(format!("Signature did not match. String to sign used was {sts}")));
    }
    let now = unix_now();
    let expiry = parse_iso8601(&p.expiry).ok_or_else(|| auth_failed(format!("The signed expiry '{}' is not a valid ISO 8601 time.", p.expiry)))?;
    let start = if p.start.is_empty() { None } else { Some(parse_iso8601(&p.start).ok_or_else(|| auth_failed("The signed start is not a valid ISO 8601 time."))?) };
    if now >= expiry || start.is_some_and(|s| now < s) {
        return Err(auth_failed(format!(
            "Signed expiry time [{}] has to be after signed start time [{}] and the current time [{}] must be inside that window.",
            p.expiry,
            p.start,
            iso8601(now)
        )));
    }
    if account == st.md_account {
        let r = BlobRef::new(account, container.unwrap_or(""), blob.unwrap_or(""));
        if !crate::azure::arm::md_sas_active(st, &r, sig) {
            return Err(auth_failed("The access grant for this disk has been revoked or has not been granted (endGetAccess)."));
        }
    }
    let needed = needed_permission(req);
    let granted = if needed == 'c' { sas::permits(&p.permissions, 'c') || sas::permits(&p.permissions, 'w') } else { sas::permits(&p.permissions, needed) };
    if !granted {
        return Err(fail(403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission."));
    }
    Ok(())
}


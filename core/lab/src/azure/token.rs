//! Microsoft identity platform token endpoint (`/{tenant}/oauth2/v2.0/token`, client
//! credentials) and the bearer-token check Resource Manager applies to every call.

use super::Shared;
use super::http::{Req, iso8601, parse_form, respond, unix_now};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use std::collections::HashMap;

/// Scopes (v2) and resources (v1) that yield Resource Manager tokens.
const ARM_AUDIENCES: [&str; 4] = [
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
];

#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub expires_at: u64,
}

/// Tokens the lab has issued.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    tokens: HashMap<String, TokenInfo>,
}

impl TokenStore {
    /// Makes every issued token expired, as if its lifetime had passed.
    pub fn expire_all(&mut self) {
        let past = unix_now().saturating_sub(1);
        for t in self.tokens.values_mut() {
            t.expires_at = past;
        }
    }
}

/// Outcome of checking an `Authorization: Bearer` header.
pub(crate) enum BearerCheck {
    Ok,
    Missing,
    Invalid,
    Expired { expired_at: u64 },
}

pub(crate) fn check_bearer(store: &TokenStore, authorization: Option<&str>) -> BearerCheck {
    let Some(value) = authorization else { return BearerCheck::Missing };
    let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) else {
        return BearerCheck::Invalid;
    };
    match store.tokens.get(token.trim()) {
        None => BearerCheck::Invalid,
        Some(t) if unix_now() >= t.expires_at => BearerCheck::Expired { expired_at: t.expires_at },
        Some(_) => BearerCheck::Ok,
    }
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}"),
        "error_codes": [code],
        "timestamp": iso8601(unix_now()).replace('Z', "").replace('T', " ") + "Z",
        "trace_id": uuid::Uuid::new_v4().to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    respond(status, &[("content-type", "application/json; charset=utf-8".into())], body.to_string())
}

/// Handles the login service: v2 (`scope`) and v1 (`resource`) client-credentials grants.
pub(crate) fn handle(shared: &Shared, req: &Req) -> Response {
    let seg = |i: usize| req.seg_lc(i).unwrap_or_default();
    let v2 = req.segments.len() == 4 && seg(1) == "oauth2" && seg(2) == "v2.0" && seg(3) == "token";
    let v1 = req.segments.len() == 3 && seg(1) == "oauth2" && seg(2) == "token";
    if !(v2 || v1) {
        return aad_error(StatusCode::NOT_FOUND, "invalid_request", 900_561, "The endpoint only accepts POST requests to /{tenant}/oauth2/v2.0/token.");
    }
    if req.method != Method::POST {
        return aad_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", 900_561, "The endpoint only accepts POST requests.");
    }
    let cfg = &shared.config;
    let tenant = &req.segments[0];
    if !tenant.eq_ignore_ascii_case(&cfg.tenant_id) {
        return aad_error(StatusCode::BAD_REQUEST, "invalid_request", 90_002, &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."));
    }
    let form = parse_form(&req.body);
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("client_credentials") {
        return aad_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", 70_003, "The app requested an unsupported grant type; only client_credentials is supported by this endpoint.");
    }
    let client_id = field("client_id").unwrap_or("");
    if client_id != cfg.client_id {
        return aad_error(StatusCode::BAD_REQUEST, "unauthorized_client", 700_016, &format!("Application with identifier '{client_id}' was not found in the directory '{}'.", cfg.tenant_id));
    }
    if field("client_secret") != Some(cfg.client_secret.as_str()) {
        return aad_error(StatusCode::UNAUTHORIZED, "invalid_client", 7_000_215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.");
    }
    let audience = if v2 {
        let scope = field("scope").unwrap_or("");
        match scope.strip_suffix("/.default") {
            Some(a) if ARM_AUDIENCES.contains(&a) => a.to_string(),
            _ => {
                return aad_error(StatusCode::BAD_REQUEST, "invalid_scope", 1_002_012, &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."));
            }
        }
    } else {
        let resource = field("resource").unwrap_or("");
        if !ARM_AUDIENCES.contains(&resource) {
            return aad_error(StatusCode::BAD_REQUEST, "invalid_resource", 500_011, &format!("The resource principal named {resource} was not found in the tenant."));
        }
        resource.to_string()
    };
    let lifetime = cfg.token_lifetime.as_secs();
    let now = unix_now();
    let claims = json!({
        "aud": audience, "iss": format!("https://sts.windows.net/{}/", cfg.tenant_id),
        "iat": now, "nbf": now, "exp": now + lifetime, "appid": client_id, "tid": cfg.tenant_id,
        "oid": uuid::Uuid::new_v4().to_string(), "uti": uuid::Uuid::new_v4().simple().to_string(),
    });
    // Token shaped like a JWT, so clients that peek at `exp` find it; the signature part is
    // random because only the lab validates it (by lookup).
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256","kid":"homeward-lab"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()),
    );
    let mut st = shared.lock();
    st.tokens.tokens.insert(token.clone(), TokenInfo { expires_at: now + lifetime });
    drop(st);
    tracing::debug!(client_id, lifetime, "issued token");
    let body = if v2 {
        json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token})
    } else {
        json!({"token_type": "Bearer", "expires_in": lifetime.to_string(), "ext_expires_in": lifetime.to_string(),
               "expires_on": (now + lifetime).to_string(), "not_before": now.to_string(), "resource": audience, "access_token": token})
    };
    respond(StatusCode::OK, &[("content-type", "application/json; charset=utf-8".into()), ("cache-control", "no-store, no-cache".into())], body.to_string())
}

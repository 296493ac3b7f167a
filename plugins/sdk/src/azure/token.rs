//! Client-credentials bearer tokens from the Microsoft identity platform, cached in the
//! adapter's key-value store with their expiry and refreshed when Resource Manager says
//! `ExpiredAuthenticationToken`.

use serde_json::{Value, json};

use super::{clock, encode, errors};
use crate::http::Request;
use crate::types::AdapterError;
use crate::{error, host};

const CACHE_KEY: &str = "azure/token";
/// Tokens are renewed this long before Azure says they expire, so a call never starts
/// with a token that dies in flight.
const EARLY_SECS: u64 = 120;

/// Where and as whom to get tokens.
#[derive(Debug, Clone)]
pub struct TokenSource {
    /// The authority, such as `https://login.microsoftonline.com`.
    pub login_endpoint: String,
    pub tenant_id: String,
    pub client_id: String,
    /// The secret's name in `[plugins.NAME.secrets]`.
    pub secret_name: String,
    /// Such as `https://management.azure.com/.default`.
    pub scope: String,
}

impl TokenSource {
    /// Reads `login_endpoint`, `tenant_id`, `client_id` and optional `scope` from config;
    /// the client secret is the secret `client_secret`.
    pub fn from_config() -> Result<Self, AdapterError> {
        Ok(Self {
            login_endpoint: host::require("login_endpoint")?.trim_end_matches('/').to_string(),
            tenant_id: host::require("tenant_id")?,
            client_id: host::require("client_id")?,
            secret_name: "client_secret".into(),
            scope: host::config_or("scope", "https://management.azure.com/.default"),
        })
    }

    /// A valid bearer token: the cached one while it lives, else a new one.
    pub fn bearer(&self) -> Result<String, AdapterError> {
        if let Some(cached) = host::kv_get(CACHE_KEY).and_then(|v| serde_json::from_slice::<Value>(&v).ok()) {
            let fresh = cached["expires_at"].as_u64().is_some_and(|t| t > clock::unix_now());
            if let (true, Some(token)) = (fresh, cached["token"].as_str()) {
                return Ok(token.to_string());
            }
        }
        self.refresh()
    }

    /// Drops the cached token and gets a new one.
    pub fn refresh(&self) -> Result<String, AdapterError> {
        let secret = host::secret(&self.secret_name)?;
        let url = format!("{}/{}/oauth2/v2.0/token", self.login_endpoint, encode(&self.tenant_id));
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            encode(&self.client_id),
            encode(&secret),
            encode(&self.scope)
        );
        let resp = Request::new("POST", url).header("content-type", "application/x-www-form-urlencoded").body(form).send()?;
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if resp.status != 200 {
            let code = body["error"].as_str().unwrap_or_default();
            let what = format!("getting a token for client `{}` in tenant `{}` (check tenant_id, client_id and the client_secret secret)", self.client_id, self.tenant_id);
            return Err(errors::from_azure(&what, resp.status, code, body["error_description"].as_str().unwrap_or(&resp.text()), resp.retry_after_ms()));
        }
        let token = body["access_token"].as_str().ok_or_else(|| error::internal(format!("token endpoint answered without access_token: {}", resp.text())))?;
        let lifetime = body["expires_in"].as_u64().or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok())).unwrap_or(3600);
        let expires_at = clock::unix_now() + lifetime.saturating_sub(EARLY_SECS).max(1);
        host::kv_set(CACHE_KEY, json!({"token": token, "expires_at": expires_at}).to_string().as_bytes())?;
        Ok(token.to_string())
    }
}

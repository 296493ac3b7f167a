//! Resource Manager: JSON calls with `api-version` and a bearer token, ARM error bodies
//! mapped to the contract's variant, and long-running operations.
//!
//! A long-running call answers 201/202 with `Azure-AsyncOperation` and/or `Location` and a
//! `Retry-After`. [`Pending`] keeps those; [`Arm::poll`] reads them once (for the host's
//! `poll-operation`), and [`Arm::wait`] polls in-call for the short helper operations
//! (`beginGetAccess`, `endGetAccess`) whose result the same call needs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::token::TokenSource;
use super::{clock, errors};
use crate::http::{Request, Response};
use crate::types::AdapterError;
use crate::error;

/// How long one in-call wait may take before it gives up with `unavailable`.
const WAIT_BUDGET_MS: u64 = 60_000;
/// The default poll interval when Azure sends no `Retry-After`.
const DEFAULT_POLL_MS: u64 = 1_000;

/// A Resource Manager endpoint with credentials.
#[derive(Debug, Clone)]
pub struct Arm {
    /// Such as `https://management.azure.com`.
    pub base: String,
    pub api_version: String,
    pub token: TokenSource,
}

/// A started long-running operation: where to ask how it goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub async_url: Option<String>,
    pub location_url: Option<String>,
    pub poll_after_ms: u64,
}

impl Pending {
    /// The operation headers of a response; `None` when the call finished synchronously.
    pub fn from_response(resp: &Response) -> Option<Pending> {
        let async_url = resp.header("azure-asyncoperation").map(str::to_string);
        let location_url = resp.header("location").map(str::to_string);
        (async_url.is_some() || location_url.is_some()).then(|| Pending { async_url, location_url, poll_after_ms: resp.retry_after_ms().unwrap_or(DEFAULT_POLL_MS) })
    }
}

/// Where a long-running operation stands.
#[derive(Debug, Clone)]
pub enum Status {
    Running { poll_after_ms: u64 },
    /// Finished; the operation's output when it has one (such as `{"accessSAS": …}`).
    Succeeded(Option<Value>),
    Failed(AdapterError),
}

/// The ARM error of a response, mapped to the contract's variant.
pub fn error_of(what: &str, resp: &Response) -> AdapterError {
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let message = body["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| resp.text());
    errors::from_azure(what, resp.status, code, &message, resp.retry_after_ms())
}

impl Arm {
    /// Reads `arm_endpoint` and optional `api_version` from config, with the token source
    /// of [`TokenSource::from_config`].
    pub fn from_config() -> Result<Self, AdapterError> {
        Ok(Self {
            base: crate::host::require("arm_endpoint")?.trim_end_matches('/').to_string(),
            api_version: crate::host::config_or("api_version", "2024-07-01"),
            token: TokenSource::from_config()?,
        })
    }

    /// The absolute URL of `path` (or `path` itself when already absolute) with `api-version`.
    pub fn url(&self, path: &str) -> String {
        let abs = if path.starts_with("http://") || path.starts_with("https://") { path.to_string() } else { format!("{}{path}", self.base) };
        if abs.contains("api-version=") {
            abs
        } else if abs.contains('?') {
            format!("{abs}&api-version={}", self.api_version)
        } else {
            format!("{abs}?api-version={}", self.api_version)
        }
    }

    /// Sends a call with a bearer token; an expired token is refreshed and the call sent
    /// once more. Answers of 400 and above become the mapped error, naming `what`.
    pub fn send(&self, what: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Response, AdapterError> {
        let mut token = self.token.bearer()?;
        for attempt in 0..2 {
            let mut req = Request::new(method, self.url(path)).header("authorization", format!("Bearer {token}")).header("accept", "application/json");
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b.to_string());
            }
            let resp = req.send().map_err(|e| with_context(what, e.into()))?;
            if resp.status == 401 && attempt == 0 && is_token_problem(&resp) {
                token = self.token.refresh()?;
                continue;
            }
            if resp.status >= 400 {
                return Err(error_of(what, &resp));
            }
            return Ok(resp);
        }
        Err(error::denied(format!("{what}: Resource Manager refused a freshly issued token; check the service principal's role assignments")))
    }

    /// GETs a resource as JSON.
    pub fn get(&self, what: &str, path: &str) -> Result<Value, AdapterError> {
        let resp = self.send(what, "GET", path, None)?;
        serde_json::from_slice(&resp.body).map_err(|e| error::internal(format!("{what}: Resource Manager answered with invalid JSON ({e}): {}", resp.text())))
    }

    /// GETs a resource as JSON; `None` when it does not exist.
    pub fn get_opt(&self, what: &str, path: &str) -> Result<Option<Value>, AdapterError> {
        match self.get(what, path) {
            Ok(v) => Ok(Some(v)),
            Err(AdapterError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GETs a collection (`{"value": […], "nextLink": …}`), following `nextLink`.
    pub fn list(&self, what: &str, path: &str) -> Result<Vec<Value>, AdapterError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(p) = next.take() {
            let page = self.get(what, &p)?;
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            next = page["nextLink"].as_str().map(str::to_string);
        }
        Ok(out)
    }

    /// Sends a call that may start a long-running operation; `None` when it completed.
    pub fn start(&self, what: &str, method: &str, path: &str, body: Option<&Value>) -> Result<(Response, Option<Pending>), AdapterError> {
        let resp = self.send(what, method, path, body)?;
        let pending = Pending::from_response(&resp);
        Ok((resp, pending))
    }

    /// Reads an operation's status once.
    pub fn poll(&self, what: &str, p: &Pending) -> Result<Status, AdapterError> {
        if let Some(url) = &p.async_url {
            let resp = self.send(what, "GET", url, None)?;
            let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            let wait = resp.retry_after_ms().unwrap_or(p.poll_after_ms.max(DEFAULT_POLL_MS));
            return Ok(match body["status"].as_str().unwrap_or("InProgress") {
                "Succeeded" => {
                    let output = body["properties"]["output"].clone();
                    if output.is_null() && p.location_url.is_some() {
                        self.poll_location(what, p)?
                    } else {
                        Status::Succeeded((!output.is_null()).then_some(output))
                    }
                }
                "Failed" | "Canceled" => {
                    let code = body["error"]["code"].as_str().unwrap_or("OperationFailed");
                    let message = body["error"]["message"].as_str().unwrap_or("the operation failed without a message");
                    Status::Failed(errors::from_azure(what, 200, code, message, None))
                }
                _ => Status::Running { poll_after_ms: wait },
            });
        }
        self.poll_location(what, p)
    }

    fn poll_location(&self, what: &str, p: &Pending) -> Result<Status, AdapterError> {
        let Some(url) = &p.location_url else { return Ok(Status::Succeeded(None)) };
        match self.send(what, "GET", url, None) {
            Ok(resp) if resp.status == 202 => Ok(Status::Running { poll_after_ms: resp.retry_after_ms().unwrap_or(DEFAULT_POLL_MS) }),
            Ok(resp) => Ok(Status::Succeeded(serde_json::from_slice(&resp.body).ok())),
            Err(AdapterError::Unavailable(u)) => Err(AdapterError::Unavailable(u)),
            Err(e) => Ok(Status::Failed(e)),
        }
    }

    /// Polls an operation inside the current call until it ends, honouring `Retry-After`
    /// (the first poll goes out at once: helper operations usually finish immediately).
    pub fn wait(&self, what: &str, p: &Pending) -> Result<Option<Value>, AdapterError> {
        let mut waited = 0;
        loop {
            match self.poll(what, p)? {
                Status::Succeeded(v) => return Ok(v),
                Status::Failed(e) => return Err(e),
                Status::Running { poll_after_ms } => {
                    if waited >= WAIT_BUDGET_MS {
                        return Err(error::unavailable(format!("{what}: still running after {}s; retry later", waited / 1000), Some(poll_after_ms)));
                    }
                    let nap = poll_after_ms.clamp(50, 5_000);
                    clock::sleep_ms(nap);
                    waited += nap;
                }
            }
        }
    }
}

fn is_token_problem(resp: &Response) -> bool {
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    matches!(body["error"]["code"].as_str(), Some("ExpiredAuthenticationToken" | "InvalidAuthenticationToken"))
}

fn with_context(what: &str, e: AdapterError) -> AdapterError {
    match e {
        AdapterError::Unavailable(u) => error::unavailable(format!("{what}: {}", u.message), u.retry_after_ms),
        AdapterError::PermissionDenied(m) => error::denied(format!("{what}: {m}")),
        AdapterError::InvalidArgument(m) => error::invalid(format!("{what}: {m}")),
        other => other,
    }
}

/// Splits an ARM resource id into (subscription, group, `Namespace/type`, name).
pub fn parse_id(id: &str) -> Option<(String, String, String, String)> {
    let p: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    if p.len() < 8 || !p[0].eq_ignore_ascii_case("subscriptions") || !p[2].eq_ignore_ascii_case("resourceGroups") || !p[4].eq_ignore_ascii_case("providers") {
        return None;
    }
    Some((p[1].into(), p[3].into(), format!("{}/{}", p[5], p[6]), p[7].into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resource_ids() {
        let (s, g, t, n) = parse_id("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1").unwrap();
        assert_eq!((s.as_str(), g.as_str(), t.as_str(), n.as_str()), ("s1", "rg", "Microsoft.Compute/disks", "d1"));
        assert!(parse_id("legacy-svc/app01").is_none());
    }
}

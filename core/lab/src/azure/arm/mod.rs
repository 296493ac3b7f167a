//! Resource Manager: bearer-token and `api-version` checks, routing, error bodies and
//! long-running operation responses. Resource kinds live in the submodules.

mod compute;
mod disks;
mod groups;
mod network;

pub(crate) use disks::{disk_mut, md_sas_active, new_empty_disk};
pub(crate) use groups::apply_delete_group;

use super::Shared;
use super::faults::take_operation_failure;
use super::http::{Req, respond};
use super::lro::{self, Effect, Kind, Operation, Scope, Target};
use super::state::State;
use super::token::{BearerCheck, check_bearer};
use super::{Service, http::iso8601};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

/// An ARM error: status, code and message, plus headers such as `WWW-Authenticate`.
#[derive(Debug)]
pub(crate) struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

pub(crate) type ArmResult = Result<Response, ArmError>;

/// Shorthand for an [`ArmError`] without extra headers.
pub(crate) fn fail(status: u16, code: &str, message: impl Into<String>) -> ArmError {
    ArmError {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        code: code.into(),
        message: message.into(),
        headers: Vec::new(),
    }
}

/// `{"error":{"code","message"}}` with the given status.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str, headers: &[(&str, String)]) -> Response {
    let mut h: Vec<(&str, String)> = headers.to_vec();
    h.push(("content-type", "application/json; charset=utf-8".into()));
    h.push(("x-ms-failure-cause", if status.is_server_error() { "service" } else { "gateway" }.into()));
    respond(status, &h, json!({"error": {"code": code, "message": message}}).to_string())
}

/// Per-request context handed to the resource handlers.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub req: &'a Req,
    pub api_version: String,
}

impl Ctx<'_> {
    fn common_headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-ms-request-id", self.req.request_id.clone()),
            ("x-ms-correlation-request-id", self.req.header("x-ms-correlation-request-id").map(str::to_string).unwrap_or_else(|| self.req.request_id.clone())),
            ("content-type", "application/json; charset=utf-8".into()),
        ]
    }

    /// A JSON answer.
    pub fn json(&self, status: u16, body: &Value) -> Response {
        respond(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), &self.common_headers(), body.to_string())
    }

    /// An answer without body (e.g. 204 for deleting something absent).
    pub fn empty(&self, status: u16) -> Response {
        respond(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), &self.common_headers(), "")
    }

    /// The request body as JSON, or `InvalidRequestContent`.
    pub fn body_json(&self) -> Result<Value, ArmError> {
        if self.req.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.req.body).map_err(|e| {
            fail(400, "InvalidRequestContent", format!("The request content was invalid and could not be deserialized: '{e}'."))
        })
    }

    /// Starts an operation and answers with `status`, `Azure-AsyncOperation`, `Location`
    /// (when `with_location`) and `Retry-After`. `body` renders the resource after the
    /// operation was registered, so an instantly-completing policy shows the final state.
    #[allow(clippy::too_many_arguments)]
    pub fn start_operation(
        &self,
        st: &mut State,
        sub: &str,
        provider: &str,
        location: &str,
        effect: Effect,
        result: Option<Value>,
        status: u16,
        with_location: bool,
        body: impl FnOnce(&State) -> Option<Value>,
    ) -> Response {
        let failure = take_operation_failure(&mut st.faults, Service::ResourceManager, self.req);
        let location = if location.is_empty() { "westeurope".to_string() } else { location.replace(' ', "").to_ascii_lowercase() };
        let op = Operation::new(Scope::Arm { sub: sub.into(), provider: provider.into(), location: location.clone() }, effect, failure, result);
        let id = lro::start(st, &self.shared.config.lro, op);
        let base = format!("{}/subscriptions/{sub}/providers/{provider}/locations/{location}", self.shared.endpoints.resource_manager);
        let mut h = self.common_headers();
        h.push(("azure-asyncoperation", format!("{base}/operations/{id}?api-version={}", self.api_version)));
        if with_location {
            h.push(("location", format!("{base}/operationResults/{id}?api-version={}", self.api_version)));
        }
        h.push(("retry-after", self.shared.config.lro.retry_after_secs.to_string()));
        let body = body(st).map(|b| b.to_string()).unwrap_or_default();
        respond(StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED), &h, body)
    }
}

/// Handles one Resource Manager request.
pub(crate) fn handle(shared: &Shared, req: &Req) -> Response {
    match route(shared, req) {
        Ok(r) => r,
        Err(e) => {
            let mut h: Vec<(&str, String)> = vec![("x-ms-request-id", req.request_id.clone())];
            h.extend(e.headers.iter().map(|(k, v)| (*k, v.clone())));
            error_response(e.status, &e.code, &e.message, &h)
        }
    }
}

fn authenticate(shared: &Shared, req: &Req) -> Result<(), ArmError> {
    let st = shared.lock();
    let authority = format!("{}/{}", shared.endpoints.login, shared.config.tenant_id);
    let challenge = |error: &str, description: &str| {
        format!("Bearer authorization_uri=\"{authority}\", error=\"{error}\", error_description=\"{description}\"")
    };
    let (code, message, header) = match check_bearer(&st.tokens, req.header("authorization")) {
        BearerCheck::Ok => return Ok(()),
        BearerCheck::Missing => (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".to_string(),
            challenge("invalid_token", "The authentication failed because of missing 'Authorization' header."),
        ),
        BearerCheck::Invalid => (
            "InvalidAuthenticationToken",
            "The access token is invalid.".to_string(),
            challenge("invalid_token", "The access token is invalid."),
        ),
        BearerCheck::Expired { expired_at } => (
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                iso8601(expired_at),
                iso8601(super::http::unix_now())
            ),
            challenge("invalid_token", "The access token has expired."),
        ),
    };
    Err(ArmError { status: StatusCode::UNAUTHORIZED, code: code.into(), message, headers: vec![("www-authenticate", header)] })
}

fn route(shared: &Shared, req: &Req) -> ArmResult {
    let lc: Vec<String> = req.segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let s = |i: usize| lc.get(i).map(String::as_str).unwrap_or("");
    if s(0) != "subscriptions" {
        return Err(fail(400, "InvalidRequestUri", format!("The request uri '{}' is invalid.", req.raw_path)));
    }
    authenticate(shared, req)?;
    let api_version = req.q("api-version").unwrap_or("").to_string();
    if api_version.is_empty() {
        return Err(fail(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests."));
    }
    if !api_version_shaped(&api_version) {
        return Err(fail(400, "InvalidApiVersionParameter", format!("The api-version '{api_version}' is invalid. The supported versions are dates such as '2024-07-01' or '2024-07-01-preview'.")));
    }
    let ctx = Ctx { shared, req, api_version };
    let mut st = shared.lock();
    lro::settle(&mut st, &shared.config.lro);
    let n = lc.len();
    if n == 1 {
        return groups::list_subscriptions(&ctx, &st);
    }
    let sub_id = req.segments[1].clone();
    let Some(sub) = st.sub(&sub_id) else {
        return Err(fail(404, "SubscriptionNotFound", format!("The subscription '{sub_id}' could not be found.")));
    };
    let sub_id = sub.id.clone();
    match (n, s(2)) {
        (2, _) => groups::get_subscription(&ctx, &st, &sub_id),
        (3, "resourcegroups") => groups::list(&ctx, &st, &sub_id),
        (4, "resourcegroups") => groups::group(&ctx, &mut st, &sub_id, &req.segments[3]),
        (8, "providers") if s(4) == "locations" && (s(6) == "operations" || s(6) == "operationresults") => {
            let id = req.segments[7].clone();
            let belongs = st.ops.get(&id).is_some_and(|op| match &op.scope {
                Scope::Arm { sub, provider, location } => {
                    sub.eq_ignore_ascii_case(&sub_id) && provider.eq_ignore_ascii_case(s(3)) && location.eq_ignore_ascii_case(s(5))
                }
                Scope::Classic { .. } => false,
            });
            if !belongs {
                return Err(fail(404, "ResourceNotFound", format!("The operation '{id}' was not found.")));
            }
            poll_operation(&ctx, &mut st, &id, s(6) == "operationresults")
        }
        (5, "providers") => list_resources(&ctx, &st, &sub_id, None, &format!("{}/{}", s(3), s(4))),
        (n, "resourcegroups") if n >= 7 && s(4) == "providers" => {
            let rg_name = req.segments[3].clone();
            let Some(rg) = st.rg(&sub_id, &rg_name) else {
                return Err(fail(404, "ResourceGroupNotFound", format!("Resource group '{rg_name}' could not be found.")));
            };
            let rg_name = rg.name.clone();
            let ty = format!("{}/{}", s(5), s(6));
            if n == 7 {
                return list_resources(&ctx, &st, &sub_id, Some(&rg_name), &ty);
            }
            let t = Target { sub: sub_id.clone(), rg: rg_name, name: req.segments[7].clone() };
            let rest: Vec<&str> = lc[8..].iter().map(String::as_str).collect();
            match ty.as_str() {
                "microsoft.compute/virtualmachines" => compute::route(&ctx, &mut st, &t, &rest),
                "microsoft.compute/disks" => disks::route(&ctx, &mut st, Kind::Disk, &t, &rest),
                "microsoft.compute/snapshots" => disks::route(&ctx, &mut st, Kind::Snapshot, &t, &rest),
                "microsoft.network/virtualnetworks" => network::route_vnet(&ctx, &mut st, &t, &req.segments[8..]),
                "microsoft.network/networkinterfaces" if rest.is_empty() => network::route_nic(&ctx, &mut st, &t),
                _ => Err(unknown_type(&req.segments[5], &req.segments[6], &ctx.api_version)),
            }
        }
        _ => Err(fail(400, "InvalidRequestUri", format!("The request uri '{}' is invalid.", req.raw_path))),
    }
}

/// `YYYY-MM-DD` optionally followed by a suffix such as `-preview`.
fn api_version_shaped(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b[..10].iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (b.len() == 10 || b[10] == b'-')
}

fn unknown_type(ns: &str, ty: &str, api: &str) -> ArmError {
    fail(
        400,
        "InvalidResourceType",
        format!("The resource type '{ty}' could not be found in the namespace '{ns}' for api version '{api}'."),
    )
}

/// Lists one resource type in a group or the whole subscription.
fn list_resources(ctx: &Ctx, st: &State, sub: &str, rg: Option<&str>, ty: &str) -> ArmResult {
    if ctx.req.method != Method::GET {
        return Err(fail(405, "MethodNotAllowed", "The requested method is not allowed for this resource collection."));
    }
    let Some(s) = st.sub(sub) else { return Err(fail(404, "SubscriptionNotFound", "")) };
    let groups: Vec<_> = s.rgs.values().filter(|g| rg.is_none_or(|r| g.name.eq_ignore_ascii_case(r))).collect();
    let mut value = Vec::new();
    for g in groups {
        match ty {
            "microsoft.compute/virtualmachines" => value.extend(g.vms.values().map(|v| compute::vm_json(sub, g, v, false))),
            "microsoft.compute/disks" => value.extend(g.disks.values().map(|d| disks::disk_json(sub, &g.name, d, Kind::Disk))),
            "microsoft.compute/snapshots" => value.extend(g.snapshots.values().map(|d| disks::disk_json(sub, &g.name, d, Kind::Snapshot))),
            "microsoft.network/virtualnetworks" => value.extend(g.vnets.values().map(|n| network::vnet_json(sub, &g.name, n))),
            "microsoft.network/networkinterfaces" => value.extend(g.nics.values().map(|n| network::nic_json(st, sub, &g.name, n))),
            _ => {
                let (ns, t) = ty.split_once('/').unwrap_or((ty, ""));
                return Err(unknown_type(ns, t, &ctx.api_version));
            }
        }
    }
    Ok(ctx.json(200, &json!({ "value": value })))
}

/// Answers either operation URL: `operations/{id}` gives the status resource;
/// `operationResults/{id}` answers 202 until done, then the result (or the error).
fn poll_operation(ctx: &Ctx, st: &mut State, id: &str, results: bool) -> ArmResult {
    if ctx.req.method != Method::GET {
        return Err(fail(405, "MethodNotAllowed", "Operations can only be read."));
    }
    if !lro::poll(st, &ctx.shared.config.lro, id) {
        return Err(fail(404, "ResourceNotFound", format!("The operation '{id}' was not found.")));
    }
    let op = st.ops.get(id).expect("polled above").clone();
    let retry = ("retry-after", ctx.shared.config.lro.retry_after_secs.to_string());
    if results {
        return Ok(match (op.status(), &op.failure) {
            ("InProgress", _) => {
                let mut h = ctx.common_headers();
                h.push(("location", format!("{}{}?{}", ctx.shared.endpoints.resource_manager, ctx.req.raw_path, ctx.req.raw_query)));
                h.push(retry);
                respond(StatusCode::ACCEPTED, &h, "")
            }
            (_, Some((code, message))) => error_response(StatusCode::INTERNAL_SERVER_ERROR, code, message, &[("x-ms-request-id", ctx.req.request_id.clone())]),
            _ => match &op.result {
                Some(v) => ctx.json(200, v),
                None => ctx.empty(204),
            },
        });
    }
    let mut body = json!({"name": op.id, "status": op.status(), "startTime": op.start_iso});
    if let Some(end) = &op.end_iso {
        body["endTime"] = json!(end);
    }
    match (&op.failure, &op.result) {
        (Some((code, message)), _) if op.finished => body["error"] = json!({"code": code, "message": message}),
        (None, Some(r)) if op.finished => body["properties"] = json!({"output": r}),
        _ => {}
    }
    let mut h = ctx.common_headers();
    if !op.finished {
        h.push(retry);
    }
    Ok(respond(StatusCode::OK, &h, body.to_string()))
}

/// Completes a delete operation of `kind`.
pub(crate) fn apply_delete(st: &mut State, kind: Kind, t: &Target, ok: bool) {
    match kind {
        Kind::Vm => compute::apply_delete(st, t, ok),
        Kind::Disk | Kind::Snapshot => disks::apply_delete(st, kind, t, ok),
        Kind::VirtualNetwork | Kind::NetworkInterface => network::apply_delete(st, kind, t, ok),
    }
}

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ty}/{name}`
pub(crate) fn resource_id(sub: &str, rg: &str, ty: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{ty}/{name}")
}

/// Splits a resource id into (subscription, group, `namespace/type` lower-cased, name).
pub(crate) fn parse_id(id: &str) -> Option<(String, String, String, String)> {
    let p: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    if p.len() != 8 || !p[0].eq_ignore_ascii_case("subscriptions") || !p[2].eq_ignore_ascii_case("resourcegroups") || !p[4].eq_ignore_ascii_case("providers") {
        return None;
    }
    Some((p[1].into(), p[3].into(), format!("{}/{}", p[5], p[6]).to_ascii_lowercase(), p[7].into()))
}

/// Reads `location` from a PUT body or refuses with `LocationRequired`.
pub(crate) fn require_location(body: &Value) -> Result<String, ArmError> {
    body.get("location")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| fail(400, "LocationRequired", "The location property is required for this definition."))
}

/// `tags` from a body, defaulting to an empty object.
pub(crate) fn tags_of(body: &Value) -> Value {
    body.get("tags").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}))
}

/// The standard "resource not found" error.
pub(crate) fn not_found(ty: &str, name: &str, rg: &str) -> ArmError {
    fail(
        404,
        "ResourceNotFound",
        format!("The Resource '{ty}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
    )
}

//! Operations the host polls through `compute.poll-operation`. Their state (the Azure
//! status URLs or request ids still to watch, and what to do next) lives in the adapter's
//! key-value store under `op/{id}`, so polling survives a restart of the adapter.

use serde_json::{Value, json};

use crate::compute::{Operation, OperationState};
use crate::types::AdapterError;
use crate::{error, host};

const PREFIX: &str = "op/";
const COUNTER: &str = "ops/next";

/// A fresh operation id, unique for this adapter's store.
pub fn new_id() -> Result<String, AdapterError> {
    let next = host::kv_get(COUNTER).and_then(|v| String::from_utf8(v).ok()).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + 1;
    host::kv_set(COUNTER, next.to_string().as_bytes())?;
    Ok(format!("op-{}-{next}", super::clock::unix_now()))
}

/// Saves the state of operation `id`.
pub fn save(id: &str, state: &Value) -> Result<(), AdapterError> {
    host::kv_set(&format!("{PREFIX}{id}"), state.to_string().as_bytes())
}

/// Loads the state of operation `id`; `not-found` when the id is unknown.
pub fn load(id: &str) -> Result<Value, AdapterError> {
    let raw = host::kv_get(&format!("{PREFIX}{id}")).ok_or_else(|| error::not_found(format!("operation `{id}` is unknown to this adapter (never started here, or expired)")))?;
    serde_json::from_slice(&raw).map_err(|e| error::internal(format!("stored state of operation `{id}` is corrupt: {e}")))
}

/// The target recorded in an operation's state.
pub fn target_of(state: &Value) -> Option<String> {
    state["target"].as_str().map(str::to_string)
}

/// A running operation.
pub fn running(id: &str, target: Option<String>, poll_after_ms: u32) -> Operation {
    Operation { id: id.to_string(), state: OperationState::Running, progress_percent: None, target, poll_after_ms }
}

/// A succeeded operation.
pub fn succeeded(id: &str, target: Option<String>) -> Operation {
    Operation { id: id.to_string(), state: OperationState::Succeeded, progress_percent: Some(100), target, poll_after_ms: 0 }
}

/// A failed operation.
pub fn failed(id: &str, target: Option<String>, err: AdapterError) -> Operation {
    Operation { id: id.to_string(), state: OperationState::Failed(err), progress_percent: None, target, poll_after_ms: 0 }
}

/// Records an operation that finished inside the call (a no-op such as powering on a VM
/// that is on), so that polling it answers `succeeded` too.
pub fn completed(target: Option<String>) -> Result<Operation, AdapterError> {
    let id = new_id()?;
    save(&id, &json!({"done": true, "target": target}))?;
    Ok(succeeded(&id, target))
}

/// Marks a stored operation finished, with its outcome, so later polls repeat it.
pub fn finish(id: &str, state: &mut Value, outcome: Result<(), &AdapterError>) -> Result<(), AdapterError> {
    state["done"] = json!(true);
    if let Err(e) = outcome {
        state["error"] = error_json(e);
    }
    save(id, state)
}

/// The answer for a stored operation already marked finished.
pub fn finished_answer(id: &str, state: &Value) -> Option<Operation> {
    if state["done"].as_bool() != Some(true) {
        return None;
    }
    let target = target_of(state);
    Some(match state.get("error").filter(|e| !e.is_null()) {
        Some(e) => failed(id, target, error_from_json(e)),
        None => succeeded(id, target),
    })
}

fn error_json(e: &AdapterError) -> Value {
    let (kind, msg, retry) = match e {
        AdapterError::NotFound(m) => ("not-found", m.clone(), None),
        AdapterError::AlreadyExists(m) => ("already-exists", m.clone(), None),
        AdapterError::InvalidArgument(m) => ("invalid-argument", m.clone(), None),
        AdapterError::PermissionDenied(m) => ("permission-denied", m.clone(), None),
        AdapterError::Unavailable(u) => ("unavailable", u.message.clone(), u.retry_after_ms),
        AdapterError::Unsupported(m) => ("unsupported", m.clone(), None),
        AdapterError::Conflict(m) => ("conflict", m.clone(), None),
        AdapterError::Internal(m) => ("internal", m.clone(), None),
    };
    json!({"kind": kind, "message": msg, "retry_after_ms": retry})
}

fn error_from_json(v: &Value) -> AdapterError {
    let m = v["message"].as_str().unwrap_or_default().to_string();
    match v["kind"].as_str().unwrap_or("") {
        "not-found" => error::not_found(m),
        "already-exists" => error::already_exists(m),
        "invalid-argument" => error::invalid(m),
        "permission-denied" => error::denied(m),
        "unavailable" => error::unavailable(m, v["retry_after_ms"].as_u64()),
        "unsupported" => error::unsupported(m),
        "conflict" => error::conflict(m),
        _ => error::internal(m),
    }
}

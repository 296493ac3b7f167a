//! Operations the host polls: classic asynchronous requests (by `x-ms-request-id`).

use homeward_sdk::azure::classic::Status;
use homeward_sdk::azure::ops;
use homeward_sdk::compute::Operation;
use homeward_sdk::types::AdapterError;
use serde_json::json;

use crate::site::Site;

/// How often to poll classic operations, which report no `Retry-After`.
const POLL_MS: u32 = 1_000;

/// Stores and returns a running operation watching `requests`.
pub fn start(requests: Vec<String>, target: Option<String>) -> Result<Operation, AdapterError> {
    let id = ops::new_id()?;
    ops::save(&id, &json!({"requests": requests, "target": target}))?;
    Ok(ops::running(&id, target, POLL_MS))
}

/// Polls every request still running once.
pub fn poll(site: &Site, id: &str) -> Result<Operation, AdapterError> {
    let mut state = ops::load(id)?;
    if let Some(done) = ops::finished_answer(id, &state) {
        return Ok(done);
    }
    let target = ops::target_of(&state);
    let requests: Vec<String> = serde_json::from_value(state["requests"].clone()).unwrap_or_default();
    let mut still = Vec::new();
    for r in requests {
        match site.sm.poll(&format!("operation {id}"), &r)? {
            Status::Succeeded => {}
            Status::Running => still.push(r),
            Status::Failed(e) => {
                ops::finish(id, &mut state, Err(&e))?;
                return Ok(ops::failed(id, target, e));
            }
        }
    }
    if still.is_empty() {
        ops::finish(id, &mut state, Ok(()))?;
        return Ok(ops::succeeded(id, target));
    }
    state["requests"] = json!(still);
    ops::save(id, &state)?;
    Ok(ops::running(id, target, POLL_MS))
}

//! Operations the host polls: Azure long-running operations still to watch, then the
//! deletions that follow (a VM's disks and NICs go once the VM is gone).

use homeward_sdk::azure::arm::{Pending, Status};
use homeward_sdk::azure::ops;
use homeward_sdk::compute::Operation;
use homeward_sdk::error;
use homeward_sdk::types::AdapterError;
use serde_json::{Value, json};

use crate::site::Site;

/// Stores and returns a running operation; with nothing pending it is already done.
pub fn start(pending: Vec<Pending>, then_delete: Vec<String>, target: Option<String>) -> Result<Operation, AdapterError> {
    if pending.is_empty() && then_delete.is_empty() {
        return ops::completed(target);
    }
    let id = ops::new_id()?;
    let wait = pending.iter().map(|p| p.poll_after_ms).max().unwrap_or(1000);
    ops::save(&id, &json!({"pending": pending, "then_delete": then_delete, "target": target}))?;
    Ok(ops::running(&id, target, clamp(wait)))
}

fn clamp(ms: u64) -> u32 {
    ms.min(u64::from(u32::MAX)) as u32
}

/// Polls every pending Azure operation once and moves the stored operation on.
pub fn poll(site: &Site, id: &str) -> Result<Operation, AdapterError> {
    let mut state = ops::load(id)?;
    if let Some(done) = ops::finished_answer(id, &state) {
        return Ok(done);
    }
    let target = ops::target_of(&state);
    let pending: Vec<Pending> = serde_json::from_value(state["pending"].clone()).map_err(|e| error::internal(format!("operation {id}: corrupt state: {e}")))?;
    let mut still = Vec::new();
    let mut wait = 0;
    for p in pending {
        match site.arm.poll(&format!("operation {id}"), &p)? {
            Status::Succeeded(_) => {}
            Status::Running { poll_after_ms } => {
                wait = wait.max(poll_after_ms);
                still.push(p);
            }
            Status::Failed(e) => {
                ops::finish(id, &mut state, Err(&e))?;
                return Ok(ops::failed(id, target, e));
            }
        }
    }
    if still.is_empty() {
        let deletes: Vec<String> = serde_json::from_value(state["then_delete"].clone()).unwrap_or_default();
        for d in &deletes {
            match site.arm.start(&format!("deleting {d}"), "DELETE", d, None) {
                Ok((_, Some(p))) => {
                    wait = wait.max(p.poll_after_ms);
                    still.push(p);
                }
                Ok((_, None)) | Err(AdapterError::NotFound(_)) => {}
                Err(e) => {
                    ops::finish(id, &mut state, Err(&e))?;
                    return Ok(ops::failed(id, target, e));
                }
            }
        }
        state["then_delete"] = json!([]);
        if still.is_empty() {
            ops::finish(id, &mut state, Ok(()))?;
            return Ok(ops::succeeded(id, target));
        }
    }
    state["pending"] = serde_json::to_value(&still).unwrap_or(Value::Null);
    ops::save(id, &state)?;
    Ok(ops::running(id, target, clamp(wait.max(100))))
}

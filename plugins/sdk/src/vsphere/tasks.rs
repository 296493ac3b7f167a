//! vim25 Tasks as the contract's operations.
//!
//! A started Task's moref value is the operation id. Operations that need more than a
//! Task carry their context in the id, separated by `|`:
//! - `done|<target>`: a no-op the contract calls succeeded (powering on a VM that is on);
//! - `shutdown|<vm>`: a guest shutdown (ShutdownGuest is not a Task), done once the VM is off;
//! - `<task>|disk|<vm>|<controller key>|<unit>`: attaching a disk, whose target (the new
//!   disk's key) is read from the VM once the Task has succeeded.

use super::collector;
use super::faults;
use super::inventory::{self, vm_ref};
use super::session::Client;
use crate::compute::{Operation, OperationState};
use crate::error;
use crate::soap::{Element, MoRef, SoapFault};
use crate::types::AdapterError;

/// How long the host should wait before polling a running Task.
pub const POLL_AFTER_MS: u32 = 200;

/// An operation that has already succeeded, with its target.
pub fn done(target: &str) -> Operation {
    Operation {
        id: format!("done|{target}"),
        state: OperationState::Succeeded,
        progress_percent: Some(100),
        target: Some(target.to_string()),
        poll_after_ms: 0,
    }
}

/// A guest shutdown that was asked for; [`poll`] reports it done once the VM is off.
pub fn shutdown(client: &Client, vm: &str) -> Result<Operation, AdapterError> {
    poll(client, &format!("shutdown|{vm}"))
}

/// Turns the Task a `*_Task` method returned into an operation, reading its state once.
/// `context` is appended to the id (see the module docs).
pub fn started(client: &Client, response: &Element, context: Option<String>, what: &str) -> Result<Operation, AdapterError> {
    let task = response
        .child("returnval")
        .and_then(Element::as_moref)
        .ok_or_else(|| error::internal(format!("{what}: the server returned no Task")))?;
    let id = match context {
        Some(c) => format!("{}|{c}", task.value),
        None => task.value,
    };
    poll(client, &id)
}

/// Where an operation stands.
pub fn poll(client: &Client, id: &str) -> Result<Operation, AdapterError> {
    let mut parts = id.split('|');
    let head = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    match (head, rest.as_slice()) {
        ("done", [target]) => Ok(done(target)),
        ("shutdown", [vm]) => {
            let o = collector::of_object(client, &vm_ref(vm), &["runtime.powerState"])?;
            let off = o.text("runtime.powerState") == "poweredOff";
            Ok(Operation {
                id: id.to_string(),
                state: if off { OperationState::Succeeded } else { OperationState::Running },
                progress_percent: None,
                target: Some(vm.to_string()),
                poll_after_ms: if off { 0 } else { 1000 },
            })
        }
        ("", _) => Err(error::not_found("the operation id is empty")),
        (task, context) => poll_task(client, id, task, context),
    }
}

fn poll_task(client: &Client, id: &str, task: &str, context: &[&str]) -> Result<Operation, AdapterError> {
    let task_ref = MoRef::new("Task", task);
    let info = match collector::of_object(client, &task_ref, &["info"]) {
        Ok(o) => o.get("info").cloned().unwrap_or_default(),
        Err(AdapterError::NotFound(_)) => {
            return Err(error::not_found(format!("operation `{id}`: the Task {task} is unknown or has expired on the server")));
        }
        Err(e) => return Err(e),
    };
    let what = format!(
        "{} on {}",
        info.child_text("name").unwrap_or("task"),
        info.child("entity").and_then(Element::as_moref).map(|m| m.to_string()).unwrap_or_default()
    );
    let progress = info.child_i64("progress").map(|p| p.clamp(0, 100) as u8);
    let mut op = Operation { id: id.to_string(), state: OperationState::Running, progress_percent: progress, target: None, poll_after_ms: POLL_AFTER_MS };
    match info.child_text("state").unwrap_or_default() {
        "success" => {
            op.state = OperationState::Succeeded;
            op.progress_percent = Some(100);
            op.poll_after_ms = 0;
            op.target = match context {
                ["disk", vm, controller, unit] => Some(attached_disk(client, vm, controller, unit)?),
                _ => info.child("result").and_then(Element::as_moref).map(|m| m.value).or_else(|| info.child("entity").and_then(Element::as_moref).map(|m| m.value)),
            };
        }
        "error" => {
            let error = info.child("error").cloned().unwrap_or_default();
            let fault_el = error.child("fault").cloned().unwrap_or_default();
            let fault = SoapFault {
                kind: fault_el.xsi_type.clone().unwrap_or_else(|| "UnknownFault".into()),
                message: error.child_text("localizedMessage").unwrap_or_default().to_string(),
                detail: fault_el,
            };
            op.state = OperationState::Failed(faults::to_error(&fault, &what));
            op.poll_after_ms = 0;
        }
        "queued" | "running" => {}
        other => return Err(error::internal(format!("{what}: the Task {task} is in state `{other}`, which this adapter does not know"))),
    }
    Ok(op)
}

fn attached_disk(client: &Client, vm: &str, controller: &str, unit: &str) -> Result<String, AdapterError> {
    let o = collector::of_object(client, &vm_ref(vm), &["config.hardware.device"])?;
    let empty = Element::default();
    inventory::virtual_disks(o.get("config.hardware.device").unwrap_or(&empty))
        .into_iter()
        .find(|d| d.controller_key.to_string() == controller && d.unit.to_string() == unit)
        .map(|d| d.key.to_string())
        .ok_or_else(|| error::internal(format!("the disk attached to VM {vm} at controller {controller} unit {unit} is not there")))
}

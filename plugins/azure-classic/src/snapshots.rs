//! VM snapshots as blob snapshots of every VHD of the role, recorded in the key-value store
//! under `snap/{vm}/{name}` (name → each disk's snapshot time). The name is the snapshot id
//! and the disks' change id.

use homeward_sdk::azure::clock;
use homeward_sdk::inventory::SnapshotInfo;
use homeward_sdk::types::AdapterError;
use homeward_sdk::{error, host};
use serde_json::{Value, json};

fn key(vm: &str, name: &str) -> String {
    format!("snap/{vm}/{name}")
}

/// The record of VM snapshot `name`: `{"created", "disks": {disk: snapshot-time}}`.
pub fn load(vm: &str, name: &str) -> Option<Value> {
    host::kv_get(&key(vm, name)).and_then(|v| serde_json::from_slice(&v).ok())
}

/// Records VM snapshot `name`.
pub fn save(vm: &str, name: &str, disks: &serde_json::Map<String, Value>) -> Result<(), AdapterError> {
    host::kv_set(&key(vm, name), json!({"created": clock::iso8601(clock::unix_now()), "order": order(), "disks": disks}).to_string().as_bytes())
}

/// Nanoseconds since the epoch: orders snapshots taken within the same second.
fn order() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Forgets VM snapshot `name`.
pub fn forget(vm: &str, name: &str) -> Result<(), AdapterError> {
    host::kv_delete(&key(vm, name))
}

/// The snapshot time of `disk` in VM snapshot `name`.
pub fn stamp(vm: &str, name: &str, disk: &str) -> Option<String> {
    load(vm, name)?["disks"][disk].as_str().map(str::to_string)
}

/// The names of the VM's snapshots.
pub fn names(vm: &str) -> Vec<String> {
    let prefix = format!("snap/{vm}/");
    host::kv_list(&prefix).into_iter().filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)).collect()
}

/// The VM's snapshots, oldest first, each the parent of the next.
pub fn of_vm(vm: &str) -> Vec<SnapshotInfo> {
    let mut all: Vec<(u64, String, String)> = names(vm)
        .into_iter()
        .filter_map(|n| load(vm, &n).map(|r| (r["order"].as_u64().unwrap_or(0), r["created"].as_str().unwrap_or_default().to_string(), n)))
        .collect();
    all.sort();
    let mut out: Vec<SnapshotInfo> = Vec::new();
    for (_, created, name) in all {
        let parent = out.last().map(|p| p.id.clone());
        out.push(SnapshotInfo { id: name.clone(), name, created, quiesced: false, parent });
    }
    out
}

/// `not-found` for an unknown snapshot.
pub fn missing(vm: &str, name: &str) -> AdapterError {
    error::not_found(format!("VM {vm} has no snapshot `{name}`"))
}

//! SearchIndex: finding VMs by BIOS or instance uuid, inventory path or datastore path,
//! as adapters do to find "the original VM" again on failback.

use super::faults::Fault;
use super::inventory::Inventory;
use super::soap::{Element, MoRef, Value};

/// VMs whose BIOS uuid (or instance uuid) matches, case-insensitively.
fn by_uuid(inv: &Inventory, op: &Element) -> Result<Vec<MoRef>, Fault> {
    let uuid = op
        .child_text("uuid")
        .ok_or_else(|| Fault::invalid_argument("uuid"))?
        .to_lowercase();
    // Hosts have no hardware uuid in the lab, so a host search finds nothing.
    if op.child_bool("vmSearch") != Some(true) {
        return Ok(Vec::new());
    }
    let instance = op.child_bool("instanceUuid").unwrap_or(false);
    Ok(inv
        .vms
        .values()
        .filter(|vm| {
            let id = if instance {
                &vm.instance_uuid
            } else {
                &vm.uuid
            };
            id.to_lowercase() == uuid
        })
        .map(|vm| vm.moref.clone())
        .collect())
}

/// Resolves `dc/vm/name`, `dc/host/host[/host]`, `dc/datastore/name`, `dc/network/name`.
fn by_inventory_path(inv: &Inventory, path: &str) -> Option<MoRef> {
    let dc = &inv.datacenter;
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [d] if *d == dc.name => Some(dc.moref.clone()),
        [d, "vm"] if *d == dc.name => Some(dc.vm_folder.clone()),
        [d, "host"] if *d == dc.name => Some(dc.host_folder.clone()),
        [d, "datastore"] if *d == dc.name => Some(dc.datastore_folder.clone()),
        [d, "network"] if *d == dc.name => Some(dc.network_folder.clone()),
        [d, "vm", name] if *d == dc.name => inv.vm_by_name(name).map(|v| v.moref.clone()),
        [d, "host", name] if *d == dc.name => inv.host_by_name(name).map(|h| h.compute.clone()),
        [d, "host", name, host] if *d == dc.name && name == host => {
            inv.host_by_name(host).map(|h| h.moref.clone())
        }
        [d, "datastore", name] if *d == dc.name => {
            inv.datastore_by_name(name).map(|x| x.moref.clone())
        }
        [d, "network", name] if *d == dc.name => inv.network_by_name(name).map(|n| n.moref.clone()),
        _ => None,
    }
}

/// The VM whose `.vmx` is at `[ds] dir/name.vmx`.
fn by_datastore_path(inv: &Inventory, path: &str) -> Result<Option<MoRef>, Fault> {
    let (ds, rel) = inv.resolve_ds_path(path).ok_or_else(|| {
        Fault::new(
            "InvalidDatastorePath",
            format!("Invalid datastore path '{path}'."),
        )
    })?;
    let ds = ds.moref.clone();
    Ok(inv
        .vms
        .values()
        .find(|vm| vm.datastore == ds && format!("{}/{}.vmx", vm.dir, vm.name) == rel)
        .map(|vm| vm.moref.clone()))
}

/// Runs a SearchIndex method; `None` when `method` is not one.
pub fn call(inv: &Inventory, method: &str, op: &Element) -> Option<Result<Vec<Value>, Fault>> {
    let one = |m: Option<MoRef>| m.into_iter().map(Value::Ref).collect::<Vec<_>>();
    Some(match method {
        "FindByUuid" => by_uuid(inv, op).map(|v| one(v.into_iter().next())),
        "FindAllByUuid" => by_uuid(inv, op).map(|v| v.into_iter().map(Value::Ref).collect()),
        "FindByInventoryPath" => match op.child_text("inventoryPath") {
            Some(p) => Ok(one(by_inventory_path(inv, p))),
            None => Err(Fault::invalid_argument("inventoryPath")),
        },
        "FindByDatastorePath" => match op.child_text("path") {
            Some(p) => by_datastore_path(inv, p).map(one),
            None => Err(Fault::invalid_argument("path")),
        },
        _ => return None,
    })
}

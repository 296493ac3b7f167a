//! `adapter-template`: a Homeward site adapter for a **directory site**, and the starting
//! point for vendors writing their own adapter.
//!
//! A directory site is a directory the operator preopens for the adapter: one folder per
//! VM, holding `vm.toml` and raw sparse disk files (see [`layout`]). Every function of the
//! `homeward:adapter@0.1.0` contract is implemented for it: inventory, compute, snapshots as
//! sparse copies, and change tracking by block hashes kept in the host's key-value store.
//!
//! This file only wires the contract's `Guest` traits to the modules; each module is plain
//! Rust over `std::fs` and a [`store::Store`], so the logic is unit-tested natively.

#![warn(missing_docs)]

pub mod blocks;
pub mod change_tracking;
pub mod compute;
pub mod disk_access;
pub mod inventory;
pub mod layout;
pub mod ops;
pub mod snapshots;
pub mod store;
pub mod util;
pub mod vm_file;

#[cfg(test)]
mod tests;

use homeward_sdk::compute::{DiskSpec, Operation, PowerOffMode, ProcessServerSpec, VmSpec};
use homeward_sdk::disks::{AccessMode, ChangeSet};
use homeward_sdk::inventory::{DatastoreInfo, HostInfo, NetworkInfo, PrivilegeCheck, VmInfo};
use homeward_sdk::site::SiteInfo;
use homeward_sdk::types::{Extent, KeyValue};
use homeward_sdk::{AdapterError, error};

use crate::blocks::Span;
use crate::layout::Site;
use crate::store::HostStore;

homeward_sdk::manifest!("homeward-adapter.toml");

/// The component: one zero-sized type implementing the four exported interfaces.
pub struct Adapter;

// Only a wasm32 component exports the contract: the export names (`homeward:adapter/…`)
// are not valid native symbol names, and natively the crate exists for `cargo test`.
#[cfg(target_arch = "wasm32")]
homeward_sdk::export!(Adapter);

/// Runs the site-changing function behind `call` and reports it as a finished, pollable
/// operation. Every change is logged: it is what an operator looks for after the fact.
fn finished(
    call: &str,
    change: impl FnOnce(&Site) -> Result<String, AdapterError>,
) -> Result<Operation, AdapterError> {
    let site = Site::from_config()?;
    let target = change(&site)?;
    let op = ops::succeeded(&HostStore, &target)?;
    homeward_sdk::host::info(&format!("{call} {target}: done ({})", op.id));
    Ok(op)
}

impl homeward_sdk::site::Guest for Adapter {
    fn describe() -> Result<SiteInfo, AdapterError> {
        inventory::describe(&Site::from_config()?)
    }
}

impl homeward_sdk::inventory::Guest for Adapter {
    fn list_hosts() -> Result<Vec<HostInfo>, AdapterError> {
        inventory::hosts(&Site::from_config()?)
    }

    fn list_datastores() -> Result<Vec<DatastoreInfo>, AdapterError> {
        inventory::datastores(&Site::from_config()?)
    }

    fn list_networks() -> Result<Vec<NetworkInfo>, AdapterError> {
        inventory::networks(&Site::from_config()?)
    }

    fn list_vms() -> Result<Vec<VmInfo>, AdapterError> {
        inventory::list_vms(&Site::from_config()?)
    }

    fn get_vm(vm: String) -> Result<VmInfo, AdapterError> {
        inventory::vm_info(&Site::from_config()?, &vm)
    }

    fn check_privileges(
        _entities: Vec<String>,
        _privileges: Vec<String>,
    ) -> Result<Vec<PrivilegeCheck>, AdapterError> {
        Err(error::unsupported(
            "a directory site has no privilege model: access is what the operator preopened",
        ))
    }
}

impl homeward_sdk::compute::Guest for Adapter {
    fn create_vm(spec: VmSpec) -> Result<Operation, AdapterError> {
        finished("create-vm", |site| compute::create_vm(site, &spec))
    }

    fn power_on(vm: String) -> Result<Operation, AdapterError> {
        finished("power-on", |site| compute::power_on(site, &vm))
    }

    fn power_off(vm: String, _mode: PowerOffMode) -> Result<Operation, AdapterError> {
        finished("power-off", |site| compute::power_off(site, &vm))
    }

    fn delete_vm(vm: String) -> Result<Operation, AdapterError> {
        finished("delete-vm", |site| {
            compute::delete_vm(site, &HostStore, &vm)
        })
    }

    fn attach_disk(vm: String, disk: DiskSpec) -> Result<Operation, AdapterError> {
        finished("attach-disk", |site| compute::attach_disk(site, &vm, &disk))
    }

    fn detach_disk(
        vm: String,
        disk: String,
        delete_backing: bool,
    ) -> Result<Operation, AdapterError> {
        finished("detach-disk", |site| {
            compute::detach_disk(site, &HostStore, &vm, &disk, delete_backing)
        })
    }

    fn reconfigure(vm: String, changes: Vec<KeyValue>) -> Result<Operation, AdapterError> {
        let changes: Vec<(String, String)> =
            changes.into_iter().map(|kv| (kv.key, kv.value)).collect();
        finished("reconfigure", |site| {
            compute::reconfigure(site, &vm, &changes)
        })
    }

    fn create_snapshot(vm: String, name: String, quiesce: bool) -> Result<Operation, AdapterError> {
        finished("create-snapshot", |site| {
            snapshots::create(site, &HostStore, &vm, &name, quiesce)
        })
    }

    fn remove_snapshot(vm: String, snapshot: String) -> Result<Operation, AdapterError> {
        finished("remove-snapshot", |site| {
            snapshots::remove(site, &vm, &snapshot).map(|()| snapshot.clone())
        })
    }

    fn deploy_process_server(_spec: ProcessServerSpec) -> Result<Operation, AdapterError> {
        Err(error::unsupported(
            "a directory site is on-premises: process servers are deployed in Azure",
        ))
    }

    fn create_vm_from_disks(spec: VmSpec, _attach: Vec<String>) -> Result<Operation, AdapterError> {
        // A directory site keeps a replica as the disk of a VM folder, so there are no
        // loose disks to boot from; a cloud adapter implements this for failover.
        Err(error::unsupported(format!("VM {}: the directory site has no standalone disks; use create-vm", spec.name)))
    }

    fn poll_operation(id: String) -> Result<Operation, AdapterError> {
        ops::poll(&HostStore, &id)
    }
}

fn extents(spans: Vec<Span>) -> Vec<Extent> {
    spans
        .into_iter()
        .map(|s| Extent {
            offset: s.offset,
            length: s.length,
        })
        .collect()
}

impl homeward_sdk::disks::Guest for Adapter {
    fn enable_change_tracking(vm: String, disk: String) -> Result<Operation, AdapterError> {
        finished("enable-change-tracking", |site| {
            compute::enable_change_tracking(site, &vm, &disk)
        })
    }

    fn changed_areas(
        vm: String,
        disk: String,
        snapshot: String,
        since_change_id: String,
        start_offset: u64,
    ) -> Result<ChangeSet, AdapterError> {
        let site = Site::from_config()?;
        let areas = change_tracking::changed_areas(
            &site,
            &HostStore,
            &vm,
            &disk,
            &snapshot,
            &since_change_id,
            start_offset,
        )?;
        Ok(ChangeSet {
            start_offset: areas.window.offset,
            length: areas.window.length,
            changed: extents(areas.diff.changed),
            cleared: extents(areas.diff.cleared),
            change_id: areas.change_id,
        })
    }

    fn open(
        vm: String,
        disk: String,
        snapshot: Option<String>,
        mode: AccessMode,
    ) -> Result<homeward_sdk::disks::DiskAccess, AdapterError> {
        let site = Site::from_config()?;
        disk_access::open(
            &site,
            &HostStore,
            &vm,
            &disk,
            snapshot.as_deref(),
            matches!(mode, AccessMode::ReadWrite),
        )
    }

    fn close(handle: String) -> Result<(), AdapterError> {
        disk_access::close(&HostStore, &handle)
    }

    fn read(handle: String, offset: u64, length: u32) -> Result<Vec<u8>, AdapterError> {
        disk_access::read(&HostStore, &handle, offset, length)
    }

    fn create_disk(spec: homeward_sdk::disks::NewDisk) -> Result<Operation, AdapterError> {
        Err(error::unsupported(format!("disk {}: the directory site has no standalone disks; use create-vm or attach-disk", spec.name)))
    }

    fn delete_disk(disk: String) -> Result<Operation, AdapterError> {
        Err(error::unsupported(format!("disk {disk}: the directory site has no standalone disks; use detach-disk")))
    }

    fn write(handle: String, offset: u64, data: Vec<u8>) -> Result<(), AdapterError> {
        disk_access::write(&HostStore, &handle, offset, &data)
    }
}

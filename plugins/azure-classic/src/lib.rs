//! Homeward site adapter for Azure classic (Service Management).
//!
//! VMs are persistent VM roles, with id `{cloud-service}/{role}`; disks are their VHDs
//! (page blobs in the configured storage account), by disk name; networks are classic
//! virtual network sites, by name. Snapshots are blob snapshots of every VHD, and changed
//! areas come from Get Page Ranges with `prevsnapshot` (changed and cleared ranges). Disks
//! are opened as page-blob SAS locators this adapter signs with the storage key.
//!
//! Config keys: `management_endpoint`, `blob_endpoint` (the storage account's blob
//! endpoint, with `/{account}` for path-style emulators), `subscription_id`,
//! `certificate_thumbprint`, `storage_account`, and optional `location`, `x_ms_version`.
//! Secrets: `management_certificate_key` (base64), `storage_key` (base64).

mod compute;
mod disks;
mod inventory;
mod networks;
mod operations;
mod site;
mod snapshots;

use homeward_sdk::compute::{DiskSpec, Guest as Compute, Operation, PowerOffMode, ProcessServerSpec, VmSpec};
use homeward_sdk::disks::{AccessMode, ChangeSet, DiskAccess, Guest as Disks, NewDisk};
use homeward_sdk::inventory::{DatastoreInfo, Guest as Inventory, HostInfo, NetworkInfo, PrivilegeCheck, VmInfo};
use homeward_sdk::site::{Capabilities, Guest as SiteApi, SiteInfo, TransportKind};
use homeward_sdk::types::{AdapterError, DeploymentModel, KeyValue, SiteKind};
use homeward_sdk::error;

use site::Site;

homeward_sdk::manifest!("homeward-adapter.toml");

/// The exported adapter.
pub struct AzureClassic;

fn no_disk_changes() -> AdapterError {
    error::unsupported("azure-classic does not change a role's disks or configuration; re-create the VM with the disks it needs")
}

impl SiteApi for AzureClassic {
    fn describe() -> Result<SiteInfo, AdapterError> {
        let site = Site::load()?;
        site.services()?;
        Ok(SiteInfo {
            kind: SiteKind::AzureClassic,
            adapter: format!("azure-classic {}", env!("CARGO_PKG_VERSION")),
            api_version: site.sm.version.clone(),
            product: "Azure Service Management".into(),
            product_version: site.sm.version.clone(),
            licence: None,
            deployment_model: DeploymentModel::AzureClassic,
            capabilities: Capabilities {
                change_tracking: true,
                quiesced_snapshots: false,
                create_vm: true,
                clone_vm: false,
                managed_inventory: false,
                deploy_process_server: true,
                privileges: false,
                transports: vec![TransportKind::PageBlob],
            },
        })
    }
}

impl Inventory for AzureClassic {
    fn list_hosts() -> Result<Vec<HostInfo>, AdapterError> {
        let site = Site::load()?;
        Ok(vec![HostInfo { id: site.location.clone(), name: site.location.clone(), connected: true, in_maintenance: false, product_version: site.sm.version.clone() }])
    }
    fn list_datastores() -> Result<Vec<DatastoreInfo>, AdapterError> {
        // VHDs live in a storage account, which is not a datastore hosts mount.
        Ok(Vec::new())
    }
    fn list_networks() -> Result<Vec<NetworkInfo>, AdapterError> {
        networks::all(&Site::load()?)
    }
    fn list_vms() -> Result<Vec<VmInfo>, AdapterError> {
        inventory::vms(&Site::load()?)
    }
    fn get_vm(vm: String) -> Result<VmInfo, AdapterError> {
        inventory::vm(&Site::load()?, &vm)
    }
    fn check_privileges(_entities: Vec<String>, _privileges: Vec<String>) -> Result<Vec<PrivilegeCheck>, AdapterError> {
        Err(error::unsupported("classic subscriptions authorize by management certificate, not by privilege"))
    }
}

impl Compute for AzureClassic {
    fn create_vm(spec: VmSpec) -> Result<Operation, AdapterError> {
        compute::create_vm(&Site::load()?, spec)
    }
    fn power_on(vm: String) -> Result<Operation, AdapterError> {
        compute::power_on(&Site::load()?, &vm)
    }
    fn power_off(vm: String, mode: PowerOffMode) -> Result<Operation, AdapterError> {
        compute::power_off(&Site::load()?, &vm, mode)
    }
    fn delete_vm(vm: String) -> Result<Operation, AdapterError> {
        compute::delete_vm(&Site::load()?, &vm)
    }
    fn attach_disk(_vm: String, _disk: DiskSpec) -> Result<Operation, AdapterError> {
        Err(no_disk_changes())
    }
    fn detach_disk(_vm: String, _disk: String, _delete_backing: bool) -> Result<Operation, AdapterError> {
        Err(no_disk_changes())
    }
    fn reconfigure(_vm: String, _changes: Vec<KeyValue>) -> Result<Operation, AdapterError> {
        Err(no_disk_changes())
    }
    fn create_snapshot(vm: String, name: String, quiesce: bool) -> Result<Operation, AdapterError> {
        compute::create_snapshot(&Site::load()?, &vm, &name, quiesce)
    }
    fn remove_snapshot(vm: String, snapshot: String) -> Result<Operation, AdapterError> {
        compute::remove_snapshot(&Site::load()?, &vm, &snapshot)
    }
    fn deploy_process_server(spec: ProcessServerSpec) -> Result<Operation, AdapterError> {
        compute::deploy_process_server(&Site::load()?, spec)
    }
    fn create_vm_from_disks(spec: VmSpec, attach: Vec<String>) -> Result<Operation, AdapterError> {
        compute::create_vm_from_disks(&Site::load()?, spec, attach)
    }
    fn poll_operation(id: String) -> Result<Operation, AdapterError> {
        operations::poll(&Site::load()?, &id)
    }
}

impl Disks for AzureClassic {
    fn enable_change_tracking(vm: String, disk: String) -> Result<Operation, AdapterError> {
        disks::enable_change_tracking(&Site::load()?, &vm, &disk)
    }
    fn changed_areas(vm: String, disk: String, snapshot: String, since: String, start: u64) -> Result<ChangeSet, AdapterError> {
        disks::changed_areas(&Site::load()?, &vm, &disk, &snapshot, &since, start)
    }
    fn open(vm: String, disk: String, snapshot: Option<String>, mode: AccessMode) -> Result<DiskAccess, AdapterError> {
        disks::open(&Site::load()?, &vm, &disk, snapshot, mode)
    }
    fn close(_handle: String) -> Result<(), AdapterError> {
        // A service SAS cannot be revoked without a stored access policy; it expires.
        Ok(())
    }
    fn read(_handle: String, _offset: u64, _length: u32) -> Result<Vec<u8>, AdapterError> {
        Err(error::unsupported("azure-classic hands out page-blob SAS locators; read through the locator's URL"))
    }
    fn create_disk(spec: NewDisk) -> Result<Operation, AdapterError> {
        disks::create_disk(&Site::load()?, spec)
    }
    fn delete_disk(disk: String) -> Result<Operation, AdapterError> {
        disks::delete_disk(&Site::load()?, &disk)
    }
    fn write(_handle: String, _offset: u64, _data: Vec<u8>) -> Result<(), AdapterError> {
        Err(error::unsupported("azure-classic hands out page-blob SAS locators; write through the locator's URL"))
    }
}

// Natively (`cargo build --workspace`) the exports would clash with the host linker.
#[cfg(target_arch = "wasm32")]
homeward_sdk::export!(AzureClassic);

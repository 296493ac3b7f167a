//! Homeward site adapter for Azure Resource Manager.
//!
//! VMs are Resource Manager ids; disks are managed-disk ids; networks are virtual-network
//! ids. Snapshots are incremental managed-disk snapshots (one per disk, tagged with the VM
//! snapshot's name, which is also its id and the disks' change id). Changed areas come from
//! Get Page Ranges diffs between two snapshots' SAS URLs, and disks are opened as page-blob
//! SAS locators (`beginGetAccess` / `endGetAccess`).
//!
//! Config keys: `login_endpoint`, `arm_endpoint`, `blob_endpoint` (the managed-disk blob
//! host the SAS URLs point at), `tenant_id`, `client_id`, `subscription_id`,
//! `resource_group` (where new VMs go), and optional `location`, `api_version`, `scope`,
//! `admin_username`, `admin_ssh_public_key`, `process_server_size`. Secret: `client_secret`.

mod compute;
mod disks;
mod inventory;
mod operations;
mod site;
mod sizes;
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
pub struct AzureRm;

impl SiteApi for AzureRm {
    fn describe() -> Result<SiteInfo, AdapterError> {
        let site = Site::load()?;
        let sub = site.arm.get(&format!("reading subscription {}", site.subscription), &site.sub_path())?;
        Ok(SiteInfo {
            kind: SiteKind::AzureResourceManager,
            adapter: format!("azure-rm {}", env!("CARGO_PKG_VERSION")),
            api_version: site.arm.api_version.clone(),
            product: "Azure Resource Manager".into(),
            product_version: sub["displayName"].as_str().map(|n| format!("{} ({n})", site.arm.api_version)).unwrap_or_else(|| site.arm.api_version.clone()),
            licence: None,
            deployment_model: DeploymentModel::AzureResourceManager,
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

impl Inventory for AzureRm {
    fn list_hosts() -> Result<Vec<HostInfo>, AdapterError> {
        inventory::hosts(&Site::load()?)
    }
    fn list_datastores() -> Result<Vec<DatastoreInfo>, AdapterError> {
        // Managed disks have no datastores to choose or reach.
        Ok(Vec::new())
    }
    fn list_networks() -> Result<Vec<NetworkInfo>, AdapterError> {
        inventory::networks(&Site::load()?)
    }
    fn list_vms() -> Result<Vec<VmInfo>, AdapterError> {
        inventory::vms(&Site::load()?)
    }
    fn get_vm(vm: String) -> Result<VmInfo, AdapterError> {
        inventory::vm(&Site::load()?, &vm)
    }
    fn check_privileges(_entities: Vec<String>, _privileges: Vec<String>) -> Result<Vec<PrivilegeCheck>, AdapterError> {
        Err(error::unsupported("Azure role assignments are not checked by this adapter; Resource Manager answers AuthorizationFailed per call"))
    }
}

impl Compute for AzureRm {
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
    fn attach_disk(vm: String, disk: DiskSpec) -> Result<Operation, AdapterError> {
        compute::attach_disk(&Site::load()?, &vm, disk)
    }
    fn detach_disk(vm: String, disk: String, delete_backing: bool) -> Result<Operation, AdapterError> {
        compute::detach_disk(&Site::load()?, &vm, &disk, delete_backing)
    }
    fn reconfigure(vm: String, changes: Vec<KeyValue>) -> Result<Operation, AdapterError> {
        compute::reconfigure(&Site::load()?, &vm, changes)
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

impl Disks for AzureRm {
    fn enable_change_tracking(vm: String, disk: String) -> Result<Operation, AdapterError> {
        disks::enable_change_tracking(&Site::load()?, &vm, &disk)
    }
    fn changed_areas(vm: String, disk: String, snapshot: String, since: String, start: u64) -> Result<ChangeSet, AdapterError> {
        disks::changed_areas(&Site::load()?, &vm, &disk, &snapshot, &since, start)
    }
    fn open(vm: String, disk: String, snapshot: Option<String>, mode: AccessMode) -> Result<DiskAccess, AdapterError> {
        disks::open(&Site::load()?, &vm, &disk, snapshot, mode)
    }
    fn close(handle: String) -> Result<(), AdapterError> {
        disks::close(&Site::load()?, &handle)
    }
    fn read(_handle: String, _offset: u64, _length: u32) -> Result<Vec<u8>, AdapterError> {
        Err(error::unsupported("azure-rm hands out page-blob SAS locators; read through the locator's URL"))
    }
    fn write(_handle: String, _offset: u64, _data: Vec<u8>) -> Result<(), AdapterError> {
        Err(error::unsupported("azure-rm hands out page-blob SAS locators; write through the locator's URL"))
    }
    fn create_disk(spec: NewDisk) -> Result<Operation, AdapterError> {
        disks::create_disk(&Site::load()?, spec)
    }
    fn delete_disk(disk: String) -> Result<Operation, AdapterError> {
        disks::delete_disk(&Site::load()?, &disk)
    }
}

// Natively (`cargo build --workspace`) the exports would clash with the host linker.
#[cfg(target_arch = "wasm32")]
homeward_sdk::export!(AzureRm);

//! The contract wiring both vSphere adapters share: one macro, so the vCenter and the
//! standalone-ESXi adapter differ only in their [`Flavor`](super::Flavor) and name.

/// Declares the adapter type `$ty` and implements the four exported interfaces on it with
/// `homeward_sdk::vsphere` for the given flavor, then exports it.
///
/// ```ignore
/// homeward_sdk::manifest!("homeward-adapter.toml");
/// homeward_sdk::vsphere_adapter!(VmwareEsxi, homeward_sdk::vsphere::Flavor::Esxi, "vmware-esxi");
/// ```
#[macro_export]
macro_rules! vsphere_adapter {
    ($ty:ident, $flavor:expr, $name:literal) => {
        use std::rc::Rc;

        use $crate::bindings::exports::homeward::adapter::compute::{DiskSpec, Guest as Compute, Operation, PowerOffMode, ProcessServerSpec, VmSpec};
        use $crate::bindings::exports::homeward::adapter::disks::{AccessMode, ChangeSet, DiskAccess, Guest as Disks, NewDisk};
        use $crate::bindings::exports::homeward::adapter::inventory::{DatastoreInfo, Guest as Inventory, HostInfo, NetworkInfo, PrivilegeCheck, VmInfo};
        use $crate::bindings::exports::homeward::adapter::site::{Guest as Site, SiteInfo};
        use $crate::error;
        use $crate::types::{AdapterError, KeyValue};
        use $crate::vsphere::session::Client;
        use $crate::vsphere::{Flavor, compute, disks, inventory, site, tasks};

        /// The adapter; every call connects through the instance's cached vSphere session.
                pub struct $ty;

        const FLAVOR: Flavor = $flavor;

        fn client() -> Result<Rc<Client>, AdapterError> {
            Client::get()
        }

        impl Site for $ty {
            fn describe() -> Result<SiteInfo, AdapterError> {
                site::describe(FLAVOR, concat!($name, " ", env!("CARGO_PKG_VERSION")))
            }
        }

        impl Inventory for $ty {
            fn list_hosts() -> Result<Vec<HostInfo>, AdapterError> {
                inventory::list_hosts(&*client()?)
            }
            fn list_datastores() -> Result<Vec<DatastoreInfo>, AdapterError> {
                site::list_datastores(&*client()?)
            }
            fn list_networks() -> Result<Vec<NetworkInfo>, AdapterError> {
                inventory::list_networks(&*client()?)
            }
            fn list_vms() -> Result<Vec<VmInfo>, AdapterError> {
                inventory::list_vms(&*client()?)
            }
            fn get_vm(vm: String) -> Result<VmInfo, AdapterError> {
                inventory::get_vm(&*client()?, &vm)
            }
            fn check_privileges(entities: Vec<String>, privileges: Vec<String>) -> Result<Vec<PrivilegeCheck>, AdapterError> {
                site::check_privileges(&*client()?, &entities, &privileges)
            }
        }

        impl Compute for $ty {
            fn create_vm(spec: VmSpec) -> Result<Operation, AdapterError> {
                compute::create_vm(&*client()?, &spec)
            }
            fn power_on(vm: String) -> Result<Operation, AdapterError> {
                compute::power_on(&*client()?, &vm)
            }
            fn power_off(vm: String, mode: PowerOffMode) -> Result<Operation, AdapterError> {
                compute::power_off(&*client()?, &vm, mode)
            }
            fn delete_vm(vm: String) -> Result<Operation, AdapterError> {
                compute::delete_vm(&*client()?, &vm)
            }
            fn attach_disk(vm: String, disk: DiskSpec) -> Result<Operation, AdapterError> {
                compute::attach_disk(&*client()?, &vm, &disk)
            }
            fn detach_disk(vm: String, disk: String, delete_backing: bool) -> Result<Operation, AdapterError> {
                compute::detach_disk(&*client()?, &vm, &disk, delete_backing)
            }
            fn reconfigure(vm: String, changes: Vec<KeyValue>) -> Result<Operation, AdapterError> {
                compute::reconfigure(&*client()?, &vm, &changes)
            }
            fn create_snapshot(vm: String, name: String, quiesce: bool) -> Result<Operation, AdapterError> {
                compute::create_snapshot(&*client()?, &vm, &name, quiesce)
            }
            fn remove_snapshot(vm: String, snapshot: String) -> Result<Operation, AdapterError> {
                compute::remove_snapshot(&*client()?, &vm, &snapshot)
            }
            fn deploy_process_server(_spec: ProcessServerSpec) -> Result<Operation, AdapterError> {
                Err(error::unsupported("process servers are deployed in Azure; this adapter serves the on-premises VMware site"))
            }
            fn poll_operation(id: String) -> Result<Operation, AdapterError> {
                tasks::poll(&*client()?, &id)
            }
            fn create_vm_from_disks(spec: VmSpec, _attach: Vec<String>) -> Result<Operation, AdapterError> {
                Err(error::unsupported(format!(
                    "VM {}: vSphere replicas are the disks of a VM; create the VM with create-vm and replicate into its disks",
                    spec.name
                )))
            }
        }

        impl Disks for $ty {
            fn enable_change_tracking(vm: String, disk: String) -> Result<Operation, AdapterError> {
                compute::enable_change_tracking(&*client()?, &vm, &disk)
            }
            fn changed_areas(vm: String, disk: String, snapshot: String, since: String, start: u64) -> Result<ChangeSet, AdapterError> {
                disks::changed_areas(&*client()?, &vm, &disk, &snapshot, &since, start)
            }
            fn open(vm: String, disk: String, snapshot: Option<String>, mode: AccessMode) -> Result<DiskAccess, AdapterError> {
                disks::open(&*client()?, &vm, &disk, snapshot.as_deref(), mode)
            }
            fn close(handle: String) -> Result<(), AdapterError> {
                disks::close(&handle)
            }
            fn read(handle: String, _offset: u64, _length: u32) -> Result<Vec<u8>, AdapterError> {
                Err(disks::not_served(&handle))
            }
            fn write(handle: String, _offset: u64, _data: Vec<u8>) -> Result<(), AdapterError> {
                Err(disks::not_served(&handle))
            }
            fn create_disk(spec: NewDisk) -> Result<Operation, AdapterError> {
                Err(error::unsupported(format!(
                    "disk {}: vSphere disks belong to VMs; use create-vm or attach-disk",
                    spec.name
                )))
            }
            fn delete_disk(disk: String) -> Result<Operation, AdapterError> {
                Err(error::unsupported(format!("disk {disk}: vSphere disks belong to VMs; use detach-disk with delete-backing")))
            }
        }

        $crate::export!($ty);
    };
}

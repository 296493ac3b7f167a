//! The simulated site's data: subscriptions with their Resource Manager and classic objects,
//! the storage accounts, issued tokens, pending operations and armed faults.

use super::blob::store::{BlobRef, BlobStore, PAGE};
use super::faults::FaultRule;
use super::lro::Operation;
use super::token::TokenStore;
use crate::vhd::VhdFooter;
use serde_json::Value;
use std::collections::BTreeMap;

/// Container that holds managed disks and snapshots in the hidden managed-disk account.
pub(crate) const MD_CONTAINER: &str = "disks";
/// Container classic VMs keep their VHDs in.
pub(crate) const CLASSIC_CONTAINER: &str = "vhds";

/// Everything behind the lab's single lock.
#[derive(Debug)]
pub(crate) struct State {
    pub blobs: BlobStore,
    pub tokens: TokenStore,
    pub subs: BTreeMap<String, Subscription>,
    pub ops: BTreeMap<String, Operation>,
    pub faults: Vec<FaultRule>,
    /// Storage account that backs managed disks; only reachable through SAS URLs.
    pub md_account: String,
    /// The customer-visible storage account (classic VHDs, Import sources).
    pub account: String,
    /// Served requests, oldest first, bounded by [`REQUEST_LOG_LIMIT`].
    pub log: std::collections::VecDeque<super::RecordedRequest>,
}

/// How many served requests the lab remembers.
pub(crate) const REQUEST_LOG_LIMIT: usize = 10_000;

impl State {
    pub fn sub(&self, id: &str) -> Option<&Subscription> {
        self.subs.get(&id.to_ascii_lowercase())
    }
    pub fn sub_mut(&mut self, id: &str) -> Option<&mut Subscription> {
        self.subs.get_mut(&id.to_ascii_lowercase())
    }
    pub fn rg(&self, sub: &str, rg: &str) -> Option<&ResourceGroup> {
        self.sub(sub)?.rgs.get(&rg.to_ascii_lowercase())
    }
    pub fn rg_mut(&mut self, sub: &str, rg: &str) -> Option<&mut ResourceGroup> {
        self.sub_mut(sub)?.rgs.get_mut(&rg.to_ascii_lowercase())
    }

    /// Creates the page blob of a fixed VHD: `size` bytes of disk plus the footer page,
    /// which is written so the blob is a valid VHD from the start.
    pub fn create_vhd_blob(&mut self, r: &BlobRef, size: u64) -> Result<(), super::blob::store::BlobFail> {
        self.blobs.ensure_container(&r.account, &r.container);
        self.blobs.create_page_blob(r, size + PAGE, "application/octet-stream")?;
        let footer = VhdFooter::fixed(size, *uuid::Uuid::new_v4().as_bytes(), super::http::unix_now())
            .map_err(|e| super::blob::store::BlobFail::new(400, "InvalidHeaderValue", e.to_string()))?;
        self.blobs.write_pages(r, size, &footer.to_bytes())
    }
}

/// A subscription: Resource Manager groups and the classic objects side by side.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub id: String,
    pub name: String,
    pub rgs: BTreeMap<String, ResourceGroup>,
    pub classic: Classic,
}

/// A resource group and the resources the lab models in it.
#[derive(Debug, Default)]
pub(crate) struct ResourceGroup {
    pub name: String,
    pub location: String,
    pub tags: Value,
    pub deleting: bool,
    pub vnets: BTreeMap<String, Generic>,
    pub nics: BTreeMap<String, Generic>,
    pub vms: BTreeMap<String, Vm>,
    pub disks: BTreeMap<String, Disk>,
    pub snapshots: BTreeMap<String, Disk>,
}

/// A network resource whose properties are kept as the JSON the client sent.
#[derive(Debug, Clone)]
pub(crate) struct Generic {
    pub name: String,
    pub location: String,
    pub tags: Value,
    pub properties: Value,
    pub provisioning: String,
    pub etag: String,
}

/// Power state of a Resource Manager VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Power {
    Starting,
    Running,
    Stopping,
    Stopped,
    Deallocating,
    Deallocated,
}

impl Power {
    /// The `PowerState/...` code and display status of the instance view.
    pub fn code(self) -> (&'static str, &'static str) {
        match self {
            Power::Starting => ("PowerState/starting", "VM starting"),
            Power::Running => ("PowerState/running", "VM running"),
            Power::Stopping => ("PowerState/stopping", "VM stopping"),
            Power::Stopped => ("PowerState/stopped", "VM stopped"),
            Power::Deallocating => ("PowerState/deallocating", "VM deallocating"),
            Power::Deallocated => ("PowerState/deallocated", "VM deallocated"),
        }
    }
}

/// A data disk attachment.
#[derive(Debug, Clone)]
pub(crate) struct DataDisk {
    pub lun: u32,
    pub disk: String,
    pub create_option: String,
    pub caching: String,
}

/// A Resource Manager virtual machine.
#[derive(Debug, Clone)]
pub(crate) struct Vm {
    pub name: String,
    pub location: String,
    pub tags: Value,
    pub vm_id: String,
    pub size: String,
    pub os_type: String,
    pub os_disk: String,
    pub os_disk_create: String,
    pub data_disks: Vec<DataDisk>,
    pub nics: Vec<String>,
    pub power: Power,
    pub provisioning: String,
    pub os_profile: Value,
}

/// A managed disk or snapshot and the page blob behind it.
#[derive(Debug, Clone)]
pub(crate) struct Disk {
    pub name: String,
    pub location: String,
    pub tags: Value,
    pub sku: String,
    pub size_bytes: u64,
    pub blob: BlobRef,
    pub managed_by: Option<String>,
    pub access_sas: Option<String>,
    pub provisioning: String,
    pub creation: Value,
    pub unique_id: String,
    pub time_created: String,
    pub os_type: Option<String>,
    pub incremental: bool,
    /// Created with `createOption: Upload` and not yet sealed by `endGetAccess`.
    pub upload_pending: bool,
}

impl Disk {
    /// `diskState` as the service reports it.
    pub fn disk_state(&self) -> &'static str {
        if self.upload_pending {
            if self.access_sas.is_some() { "ActiveUpload" } else { "ReadyToUpload" }
        } else if self.access_sas.is_some() {
            "ActiveSAS"
        } else if self.managed_by.is_some() {
            "Attached"
        } else {
            "Unattached"
        }
    }
}

/// Classic (Service Management) objects of a subscription.
#[derive(Debug, Default)]
pub(crate) struct Classic {
    pub services: BTreeMap<String, CloudService>,
    pub vnets: BTreeMap<String, ClassicVnet>,
}

/// A classic cloud service (hosted service).
#[derive(Debug, Clone)]
pub(crate) struct CloudService {
    pub name: String,
    pub location: String,
    pub label: String,
    pub created: String,
    pub deployment: Option<Deployment>,
}

/// The production deployment of a cloud service.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub name: String,
    pub private_id: String,
    pub vnet: Option<String>,
    pub roles: Vec<Role>,
    pub created: String,
}

/// Power state of a classic role instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClassicPower {
    Starting,
    Started,
    Stopping,
    Stopped,
}

impl ClassicPower {
    pub fn as_str(self) -> &'static str {
        match self {
            ClassicPower::Starting => "Starting",
            ClassicPower::Started => "Started",
            ClassicPower::Stopping => "Stopping",
            ClassicPower::Stopped => "Stopped",
        }
    }
}

/// A classic persistent VM role with its single instance.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub name: String,
    pub size: String,
    pub os: String,
    pub subnet: Option<String>,
    pub ip: String,
    pub power: ClassicPower,
    pub instance_status: String,
    pub os_disk: ClassicDisk,
    pub data_disks: Vec<ClassicDisk>,
    pub deleting: bool,
}

/// A classic VHD: a page blob in the customer's storage account.
#[derive(Debug, Clone)]
pub(crate) struct ClassicDisk {
    pub name: String,
    pub lun: Option<u32>,
    pub size_bytes: u64,
    pub blob: BlobRef,
}

/// A classic virtual network site.
#[derive(Debug, Clone)]
pub(crate) struct ClassicVnet {
    pub name: String,
    pub id: String,
    pub location: String,
    pub address_prefixes: Vec<String>,
    pub subnets: Vec<(String, String)>,
}

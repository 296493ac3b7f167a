//! The TOML description a lab site is built from.
//!
//! ```toml
//! mode = "vcenter"              # or "esxi"
//! datacenter = "dc1"            # vCenter only; ESXi always calls it ha-datacenter
//! license = "vc.standard"       # licence edition key (esxBasic = free vSphere Hypervisor)
//!
//! [[hosts]]
//! name = "esx1.lab.local"
//!
//! [[datastores]]
//! name = "datastore1"
//! capacity_gib = 100
//! hosts = ["esx1.lab.local"]    # which hosts mount it (default: all)
//!
//! [[networks]]
//! name = "VM Network"
//!
//! [[vms]]
//! name = "web01"
//! host = "esx1.lab.local"
//! datastore = "datastore1"
//! guest_id = "rhel8_64Guest"
//! power = "poweredOn"
//! networks = ["VM Network"]
//! extra_config = { "disk.EnableUUID" = "TRUE" }
//! change_tracking = true
//! disks = [{ capacity_mib = 64 }]
//! snapshots = ["before-upgrade"] # existing snapshots (reprotect refuses VMs with any)
//!
//! [[users]]
//! name = "administrator@vsphere.local"
//! password = "Secret1!"
//! role = "Admin"                # Admin, ReadOnly, or NoAccess; `privileges` adds to it
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// Which product the site imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// vCenter Server (`about.apiType` = `VirtualCenter`).
    #[default]
    Vcenter,
    /// A standalone ESXi host (`about.apiType` = `HostAgent`).
    Esxi,
}

/// The whole site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// vCenter or standalone ESXi.
    #[serde(default)]
    pub mode: Mode,
    /// Datacenter name (vCenter); ESXi's is always `ha-datacenter`.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// Licence edition key as `LicenseManager.licenses[].editionKey` reports it.
    #[serde(default)]
    pub license: Option<String>,
    /// ESXi hosts; a standalone ESXi site has exactly one.
    pub hosts: Vec<HostSpec>,
    /// Datastores.
    #[serde(default)]
    pub datastores: Vec<DatastoreSpec>,
    /// Port groups.
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    /// VMs present when the site starts.
    #[serde(default)]
    pub vms: Vec<VmSpec>,
    /// Accounts that may log in.
    pub users: Vec<UserSpec>,
}

/// An ESXi host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Host name, e.g. `esx1.lab.local`.
    pub name: String,
}

/// A datastore.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatastoreSpec {
    /// Datastore name, e.g. `datastore1`.
    pub name: String,
    /// Capacity in GiB (logical; the files are sparse).
    pub capacity_gib: u64,
    /// File-system type reported in `summary.type`.
    #[serde(default = "default_fs")]
    pub r#type: String,
    /// Hosts that mount it; all hosts when omitted.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
}

fn default_fs() -> String {
    "VMFS".into()
}

/// A port group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Port group name.
    pub name: String,
    /// Hosts that have it; all hosts when omitted.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
}

/// A VM present at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// VM name, also its directory on the datastore.
    pub name: String,
    /// Host it is registered on; the first host when omitted.
    #[serde(default)]
    pub host: Option<String>,
    /// Datastore holding its files; the first datastore when omitted.
    #[serde(default)]
    pub datastore: Option<String>,
    /// Guest OS identifier (`config.guestId`).
    #[serde(default = "default_guest")]
    pub guest_id: String,
    /// `poweredOn` or `poweredOff` (default).
    #[serde(default)]
    pub power: Option<String>,
    /// Number of vCPUs.
    #[serde(default = "one")]
    pub cpus: i32,
    /// Memory in MiB.
    #[serde(default = "default_mem")]
    pub memory_mb: i64,
    /// Port groups, one NIC each.
    #[serde(default)]
    pub networks: Vec<String>,
    /// `config.extraConfig` entries.
    #[serde(default)]
    pub extra_config: BTreeMap<String, String>,
    /// Whether changed block tracking is on from the start.
    #[serde(default)]
    pub change_tracking: bool,
    /// Snapshots present at start, oldest first, each the child of the previous one.
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// Virtual disks, in unit order on the first SCSI controller.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
}

fn default_guest() -> String {
    "otherGuest64".into()
}
fn one() -> i32 {
    1
}
fn default_mem() -> i64 {
    1024
}

/// A virtual disk of a VM present at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Capacity in MiB.
    pub capacity_mib: u64,
    /// Datastore for the disk; the VM's when omitted.
    #[serde(default)]
    pub datastore: Option<String>,
}

/// An account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// User name as given to `Login`.
    pub name: String,
    /// Password.
    pub password: String,
    /// `Admin` (every privilege), `ReadOnly` (System.*), or `NoAccess`.
    #[serde(default = "default_role")]
    pub role: String,
    /// Privileges granted on top of the role.
    #[serde(default)]
    pub privileges: Vec<String>,
}

fn default_role() -> String {
    "Admin".into()
}

impl SiteSpec {
    /// Parses a TOML description.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

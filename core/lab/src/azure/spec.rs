//! The TOML description of a simulated Azure site: subscriptions, Resource Manager groups
//! with networks and VMs, and classic networks and VMs.
//!
//! ```toml
//! [[subscriptions]]
//! id = "11111111-2222-3333-4444-555555555555"
//! name = "Production"
//!
//! [[subscriptions.resource_groups]]
//! name = "rg-dr"
//! location = "westeurope"
//!
//! [[subscriptions.resource_groups.virtual_networks]]
//! name = "vnet-dr"
//! address_prefixes = ["10.10.0.0/16"]
//! subnets = [{ name = "default", address_prefix = "10.10.1.0/24" }]
//!
//! [[subscriptions.resource_groups.vms]]
//! name = "web01"
//! size = "Standard_D2s_v3"
//! os_type = "Linux"
//! network = "vnet-dr"
//! subnet = "default"
//! power_state = "running"      # running | stopped | deallocated
//! os_disk_mib = 64
//! data_disks_mib = [32]
//!
//! [[subscriptions.classic.virtual_networks]]
//! name = "classic-vnet"
//! location = "West Europe"
//! address_prefixes = ["10.20.0.0/16"]
//! subnets = [{ name = "Subnet-1", address_prefix = "10.20.1.0/24" }]
//!
//! [[subscriptions.classic.vms]]
//! service = "legacy-svc"
//! name = "app01"
//! location = "West Europe"
//! size = "Small"
//! os_type = "Windows"
//! network = "classic-vnet"
//! subnet = "Subnet-1"
//! running = true
//! os_disk_mib = 64
//! data_disks_mib = [16]
//! ```

use super::error::LabError;
use serde::Deserialize;

/// A whole site description.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LabSpec {
    /// Subscriptions to create.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
}

impl LabSpec {
    /// Parses a TOML description.
    pub fn from_toml(text: &str) -> Result<Self, LabError> {
        toml::from_str(text).map_err(|e| LabError::Spec(e.to_string()))
    }
}

/// A subscription with its Resource Manager and classic contents.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Subscription id (a GUID on Azure; any non-empty text in the lab).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Resource groups.
    #[serde(default)]
    pub resource_groups: Vec<ResourceGroupSpec>,
    /// Classic objects.
    #[serde(default)]
    pub classic: ClassicSpec,
}

/// A resource group.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceGroupSpec {
    /// Group name.
    pub name: String,
    /// Azure region, e.g. `westeurope`.
    pub location: String,
    /// Virtual networks in the group.
    #[serde(default)]
    pub virtual_networks: Vec<VnetSpec>,
    /// Resource Manager VMs in the group.
    #[serde(default)]
    pub vms: Vec<VmSpec>,
}

/// A virtual network (Resource Manager or classic).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VnetSpec {
    /// Network name.
    pub name: String,
    /// Region; only used for classic networks (Resource Manager uses the group's).
    #[serde(default)]
    pub location: Option<String>,
    /// Address space.
    pub address_prefixes: Vec<String>,
    /// Subnets.
    #[serde(default)]
    pub subnets: Vec<SubnetSpec>,
}

/// A subnet.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// Subnet name.
    pub name: String,
    /// Address prefix, e.g. `10.10.1.0/24`.
    pub address_prefix: String,
}

/// Power state a Resource Manager VM starts in.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PowerSpec {
    /// Running.
    #[default]
    Running,
    /// Stopped (still allocated).
    Stopped,
    /// Stopped and deallocated.
    Deallocated,
}

/// A Resource Manager VM, created with a NIC `{name}-nic`, an OS disk `{name}-osdisk` and
/// data disks `{name}-data{lun}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// VM name.
    pub name: String,
    /// VM size.
    #[serde(default = "default_size")]
    pub size: String,
    /// `Linux` or `Windows`.
    #[serde(default = "default_os")]
    pub os_type: String,
    /// Virtual network (in the same group) of the NIC.
    pub network: String,
    /// Subnet of that network.
    pub subnet: String,
    /// Initial power state.
    #[serde(default)]
    pub power_state: PowerSpec,
    /// OS disk size in MiB.
    #[serde(default = "default_disk_mib")]
    pub os_disk_mib: u64,
    /// Data disk sizes in MiB, LUN 0, 1, ….
    #[serde(default)]
    pub data_disks_mib: Vec<u64>,
}

/// Classic objects of a subscription.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClassicSpec {
    /// Virtual network sites.
    #[serde(default)]
    pub virtual_networks: Vec<VnetSpec>,
    /// VMs; each becomes a role in the production deployment of its cloud service.
    #[serde(default)]
    pub vms: Vec<ClassicVmSpec>,
}

/// A classic VM (persistent VM role) with VHDs in the lab's storage account.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClassicVmSpec {
    /// Cloud service (created when missing).
    pub service: String,
    /// Role name.
    pub name: String,
    /// Region of the cloud service.
    #[serde(default = "default_classic_location")]
    pub location: String,
    /// Role size.
    #[serde(default = "default_classic_size")]
    pub size: String,
    /// `Linux` or `Windows`.
    #[serde(default = "default_os")]
    pub os_type: String,
    /// Classic virtual network of the deployment.
    #[serde(default)]
    pub network: Option<String>,
    /// Subnet in that network.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Whether the role starts running.
    #[serde(default = "default_true")]
    pub running: bool,
    /// OS disk size in MiB.
    #[serde(default = "default_disk_mib")]
    pub os_disk_mib: u64,
    /// Data disk sizes in MiB.
    #[serde(default)]
    pub data_disks_mib: Vec<u64>,
}

fn default_size() -> String {
    "Standard_D2s_v3".into()
}
fn default_os() -> String {
    "Linux".into()
}
fn default_disk_mib() -> u64 {
    64
}
fn default_classic_location() -> String {
    "West Europe".into()
}
fn default_classic_size() -> String {
    "Small".into()
}
fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_example_parses() {
        let doc = include_str!("spec.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let spec = LabSpec::from_toml(&doc).unwrap();
        let sub = &spec.subscriptions[0];
        assert_eq!(sub.resource_groups[0].vms[0].data_disks_mib, vec![32]);
        assert_eq!(sub.classic.vms[0].network.as_deref(), Some("classic-vnet"));
        assert_eq!(sub.resource_groups[0].vms[0].power_state, PowerSpec::Running);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = LabSpec::from_toml("[[subscriptions]]\nid = \"s\"\ncolour = \"red\"\n").unwrap_err();
        assert!(matches!(err, LabError::Spec(m) if m.contains("colour")));
    }
}

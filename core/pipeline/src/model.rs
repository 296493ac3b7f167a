//! What the configuration server stores: protected items, replication groups, policies,
//! process servers, master targets, recovery points and events.

use serde::{Deserialize, Serialize};

/// Which way an item replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Forward: the on-premises VM to Azure.
    OnPremToAzure,
    /// Failback: the Azure VM to the on-premises site.
    AzureToOnPrem,
}

impl Direction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::OnPremToAzure => "on-prem-to-azure",
            Direction::AzureToOnPrem => "azure-to-on-prem",
        }
    }

    /// Parses a stored name (unknown names read as forward).
    pub fn parse(s: &str) -> Self {
        if s == "azure-to-on-prem" { Direction::AzureToOnPrem } else { Direction::OnPremToAzure }
    }

    /// An arrow for people: `on-prem→azure`.
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::OnPremToAzure => "on-prem→azure",
            Direction::AzureToOnPrem => "azure→on-prem",
        }
    }
}

/// Where a protected item is in the round trip of the reference article.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemState {
    /// Being protected for the first time (initial sync running).
    Protecting,
    /// Replicating in `direction` with recovery points.
    Protected,
    /// Running in Azure after a failover.
    FailedOver,
    /// Replicating back: initial resync running.
    Reprotecting,
    /// Running on-premises again; the Azure VM still exists until commit.
    FailedBack,
    /// Failback committed: the Azure VMs are gone and the item is unprotected.
    Committed,
}

impl ItemState {
    /// The state as the design names it, with the direction where it matters.
    pub fn label(self, direction: Direction) -> String {
        match self {
            ItemState::Protecting => format!("protecting({})", direction.arrow()),
            ItemState::Protected => format!("protected({})", direction.arrow()),
            ItemState::FailedOver => "failed-over(azure)".into(),
            ItemState::Reprotecting => format!("reprotecting({})", direction.arrow()),
            ItemState::FailedBack => "failed-back(on-prem, uncommitted)".into(),
            ItemState::Committed => "committed".into(),
        }
    }
}

/// A VMware VM or a physical server: physical sources fail back only to new VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A VMware VM.
    #[default]
    VmwareVm,
    /// A physical server protected with an agent.
    Physical,
}

/// One disk of a protected item and where its replica is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskMap {
    /// The disk's label on the on-premises VM.
    pub label: String,
    /// Capacity in bytes (both sides).
    pub capacity_bytes: u64,
    /// The disk id on the on-premises VM.
    pub onprem_disk: Option<String>,
    /// The disk id in Azure: the replica (forward) or the failed-over VM's disk.
    pub azure_disk: Option<String>,
    /// The change id of the replicating side after the newest cycle.
    pub change_id: Option<String>,
}

/// A protected item: a VM (or physical server) and its replication state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The item's name (the on-premises VM name).
    pub name: String,
    /// Its replication group (a group of one is named after the item).
    pub group: String,
    /// Position in the recovery plan's boot order.
    pub boot_order: u32,
    /// VMware VM or physical.
    pub source_kind: SourceKind,
    /// The guest OS identifier.
    pub guest_os: String,
    /// CPUs and memory, for the VMs a failover creates.
    pub cpu_count: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The on-premises site.
    pub onprem_site: String,
    /// The on-premises VM id (the original, or the alternate-location VM).
    pub onprem_vm: Option<String>,
    /// The on-premises VM id this item was first protected from.
    pub original_vm: Option<String>,
    /// The Azure site.
    pub azure_site: String,
    /// The Azure VM id once failed over.
    pub azure_vm: Option<String>,
    /// The state.
    pub state: ItemState,
    /// The replication direction of the state.
    pub direction: Direction,
    /// Whether failback goes to the original VM or to a new one (set by reprotect).
    pub failback_to_alternate: bool,
    /// Disks, in the VM's order (the first boots).
    pub disks: Vec<DiskMap>,
}

/// A replication group: items that cut recovery points together on one master target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// The current replication direction.
    pub direction: Direction,
    /// Incremented by every protect and reprotect: each generation has its own journal
    /// and recovery points.
    pub generation: u32,
    /// The master target receiving this generation (failback direction).
    pub master_target: Option<String>,
    /// The process server sending it.
    pub process_server: Option<String>,
    /// The retention journal's directory.
    pub journal_dir: Option<String>,
    /// The Azure network failed-over VMs join.
    #[serde(default)]
    pub azure_network: Option<String>,
    /// Snapshot name of the newest cycle per VM id (the change-id base where the backend
    /// diffs snapshots, as Azure does).
    pub base_snapshots: Vec<(String, String)>,
    /// A counter for unique snapshot names.
    pub snapshot_counter: u64,
    /// When the newest app-consistent point was cut.
    pub last_app_ms: Option<u64>,
    /// When the newest point was cut.
    pub last_point_ms: Option<u64>,
    /// Whether an RPO breach event is open (so it is raised once).
    pub rpo_breached: bool,
}

impl Group {
    /// A new group replicating forward.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            direction: Direction::OnPremToAzure,
            generation: 0,
            master_target: None,
            process_server: None,
            journal_dir: None,
            azure_network: None,
            base_snapshots: Vec::new(),
            snapshot_counter: 0,
            last_app_ms: None,
            last_point_ms: None,
            rpo_breached: false,
        }
    }

    /// The base snapshot recorded for a VM.
    pub fn base_snapshot(&self, vm: &str) -> Option<&str> {
        self.base_snapshots.iter().find(|(v, _)| v == vm).map(|(_, s)| s.as_str())
    }

    /// Records the base snapshot of a VM.
    pub fn set_base_snapshot(&mut self, vm: &str, snapshot: Option<String>) {
        self.base_snapshots.retain(|(v, _)| v != vm);
        if let Some(s) = snapshot {
            self.base_snapshots.push((vm.to_string(), s));
        }
    }
}

/// A replication policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// The direction it governs.
    pub direction: Direction,
    /// A point older than this raises an RPO event.
    pub rpo_threshold_s: u64,
    /// How long points are kept.
    pub retention_s: u64,
    /// How often a cycle quiesces for an app-consistent point.
    pub app_consistent_s: u64,
}

impl Policy {
    /// The forward policy's defaults.
    pub fn forward_default() -> Self {
        Self { name: "forward".into(), direction: Direction::OnPremToAzure, rpo_threshold_s: 900, retention_s: 86_400, app_consistent_s: 3600 }
    }

    /// The failback policy of the reference article, fixed.
    pub fn failback() -> Self {
        Self { name: "failback".into(), direction: Direction::AzureToOnPrem, rpo_threshold_s: 900, retention_s: 86_400, app_consistent_s: 3600 }
    }
}

/// A process server (in Azure for failback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessServer {
    /// Its name.
    pub name: String,
    /// The site it runs in.
    pub site: String,
    /// Its VM id.
    pub vm: String,
    /// `azure-resource-manager` or `azure-classic`.
    pub deployment_model: String,
    /// The network id it is in.
    pub network: String,
    /// The last heartbeat, ms since the epoch.
    pub heartbeat_ms: Option<u64>,
}

/// A master target (on-premises, receiving failback data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterTarget {
    /// Its name.
    pub name: String,
    /// The on-premises site.
    pub site: String,
    /// Its VM id.
    pub vm: String,
    /// Its ESX host id.
    pub host: Option<String>,
    /// The datastore it was on when registered (a change means storage vMotion).
    pub registered_datastore: Option<String>,
    /// The retention volume (a directory on this machine in the single-machine setup).
    pub retention_path: String,
    /// The OS family of the master target (`windows` or `linux`).
    pub os_family: String,
}

/// A recovery point as the database lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointRecord {
    /// The journal sequence.
    pub seq: u64,
    /// When it was cut.
    pub time_ms: u64,
    /// `crash` or `app`.
    pub consistency: String,
    /// The direction it was replicated in.
    pub direction: String,
}

/// An event: RPO breaches, job outcomes, repairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its id.
    pub id: u64,
    /// When.
    pub time_ms: u64,
    /// `info`, `warning` or `error`.
    pub severity: String,
    /// The object it is about.
    pub object: String,
    /// A stable kind, such as `rpo-breach`.
    pub kind: String,
    /// What happened.
    pub message: String,
}

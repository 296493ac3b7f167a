//! Prerequisite rules engine: decides, before a job changes anything, whether an operation on a
//! protected item can succeed, and reports **every** failed prerequisite at once, each with the
//! object it concerns and the exact fix.
//!
//! The engine is pure: the job runner gathers [`PrereqFacts`] from the adapters (vSphere, Azure)
//! and the configuration database, then calls [`check`]. Keeping I/O out of here is what lets
//! every rule be tested in isolation and lets a job re-run the check cheaply after the operator
//! fixes something. [`ensure`] wraps the result as a [`PrereqError`] whose `Display` is the
//! terminal rendering from [`render`], so a job can simply return it.
//!
//! # Facts the engine cannot judge
//! A fact that is `None` means "not gathered" and the rules comparing it are skipped (a rule never
//! guesses). The exceptions are presence facts, where absence *is* the failure: a missing
//! [`PrereqFacts::process_server`], [`PrereqFacts::master_target`] or
//! [`MasterTargetFacts::retention_volume`] fails its rule, and a process server with no heartbeat
//! at all ([`ProcessServerFacts::heartbeat_age_secs`] `None`) is stale. The caller must therefore
//! fill the facts each applicable rule (table below) needs.
//!
//! # Which rules gate which operation
//! Failback is `Failover { direction: AzureToOnPrem, .. }` (any kind, including test failover).
//! "A→O" is Azure → on-prem, "O→A" is on-prem → Azure. ✓ = the rule runs; a blank cell = it is
//! not evaluated for that operation.
//!
//! | rule id                          | Reprotect A→O original VM | Reprotect A→O alternate | Failover A→O (failback) | Reprotect O→A | Failover O→A | Commit | Protect |
//! |----------------------------------|:-:|:-:|:-:|:-:|:-:|:-:|:-:|
//! | `item-not-in-database`           | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |
//! | `process-server-missing`         | ✓ | ✓ |   | ✓ |   |   | ✓ |
//! | `process-server-deployment-model`| ✓ | ✓ |   |   |   |   |   |
//! | `process-server-network`         | ✓ | ✓ |   |   |   |   |   |
//! | `process-server-heartbeat`       | ✓ | ✓ |   | ✓ |   |   | ✓ |
//! | `master-target-missing`          | ✓ | ✓ |   |   |   |   |   |
//! | `master-target-host-not-discovered` | ✓ | ✓ |   |   |   |   |   |
//! | `master-target-enable-uuid`      | ✓ | ✓ |   |   |   |   |   |
//! | `master-target-storage-vmotioned`| ✓ | ✓ |   |   |   |   |   |
//! | `retention-volume-missing`       | ✓ | ✓ |   |   |   |   |   |
//! | `retention-volume-in-use`        | ✓ | ✓ |   |   |   |   |   |
//! | `retention-volume-locked`        | ✓ | ✓ |   |   |   |   |   |
//! | `retention-volume-cache-volume`  | ✓ | ✓ |   |   |   |   |   |
//! | `retention-volume-fat-filesystem`| ✓ | ✓ |   |   |   |   |   |
//! | `retention-volume-zero-capacity` | ✓ | ✓ |   |   |   |   |   |
//! | `datastore-unreachable`          | ✓ | ✓ |   |   |   |   |   |
//! | `vm-has-snapshots`               | ✓ |   |   |   |   |   |   |
//! | `vcenter-read-only-credential`   | ✓ | ✓ |   |   |   |   |   |
//! | `free-esxi-edition`              | ✓ | ✓ | ✓ |   |   |   |   |
//! | `physical-to-original-vm`        | ✓ |   | ✓ (if reprotected to the original VM) | | | | |
//! | `windows-2008-r2-sp1-physical`   | ✓ | ✓ | ✓ |   |   |   |   |
//! | `group-outside-recovery-plan`    | ✓ | ✓ |   | ✓ |   |   |   |
//! | `group-master-targets-differ`    | ✓ | ✓ |   | ✓ |   |   |   |
//!
//! Why these cells (all from the reference article, `failback-azure-to-vmware.md`):
//! - The configuration database must hold the item for *any* operation: without its record
//!   there is nothing to act on, and failback in particular "cannot succeed".
//! - Reprotect A→O is where the operator picks the Azure process server, the on-prem master
//!   target, its retention drive and the datastore, so all their rules, the datastore-discovery
//!   credential ("during reprotection … datastores cannot be discovered") and the snapshot rule
//!   ("if snapshots are present on a VM, reprotection fails"; only the original VM exists on-prem
//!   to have snapshots) gate it.
//! - Reprotect O→A and Protect also send data through a process server (stage 3: "give the value
//!   of the Process Server"), and a process server "should also have a heartbeat", so presence and
//!   heartbeat gate them too; deployment model and Azure network only concern the *Azure* process
//!   server of the A→O direction.
//! - A free ESXi edition lets failover succeed but failback fail, and physical / Windows Server
//!   2008 R2 SP1 physical sources cannot fail back (to the original machine / at all), so those
//!   rules gate both the reprotect toward on-prem (to stop early) and the failback itself.
//! - "If you have a replication group, you can reprotect it only by using a recovery plan", and
//!   group members must be "protected back with the same master target": both gate reprotect in
//!   either direction, since Homeward's consistency groups always share one master target.
//!
//! [`Rule::applies_to`] encodes this table; [`check`] consults it, so the table and the code cannot
//! drift apart without the `rule_table_matches_rustdoc` test noticing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A process-server heartbeat older than this many seconds is stale (15 minutes).
///
/// Why 15 minutes: the reference notes a freshly registered process server can take 10 to 15
/// minutes to appear, and the failback policy's RPO threshold is also 15 minutes; a process server
/// silent for longer than that cannot be keeping the RPO, so reprotecting through it would fail.
pub const PROCESS_SERVER_HEARTBEAT_STALE_SECS: u64 = 15 * 60;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Direction of replication or failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From Azure back to the on-premises VMware site (failback direction).
    AzureToOnPrem,
    /// From the on-premises site to Azure (forward direction).
    OnPremToAzure,
}

/// Where a reprotect Azure → on-prem replicates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReprotectTarget {
    /// The original on-prem VM, if it still exists (only deltas are sent).
    OriginalVm,
    /// A new VM on the master target's ESX host and datastore.
    AlternateLocation,
}

/// Kind of failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverKind {
    /// Source is shut down cleanly and synchronised first.
    Planned,
    /// Source may be gone; recover from the chosen recovery point.
    Unplanned,
    /// Recovery into an isolated copy; the source keeps running.
    Test,
}

/// The operation a job is about to perform; decides which rules run (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    /// Start replicating in `direction` after a failover (stage 1 or stage 3).
    Reprotect {
        /// Replication direction after the reprotect.
        direction: Direction,
        /// Target of an Azure → on-prem reprotect; ignored for on-prem → Azure.
        target: ReprotectTarget,
    },
    /// Fail over in `direction`; `AzureToOnPrem` is a failback (stage 2).
    Failover {
        /// Failover direction.
        direction: Direction,
        /// Planned, unplanned or test.
        kind: FailoverKind,
    },
    /// Commit a failover (deletes the machines recovered on the other side).
    Commit,
    /// Initial protection of an on-prem item to Azure.
    Protect,
}

impl Operation {
    /// True for a failback: a failover from Azure to on-prem.
    pub fn is_failback(&self) -> bool {
        matches!(
            self,
            Operation::Failover {
                direction: Direction::AzureToOnPrem,
                ..
            }
        )
    }

    /// True for a reprotect from Azure to on-prem (stage 1 of failback).
    pub fn is_reprotect_to_on_prem(&self) -> bool {
        matches!(
            self,
            Operation::Reprotect {
                direction: Direction::AzureToOnPrem,
                ..
            }
        )
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::AzureToOnPrem => "Azure -> on-prem",
            Direction::OnPremToAzure => "on-prem -> Azure",
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Reprotect {
                direction: d @ Direction::AzureToOnPrem,
                target,
            } => {
                let t = match target {
                    ReprotectTarget::OriginalVm => "original VM",
                    ReprotectTarget::AlternateLocation => "alternate location",
                };
                write!(f, "reprotect ({d}, {t})")
            }
            Operation::Reprotect { direction, .. } => write!(f, "reprotect ({direction})"),
            Operation::Failover { direction, kind } => {
                let k = match kind {
                    FailoverKind::Planned => "planned",
                    FailoverKind::Unplanned => "unplanned",
                    FailoverKind::Test => "test",
                };
                let what = if self.is_failback() {
                    "failback"
                } else {
                    "failover"
                };
                write!(f, "{k} {what} ({direction})")
            }
            Operation::Commit => f.write_str("commit"),
            Operation::Protect => f.write_str("protect"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Facts
// ---------------------------------------------------------------------------------------------

/// Everything the rules look at, gathered by the job runner before the check.
///
/// Optional parts are `None` when they do not apply or were not gathered; see the module docs for
/// how `None` is judged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrereqFacts {
    /// The protected item the operation is for.
    pub item: ItemFacts,
    /// The process server selected for the item (in Azure for reprotect Azure → on-prem).
    pub process_server: Option<ProcessServerFacts>,
    /// The on-prem master target selected for the item.
    pub master_target: Option<MasterTargetFacts>,
    /// The original on-prem VM (for reprotect to the original VM).
    pub original_vm: Option<OriginalVmFacts>,
    /// The datastore chosen in the reprotect request for new disks (alternate location, or the
    /// original VM no longer exists).
    pub target_datastore: Option<DatastoreFacts>,
    /// The vCenter (or standalone ESXi) whose credential discovers the datastores.
    pub vcenter: Option<VcenterFacts>,
    /// The on-prem ESXi host/site the item fails back to.
    pub on_prem_site: Option<OnPremSiteFacts>,
    /// The item's replication group, when it has one.
    pub group: Option<GroupFacts>,
}

/// What kind of machine the item was protected as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A VMware virtual machine.
    #[default]
    VmwareVm,
    /// A physical Windows or Linux server (fails back as a new VMware VM).
    PhysicalServer,
}

/// Azure deployment model of a VM, network or process server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentModel {
    /// Azure Service Management (classic).
    Classic,
    /// Azure Resource Manager.
    ResourceManager,
}

impl fmt::Display for DeploymentModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeploymentModel::Classic => "classic",
            DeploymentModel::ResourceManager => "Resource Manager",
        })
    }
}

/// Facts about the protected item itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemFacts {
    /// The item's id or name as the operator gave it (used in every message).
    pub name: String,
    /// Whether the configuration database holds a record for this item.
    pub in_database: bool,
    /// VMware VM or physical server, as protected.
    pub source_kind: SourceKind,
    /// Guest OS string, e.g. the vSphere guest id `windows2008r2srv_64Guest` or an agent-reported
    /// name such as `Windows Server 2008 R2 Standard`.
    pub guest_os: String,
    /// Windows service-pack level when known (`Some(1)` = SP1); an "SP1" / "Service Pack 1" in
    /// `guest_os` counts as well.
    pub service_pack: Option<u32>,
    /// The replication group the item belongs to, if any.
    pub replication_group: Option<String>,
    /// Whether the request came through a recovery plan (rather than for the item alone).
    pub via_recovery_plan: bool,
    /// Deployment model the item was recovered with in Azure.
    pub azure_deployment_model: Option<DeploymentModel>,
    /// Azure virtual network (resource id) the item was recovered into.
    pub azure_network_id: Option<String>,
    /// Target chosen at the last reprotect Azure → on-prem, as recorded in the database; lets a
    /// failback re-check the physical-to-original-VM rule.
    pub failback_target: Option<ReprotectTarget>,
}

/// Facts about the selected process server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessServerFacts {
    /// Process server name.
    pub name: String,
    /// Whether it is registered with the configuration server.
    pub registered: bool,
    /// Its deployment model (follows the Azure network it was deployed to).
    pub deployment_model: Option<DeploymentModel>,
    /// Azure virtual network (resource id) it is deployed in.
    pub network_id: Option<String>,
    /// Seconds since its last heartbeat; `None` = never heartbeated.
    pub heartbeat_age_secs: Option<u64>,
}

/// Operating-system family of a master target (decides the default retention volume).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestFamily {
    /// Windows; the management server's built-in master target is Windows.
    #[default]
    Windows,
    /// Linux (CentOS master target).
    Linux,
}

/// Facts about the selected on-prem master target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MasterTargetFacts {
    /// Master target (VM) name.
    pub name: String,
    /// Whether it is registered with the configuration server.
    pub registered: bool,
    /// Its OS family.
    pub os_family: GuestFamily,
    /// Managed-object id of the ESX host it runs on, e.g. `host-42`.
    pub esx_host_id: Option<String>,
    /// Display name of that host (falls back to the id in messages).
    pub esx_host_name: Option<String>,
    /// Whether that host has been discovered into the inventory.
    pub esx_host_discovered: bool,
    /// Raw value of `disk.EnableUUID` in the VM's extra-config; `None` = the row is absent.
    pub disk_enable_uuid: Option<String>,
    /// Datastore the master target was registered on.
    pub registered_datastore: Option<String>,
    /// Datastore it is on now (differs ⇒ it was storage-vMotioned).
    pub current_datastore: Option<String>,
    /// The retention volume selected for the reprotect; `None` = none exists/selected.
    pub retention_volume: Option<RetentionVolumeFacts>,
}

/// Facts about a master target's retention volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionVolumeFacts {
    /// Path or drive, e.g. `R:` or `/mnt/retention`.
    pub path: String,
    /// File-system type as reported by the OS, e.g. `NTFS`, `ext4`, `vfat`.
    pub filesystem: String,
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// Whether another process holds it locked.
    pub locked: bool,
    /// What else uses it (another item's replica target, another master target's retention, …);
    /// empty = not used for anything else.
    pub in_use_by: Vec<String>,
    /// Whether it is the master target's cache volume (its install or data directory is on it).
    /// A flag, not paths, because only the caller's mount table knows which volume a directory
    /// is on.
    pub is_cache_volume: bool,
}

/// A datastore and which ESX hosts can reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatastoreFacts {
    /// Managed-object id, e.g. `datastore-12`.
    pub id: String,
    /// Display name, e.g. `ds-gold-01`.
    pub name: String,
    /// Ids of the ESX hosts that can access it (vSphere `host` mounts).
    pub accessible_from: Vec<String>,
}

/// Facts about the original on-prem VM (reprotect to the original VM).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OriginalVmFacts {
    /// VM name in vSphere.
    pub name: String,
    /// Whether it still exists; if not, reprotect creates a new VM and the VM's own datastore and
    /// snapshot rules do not apply.
    pub exists: bool,
    /// Datastores holding its disks.
    pub datastores: Vec<DatastoreFacts>,
    /// Names of its snapshots.
    pub snapshots: Vec<String>,
}

/// Outcome of datastore discovery with the stored vCenter credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatastoreDiscovery {
    /// Datastores were listed and browsed.
    #[default]
    Succeeded,
    /// vSphere answered permission-denied (`NoPermission`): a read-only user.
    PermissionDenied,
}

/// Facts about the vCenter (or standalone ESXi) credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VcenterFacts {
    /// vCenter server (or ESXi host) address.
    pub server: String,
    /// How datastore discovery went.
    pub datastore_discovery: DatastoreDiscovery,
}

/// ESXi licence edition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EsxiEdition {
    /// A paid licence (any edition other than the free hypervisor).
    #[default]
    Licensed,
    /// The evaluation licence (enough for failback).
    Evaluation,
    /// ESXi free edition / vSphere Hypervisor (free): failover works, failback does not.
    Free,
}

/// Facts about the on-prem site/host the item fails back to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OnPremSiteFacts {
    /// Site or ESXi host name.
    pub name: String,
    /// A standalone ESXi host (no vCenter): the master target's host must be discovered before
    /// reprotect.
    pub standalone_esxi: bool,
    /// Licence edition of the host(s).
    pub esxi_edition: EsxiEdition,
}

/// One member of a replication group and the master target chosen for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupMember {
    /// Member item name.
    pub item: String,
    /// Master target chosen for it; `None` = not chosen yet (ignored).
    pub master_target: Option<String>,
}

/// Facts about the item's replication group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupFacts {
    /// Group name.
    pub name: String,
    /// All members (including the item), with their master targets.
    pub members: Vec<GroupMember>,
}

// ---------------------------------------------------------------------------------------------
// Rules and failures
// ---------------------------------------------------------------------------------------------

/// Declares [`Rule`] with one stable id per variant, kept in one place so that `Display`,
/// `FromStr`, serde and [`Rule::ALL`] cannot disagree.
macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident => $id:literal, )+) => {
        /// A prerequisite rule. Its kebab-case id ([`Rule::id`]) is stable: scripts and
        /// `--json` output match on it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Rule {
            $( $(#[$doc])* #[serde(rename = $id)] $variant, )+
        }

        impl Rule {
            /// Every rule, in the order [`check`] reports them.
            pub const ALL: &'static [Rule] = &[ $( Rule::$variant, )+ ];

            /// The stable kebab-case id.
            pub fn id(self) -> &'static str {
                match self { $( Rule::$variant => $id, )+ }
            }
        }

        impl FromStr for Rule {
            type Err = UnknownRule;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $( $id => Ok(Rule::$variant), )+ _ => Err(UnknownRule(s.to_owned())) }
            }
        }
    };
}

rules! {
    /// The item is not in the configuration database.
    ItemNotInDatabase => "item-not-in-database",
    /// No registered process server is selected.
    ProcessServerMissing => "process-server-missing",
    /// Process server and VM deployment models differ (classic vs Resource Manager).
    ProcessServerDeploymentModel => "process-server-deployment-model",
    /// Process server is not in the VM's Azure network.
    ProcessServerNetwork => "process-server-network",
    /// Process server heartbeat is stale or absent.
    ProcessServerHeartbeat => "process-server-heartbeat",
    /// No registered master target is selected.
    MasterTargetMissing => "master-target-missing",
    /// The master target's ESX host is not discovered.
    MasterTargetHostNotDiscovered => "master-target-host-not-discovered",
    /// `disk.EnableUUID` is not `TRUE` on the master target.
    MasterTargetEnableUuid => "master-target-enable-uuid",
    /// The master target was storage-vMotioned.
    MasterTargetStorageVmotioned => "master-target-storage-vmotioned",
    /// The master target has no retention volume.
    RetentionVolumeMissing => "retention-volume-missing",
    /// The retention volume is used for something else.
    RetentionVolumeInUse => "retention-volume-in-use",
    /// The retention volume is locked.
    RetentionVolumeLocked => "retention-volume-locked",
    /// The retention volume is the master target's cache (install) volume.
    RetentionVolumeCacheVolume => "retention-volume-cache-volume",
    /// The retention volume is FAT/FAT32.
    RetentionVolumeFatFilesystem => "retention-volume-fat-filesystem",
    /// The retention volume has zero capacity.
    RetentionVolumeZeroCapacity => "retention-volume-zero-capacity",
    /// A datastore is not reachable from the master target's ESX host.
    DatastoreUnreachable => "datastore-unreachable",
    /// The on-prem VM has snapshots.
    VmHasSnapshots => "vm-has-snapshots",
    /// The vCenter credential cannot discover datastores (read-only user).
    VcenterReadOnlyCredential => "vcenter-read-only-credential",
    /// The on-prem ESXi runs a free edition.
    FreeEsxiEdition => "free-esxi-edition",
    /// A physical source cannot fail back to the original machine.
    PhysicalToOriginalVm => "physical-to-original-vm",
    /// A Windows Server 2008 R2 SP1 physical source cannot fail back.
    Windows2008R2Sp1Physical => "windows-2008-r2-sp1-physical",
    /// A replication-group member is reprotected outside a recovery plan.
    GroupOutsideRecoveryPlan => "group-outside-recovery-plan",
    /// Replication-group members use different master targets.
    GroupMasterTargetsDiffer => "group-master-targets-differ",
}

/// Error from parsing an unknown rule id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown prerequisite rule id `{0}`")]
pub struct UnknownRule(pub String);

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Rule {
    /// Whether this rule is evaluated for `op` (the module-level table, as code).
    ///
    /// A rule that applies may still pass or be skipped for lack of facts.
    pub fn applies_to(self, op: &Operation) -> bool {
        use Rule::*;
        let reprotect_to_on_prem = op.is_reprotect_to_on_prem();
        let reprotect_original = matches!(
            op,
            Operation::Reprotect {
                direction: Direction::AzureToOnPrem,
                target: ReprotectTarget::OriginalVm
            }
        );
        let reprotect_any = matches!(op, Operation::Reprotect { .. });
        let failback = op.is_failback();
        match self {
            ItemNotInDatabase => true,
            ProcessServerMissing | ProcessServerHeartbeat => {
                reprotect_any || matches!(op, Operation::Protect)
            }
            ProcessServerDeploymentModel
            | ProcessServerNetwork
            | MasterTargetMissing
            | MasterTargetHostNotDiscovered
            | MasterTargetEnableUuid
            | MasterTargetStorageVmotioned
            | RetentionVolumeMissing
            | RetentionVolumeInUse
            | RetentionVolumeLocked
            | RetentionVolumeCacheVolume
            | RetentionVolumeFatFilesystem
            | RetentionVolumeZeroCapacity
            | DatastoreUnreachable
            | VcenterReadOnlyCredential => reprotect_to_on_prem,
            VmHasSnapshots => reprotect_original,
            FreeEsxiEdition | Windows2008R2Sp1Physical => reprotect_to_on_prem || failback,
            PhysicalToOriginalVm => reprotect_original || failback,
            GroupOutsideRecoveryPlan | GroupMasterTargetsDiffer => reprotect_any,
        }
    }
}

/// One failed prerequisite: which rule, on which object, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrereqFailure {
    /// The rule that failed.
    pub rule: Rule,
    /// The object concerned, named, e.g. `master target mt-01`.
    pub object: String,
    /// What is wrong, naming the object.
    pub message: String,
    /// Exactly what the operator should do.
    pub fix: String,
}

/// A job's prerequisite check failed; `Display` is [`render`] of all failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.failures))]
pub struct PrereqError {
    /// The operation that was refused.
    pub operation: Operation,
    /// Every failure (never empty).
    pub failures: Vec<PrereqFailure>,
}

impl PrereqError {
    /// The ids of the failed rules, for callers that branch on the kind.
    pub fn rules(&self) -> Vec<Rule> {
        self.failures.iter().map(|f| f.rule).collect()
    }
}

/// Checks every rule that applies to `op` against `facts` and returns **all** failures, in
/// [`Rule::ALL`] order; empty means the operation may proceed.
pub fn check(op: &Operation, facts: &PrereqFacts) -> Vec<PrereqFailure> {
    let mut out = Vec::new();
    for &rule in Rule::ALL {
        if rule.applies_to(op) {
            evaluate(rule, op, facts, &mut out);
        }
    }
    out
}

/// [`check`] as a `Result`, so a job can `?` it before changing anything.
pub fn ensure(op: &Operation, facts: &PrereqFacts) -> Result<(), PrereqError> {
    let failures = check(op, facts);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(PrereqError {
            operation: *op,
            failures,
        })
    }
}

/// Formats failures for a terminal: a header, then one block per failure with its rule, object,
/// problem and fix. Returns an empty string when there are no failures.
pub fn render(failures: &[PrereqFailure]) -> String {
    if failures.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "{} prerequisite check{} failed:\n",
        failures.len(),
        if failures.len() == 1 { "" } else { "s" }
    );
    for (i, f) in failures.iter().enumerate() {
        s.push_str(&format!(
            "\n[{}] {}\n  object:  {}\n  problem: {}\n  fix:     {}\n",
            i + 1,
            f.rule,
            f.object,
            f.message,
            f.fix
        ));
    }
    s
}

/// Default retention volume for a master target's OS family, as in the reference: `R:` on
/// Windows, `/mnt/retention` on Linux.
pub fn retention_volume_defaults(os: GuestFamily) -> &'static str {
    match os {
        GuestFamily::Windows => "R:",
        GuestFamily::Linux => "/mnt/retention",
    }
}

/// True when `fs` names a FAT file system: `FAT`, `FAT12`, `FAT16`, `FAT32`, `vfat`, `msdos`
/// (case-insensitive, surrounding whitespace ignored).
///
/// **exFAT is not FAT** here and returns `false`: it is a different file system, the reference
/// excludes only "FAT and FAT32", and exFAT has neither FAT32's 4 GiB file-size limit nor its
/// small-volume limits that make FAT unusable for retention journals. (NTFS, ext4 or xfs remain
/// the recommendation.)
pub fn is_fat(fs: &str) -> bool {
    let fs = fs.trim().to_ascii_lowercase();
    matches!(
        fs.as_str(),
        "fat" | "fat12" | "fat16" | "fat32" | "vfat" | "msdos"
    )
}

// ---------------------------------------------------------------------------------------------
// Rule evaluation
// ---------------------------------------------------------------------------------------------

fn fail(out: &mut Vec<PrereqFailure>, rule: Rule, object: String, message: String, fix: String) {
    out.push(PrereqFailure {
        rule,
        object,
        message,
        fix,
    });
}

/// Name to use for the item in messages; never empty so a message always names something.
fn item_name(facts: &PrereqFacts) -> &str {
    if facts.item.name.is_empty() {
        "(unnamed item)"
    } else {
        &facts.item.name
    }
}

/// Azure resource ids are case-insensitive, so two ids differing only in case are the same
/// network.
fn same_azure_id(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Letters and digits only, lower-cased: makes `windows2008r2srv_64Guest`, `Windows Server 2008
/// R2` and `windows 2008 R2` comparable.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Windows Server 2008 R2 by guest string: vSphere's `windows7Server64Guest` is 2008 R2 too.
fn is_windows_2008_r2(guest_os: &str) -> bool {
    let s = squash(guest_os);
    s.contains("2008r2") || s == "windows7server64guest" || s == "windows7srv64guest"
}

/// SP1 by field or by the guest string ("SP1", "Service Pack 1"). SP1 is the only service pack
/// 2008 R2 ever had, so "at least 1" is SP1.
fn is_sp1(item: &ItemFacts) -> bool {
    let s = squash(&item.guest_os);
    item.service_pack.is_some_and(|sp| sp >= 1) || s.contains("sp1") || s.contains("servicepack1")
}

fn host_label(mt: &MasterTargetFacts) -> String {
    mt.esx_host_name
        .clone()
        .or_else(|| mt.esx_host_id.clone())
        .unwrap_or_else(|| "(unknown)".into())
}

fn retention_default_hint(mt: &MasterTargetFacts) -> String {
    let os = match mt.os_family {
        GuestFamily::Windows => "Windows",
        GuestFamily::Linux => "Linux",
    };
    format!(
        "the default retention volume for {os} is {}",
        retention_volume_defaults(mt.os_family)
    )
}

fn evaluate(rule: Rule, op: &Operation, facts: &PrereqFacts, out: &mut Vec<PrereqFailure>) {
    use Rule::*;
    let item = &facts.item;
    let vm = item_name(facts);
    // Rules about the process server and master target are only meaningful when one is present;
    // its absence is reported once by the *-missing rule instead of by every dependent rule.
    let ps = facts.process_server.as_ref();
    let mt = facts.master_target.as_ref();
    let rv = mt.and_then(|m| m.retention_volume.as_ref().map(|r| (m, r)));

    match rule {
        ItemNotInDatabase => {
            if !item.in_database {
                fail(
                    out,
                    rule,
                    format!("protected item {vm}"),
                    format!(
                        "{vm} is not in the configuration database, so the {op} cannot run \
                         (failback cannot succeed without the item's record)"
                    ),
                    format!(
                        "Check the id/name {vm}; if it is right, restore the configuration database \
                         from its latest backup (`homeward backup`) on a configuration server with \
                         the same IP address, then retry the job."
                    ),
                );
            }
        }
        ProcessServerMissing => match ps {
            None => {
                let fix = if op.is_reprotect_to_on_prem() {
                    let net = item
                        .azure_network_id
                        .as_deref()
                        .unwrap_or("the VM's network");
                    format!(
                        "Deploy a failback process server in Azure in network {net} (Configuration \
                         servers > Process Server > Deploy a failback Process Server in Azure), \
                         register it with the configuration server, select it for {vm} and retry \
                         the job."
                    )
                } else {
                    format!(
                        "Select a process server registered with the configuration server for {vm} \
                         and retry the job."
                    )
                };
                fail(
                    out,
                    rule,
                    format!("process server for {vm}"),
                    format!("no process server is selected for {vm}"),
                    fix,
                );
            }
            Some(p) if !p.registered => fail(
                out,
                rule,
                format!("process server {}", p.name),
                format!(
                    "process server {} is not registered with the configuration server",
                    p.name
                ),
                format!(
                    "Run the process server setup inside {} to register it with the configuration \
                     server (it can take 10 to 15 minutes to appear), then retry the job.",
                    p.name
                ),
            ),
            Some(_) => {}
        },
        ProcessServerDeploymentModel => {
            if let (Some(p), Some(vm_model)) = (ps, item.azure_deployment_model)
                && let Some(ps_model) = p.deployment_model.filter(|m| *m != vm_model)
            {
                let net = item
                    .azure_network_id
                    .as_deref()
                    .unwrap_or("the VM's network");
                fail(
                    out,
                    rule,
                    format!("process server {}", p.name),
                    format!(
                        "process server {} uses the {ps_model} deployment model but {vm} was \
                             recovered in Azure with the {vm_model} deployment model",
                        p.name
                    ),
                    format!(
                        "Deploy a failback process server with the {vm_model} deployment model \
                             (the model follows the Azure virtual network it is deployed to: use \
                             {net}), select it for {vm} and retry the job."
                    ),
                );
            }
        }
        ProcessServerNetwork => {
            if let (Some(p), Some(vm_net)) = (ps, item.azure_network_id.as_deref())
                && let Some(ps_net) = p
                    .network_id
                    .as_deref()
                    .filter(|n| !same_azure_id(n, vm_net))
            {
                fail(
                    out,
                    rule,
                    format!("process server {}", p.name),
                    format!(
                        "process server {} is in Azure network {ps_net} but {vm} was recovered \
                             into {vm_net}; they cannot communicate",
                        p.name
                    ),
                    format!(
                        "Deploy the failback process server into Azure network {vm_net} (the \
                             network {vm} was recovered to), select it for {vm} and retry the job."
                    ),
                );
            }
        }
        ProcessServerHeartbeat => {
            // An unregistered server is reported by process-server-missing; no heartbeat is
            // expected from it, so reporting one here would be noise.
            if let Some(p) = ps.filter(|p| p.registered) {
                let problem = match p.heartbeat_age_secs {
                    None => Some(format!(
                        "process server {} has never sent a heartbeat to the configuration server",
                        p.name
                    )),
                    Some(age) if age > PROCESS_SERVER_HEARTBEAT_STALE_SECS => Some(format!(
                        "process server {}'s last heartbeat is {} min old (stale after {} min): it \
                         is not connected to the configuration server",
                        p.name,
                        age / 60,
                        PROCESS_SERVER_HEARTBEAT_STALE_SECS / 60
                    )),
                    Some(_) => None,
                };
                if let Some(message) = problem {
                    fail(
                        out,
                        rule,
                        format!("process server {}", p.name),
                        message,
                        format!(
                            "Check that {} is running and can reach the configuration server on \
                             TCP port 443 (telnet to the configuration server on port 443, or ping \
                             it), then retry once its heartbeat is current.",
                            p.name
                        ),
                    );
                }
            }
        }
        MasterTargetMissing => match mt {
            None => fail(
                out,
                rule,
                format!("master target for {vm}"),
                format!("no master target is selected for {vm}"),
                format!(
                    "Install a master target on-premises (the management server has one by default), \
                     discover it together with its ESX host, select it for {vm} and retry the job."
                ),
            ),
            Some(m) if !m.registered => fail(
                out,
                rule,
                format!("master target {}", m.name),
                format!(
                    "master target {} is not registered with the configuration server",
                    m.name
                ),
                format!(
                    "Run the master target setup on {} and register it with the configuration \
                     server, then retry the job.",
                    m.name
                ),
            ),
            Some(_) => {}
        },
        MasterTargetHostNotDiscovered => {
            // Failback recovers onto the master target's ESX host and datastores, so the host must
            // be known. The reference spells this out for standalone ESXi and physical sources
            // ("complete discovery of the ESX host of the MT before you reprotect") and for an
            // alternate vCenter; under vCenter the fix is rediscovery rather than adding the host.
            if let Some(m) = mt.filter(|m| !m.esx_host_discovered || m.esx_host_id.is_none()) {
                let host = host_label(m);
                let standalone = facts
                    .on_prem_site
                    .as_ref()
                    .is_some_and(|s| s.standalone_esxi);
                let fix = if standalone {
                    format!(
                        "Add the standalone ESXi host {host} of master target {} to the on-prem site \
                         and complete its discovery before you reprotect, then retry.",
                        m.name
                    )
                } else {
                    let vc = facts
                        .vcenter
                        .as_ref()
                        .map(|v| v.server.as_str())
                        .unwrap_or("the vCenter");
                    format!(
                        "Run discovery of {vc} again so that ESX host {host} and master target {} \
                         appear in the inventory (when failing back to an alternate vCenter, \
                         discover that vCenter and the master target first), then retry.",
                        m.name
                    )
                };
                fail(
                    out,
                    rule,
                    format!("ESX host {host} (master target {})", m.name),
                    format!(
                        "ESX host {host} of master target {} has not been discovered{}",
                        m.name,
                        if standalone {
                            " (standalone ESXi: it must be discovered before reprotect)"
                        } else {
                            ""
                        }
                    ),
                    fix,
                );
            }
        }
        MasterTargetEnableUuid => {
            if let Some(m) = mt {
                // Exactly `true` in any case; no trimming and no quotes, as the reference warns
                // against quotation marks.
                let ok = m
                    .disk_enable_uuid
                    .as_deref()
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                if !ok {
                    let found = match &m.disk_enable_uuid {
                        None => "missing".to_owned(),
                        Some(v) => format!("set to {v:?}"),
                    };
                    fail(
                        out,
                        rule,
                        format!("master target {}", m.name),
                        format!(
                            "disk.EnableUUID is {found} on master target VM {}; it must be TRUE so \
                             its disks get a consistent UUID and mount correctly",
                            m.name
                        ),
                        format!(
                            "Shut down {}, open Edit Settings > Options > Advanced > General > \
                             Configuration Parameters, set disk.EnableUUID to TRUE (Add Row if it \
                             does not exist; no quotation marks), power it on and retry.",
                            m.name
                        ),
                    );
                }
            }
        }
        MasterTargetStorageVmotioned => {
            if let Some(m) = mt
                && let (Some(reg), Some(cur)) = (&m.registered_datastore, &m.current_datastore)
                && reg != cur
            {
                fail(
                    out,
                    rule,
                    format!("master target {}", m.name),
                    format!(
                        "master target {} was registered on datastore {reg} but is now on \
                                 {cur}: a storage-vMotioned master target cannot be used, the \
                                 failed-back VM would not come up because its disks are not made \
                                 available to it",
                        m.name
                    ),
                    format!(
                        "Storage-vMotion {} back to datastore {reg}, or re-register it \
                                 (rerun the master target setup) on {cur}, then retry.",
                        m.name
                    ),
                );
            }
        }
        RetentionVolumeMissing => {
            if let Some(m) = mt.filter(|m| m.retention_volume.is_none()) {
                fail(
                    out,
                    rule,
                    format!("master target {}", m.name),
                    format!("master target {} has no retention volume", m.name),
                    format!(
                        "Add a disk to {}, format it (NTFS/ext4/xfs) and mount it as the retention \
                         volume ({}), then retry.",
                        m.name,
                        retention_default_hint(m)
                    ),
                );
            }
        }
        RetentionVolumeInUse => {
            if let Some((m, r)) = rv.filter(|(_, r)| !r.in_use_by.is_empty()) {
                fail(
                    out,
                    rule,
                    format!("retention volume {} on master target {}", r.path, m.name),
                    format!(
                        "retention volume {} on master target {} is already used for: {}",
                        r.path,
                        m.name,
                        r.in_use_by.join(", ")
                    ),
                    format!(
                        "Choose a volume of {} that is used for nothing else ({}), or free {}, \
                         then retry.",
                        m.name,
                        retention_default_hint(m),
                        r.path
                    ),
                );
            }
        }
        RetentionVolumeLocked => {
            if let Some((m, r)) = rv.filter(|(_, r)| r.locked) {
                fail(
                    out,
                    rule,
                    format!("retention volume {} on master target {}", r.path, m.name),
                    format!(
                        "retention volume {} on master target {} is locked by another process",
                        r.path, m.name
                    ),
                    format!(
                        "Release the lock on {} (stop the process holding it) or choose another \
                         volume ({}), then retry.",
                        r.path,
                        retention_default_hint(m)
                    ),
                );
            }
        }
        RetentionVolumeCacheVolume => {
            if let Some((m, r)) = rv.filter(|(_, r)| r.is_cache_volume) {
                fail(
                    out,
                    rule,
                    format!("retention volume {} on master target {}", r.path, m.name),
                    format!(
                        "{} is the cache volume of master target {} (its installation lives there) \
                         and cannot hold retention",
                        r.path, m.name
                    ),
                    format!(
                        "Choose a volume other than the one holding the master target installation \
                         ({}); add a disk to {} if it has none, then retry.",
                        retention_default_hint(m),
                        m.name
                    ),
                );
            }
        }
        RetentionVolumeFatFilesystem => {
            if let Some((m, r)) = rv.filter(|(_, r)| is_fat(&r.filesystem)) {
                fail(
                    out,
                    rule,
                    format!("retention volume {} on master target {}", r.path, m.name),
                    format!(
                        "retention volume {} on master target {} is formatted {}; FAT and FAT32 \
                         volumes are not eligible",
                        r.path, m.name, r.filesystem
                    ),
                    format!(
                        "Back up anything on {}, format it with NTFS/ext4/xfs or choose another \
                         volume ({}), then retry.",
                        r.path,
                        retention_default_hint(m)
                    ),
                );
            }
        }
        RetentionVolumeZeroCapacity => {
            if let Some((m, r)) = rv.filter(|(_, r)| r.capacity_bytes == 0) {
                fail(
                    out,
                    rule,
                    format!("retention volume {} on master target {}", r.path, m.name),
                    format!(
                        "retention volume {} on master target {} reports a capacity of 0 bytes",
                        r.path, m.name
                    ),
                    format!(
                        "Attach a disk with space to {}, format and mount it ({}), or choose \
                         another volume, then retry.",
                        m.name,
                        retention_default_hint(m)
                    ),
                );
            }
        }
        DatastoreUnreachable => check_datastores(op, facts, vm, out),
        VmHasSnapshots => {
            if let Some(o) = facts
                .original_vm
                .as_ref()
                .filter(|o| o.exists && !o.snapshots.is_empty())
            {
                fail(
                    out,
                    rule,
                    format!("VM {}", o.name),
                    format!(
                        "on-prem VM {} has {} snapshot(s) ({}); reprotection fails while snapshots \
                         are present",
                        o.name,
                        o.snapshots.len(),
                        o.snapshots.join(", ")
                    ),
                    format!(
                        "Delete the snapshots (or the disks) of VM {}, then retry the reprotect.",
                        o.name
                    ),
                );
            }
        }
        VcenterReadOnlyCredential => {
            if let Some(v) = facts
                .vcenter
                .as_ref()
                .filter(|v| v.datastore_discovery == DatastoreDiscovery::PermissionDenied)
            {
                fail(
                    out,
                    rule,
                    format!("vCenter {}", v.server),
                    format!(
                        "the credential for vCenter {} was denied permission to browse datastores \
                         (a read-only user), so the datastores cannot be discovered for the \
                         reprotect of {vm}",
                        v.server
                    ),
                    format!(
                        "Update the vCenter credential for {} with an account that can browse \
                         datastores, then retry the job.",
                        v.server
                    ),
                );
            }
        }
        FreeEsxiEdition => {
            if let Some(s) = facts
                .on_prem_site
                .as_ref()
                .filter(|s| s.esxi_edition == EsxiEdition::Free)
            {
                fail(
                    out,
                    rule,
                    format!("ESXi host {}", s.name),
                    format!(
                        "ESXi host {} runs a free edition (ESXi / vSphere Hypervisor free): \
                         failover to Azure works but failback of {vm} does not",
                        s.name
                    ),
                    format!(
                        "Upgrade {} to an evaluation or paid licence, then retry.",
                        s.name
                    ),
                );
            }
        }
        PhysicalToOriginalVm => {
            let to_original = match op {
                Operation::Reprotect { .. } => true, // applies_to already limited it to the original VM
                _ => item.failback_target == Some(ReprotectTarget::OriginalVm),
            };
            if to_original && item.source_kind == SourceKind::PhysicalServer {
                fail(
                    out,
                    rule,
                    format!("physical server {vm}"),
                    format!(
                        "{vm} was protected as a physical server; a physical server always fails \
                         back to a new VMware VM, never to the original machine"
                    ),
                    format!(
                        "Reprotect {vm} to an alternate location (a new VM on the master target's \
                         ESX host and datastore) instead of the original VM, then fail back."
                    ),
                );
            }
        }
        Windows2008R2Sp1Physical => {
            if item.source_kind == SourceKind::PhysicalServer
                && is_windows_2008_r2(&item.guest_os)
                && is_sp1(item)
            {
                fail(
                    out,
                    rule,
                    format!("physical server {vm}"),
                    format!(
                        "{vm} runs Windows Server 2008 R2 SP1 (guest OS: {}) and was protected as a physical \
                         machine; such machines cannot be failed back from Azure to on-premises",
                        item.guest_os
                    ),
                    format!(
                        "Do not fail back {vm}: keep it running in Azure, or rebuild its workload \
                         on a new on-prem VMware VM and protect that VM (a 2008 R2 SP1 machine that \
                         started as a VMware VM can fail back)."
                    ),
                );
            }
        }
        GroupOutsideRecoveryPlan => {
            if let Some(g) = item
                .replication_group
                .as_deref()
                .filter(|_| !item.via_recovery_plan)
            {
                fail(
                    out,
                    rule,
                    format!("replication group {g}"),
                    format!(
                        "{vm} belongs to replication group {g}, which can be reprotected only \
                         through a recovery plan"
                    ),
                    format!(
                        "Reprotect through a recovery plan that contains replication group {g}, \
                         using the previous values for every protected machine."
                    ),
                );
            }
        }
        GroupMasterTargetsDiffer => {
            if let Some(g) = &facts.group {
                let mut distinct: Vec<&str> = Vec::new();
                for t in g.members.iter().filter_map(|m| m.master_target.as_deref()) {
                    if !distinct.contains(&t) {
                        distinct.push(t);
                    }
                }
                if distinct.len() > 1 {
                    // Suggest the master target most members already use (fewest changes);
                    // on a tie, the first one listed, so the suggestion is deterministic.
                    let count = |t: &str| {
                        g.members
                            .iter()
                            .filter(|m| m.master_target.as_deref() == Some(t))
                            .count()
                    };
                    let mut best = distinct[0];
                    for &t in &distinct[1..] {
                        if count(t) > count(best) {
                            best = t;
                        }
                    }
                    let used = count(best);
                    let pairs: Vec<String> = g
                        .members
                        .iter()
                        .filter_map(|m| {
                            m.master_target
                                .as_ref()
                                .map(|t| format!("{} -> {t}", m.item))
                        })
                        .collect();
                    fail(
                        out,
                        rule,
                        format!("replication group {}", g.name),
                        format!(
                            "members of replication group {} use different master targets ({}); a \
                             common point in time cannot be determined for them",
                            g.name,
                            pairs.join(", ")
                        ),
                        format!(
                            "Reprotect every member of {} with the same master target (e.g. {best}, \
                             already used by {used} of them), then retry.",
                            g.name
                        ),
                    );
                }
            }
        }
    }
}

/// `datastore-unreachable`: the datastores the failback will use must be accessible from the
/// master target's ESX host. For the original VM (if it still exists) that is every datastore
/// holding its disks; otherwise (alternate location, or the VM is gone and will be recreated) it
/// is the datastore chosen in the request.
fn check_datastores(op: &Operation, facts: &PrereqFacts, vm: &str, out: &mut Vec<PrereqFailure>) {
    // Without a master target host there is nothing to compare against; master-target-missing
    // or master-target-host-not-discovered already says so.
    let Some(m) = facts.master_target.as_ref() else {
        return;
    };
    let Some(host_id) = m.esx_host_id.as_deref() else {
        return;
    };
    let host = host_label(m);
    let original = facts.original_vm.as_ref().filter(|o| o.exists).filter(|_| {
        matches!(
            op,
            Operation::Reprotect {
                target: ReprotectTarget::OriginalVm,
                ..
            }
        )
    });
    let (datastores, owner): (Vec<&DatastoreFacts>, String) = match original {
        Some(o) => (
            o.datastores.iter().collect(),
            format!("the disks of VM {}", o.name),
        ),
        None => (
            facts.target_datastore.iter().collect(),
            format!("the new disks of {vm}"),
        ),
    };
    for d in datastores
        .into_iter()
        .filter(|d| !d.accessible_from.iter().any(|h| h == host_id))
    {
        let reach = if d.accessible_from.is_empty() {
            "no host".to_owned()
        } else {
            d.accessible_from.join(", ")
        };
        let fix = match original {
            Some(o) => format!(
                "Give ESX host {host} access to datastore {}, choose a master target whose ESX host \
                 can access it, or delete the on-prem VM {} so that failback creates a new VM on \
                 host {host}; then retry.",
                d.name, o.name
            ),
            None => format!(
                "Choose a datastore that ESX host {host} of master target {} can access (the \
                 master target's own datastore works) and retry.",
                m.name
            ),
        };
        fail(
            out,
            Rule::DatastoreUnreachable,
            format!("datastore {} ({})", d.name, d.id),
            format!(
                "datastore {} holding {owner} is not accessible from ESX host {host} of master \
                 target {} (accessible from: {reach})",
                d.name, m.name
            ),
            fix,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const R_ORIG: Operation = Operation::Reprotect {
        direction: Direction::AzureToOnPrem,
        target: ReprotectTarget::OriginalVm,
    };
    const R_ALT: Operation = Operation::Reprotect {
        direction: Direction::AzureToOnPrem,
        target: ReprotectTarget::AlternateLocation,
    };
    const R_AZ: Operation = Operation::Reprotect {
        direction: Direction::OnPremToAzure,
        target: ReprotectTarget::OriginalVm,
    };
    const FAILBACK: Operation = Operation::Failover {
        direction: Direction::AzureToOnPrem,
        kind: FailoverKind::Unplanned,
    };

    const NET: &str =
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet-dr";

    /// Every operation the engine knows, for the "healthy passes everywhere" test.
    fn all_ops() -> Vec<Operation> {
        let mut ops = vec![Operation::Commit, Operation::Protect];
        for direction in [Direction::AzureToOnPrem, Direction::OnPremToAzure] {
            for target in [
                ReprotectTarget::OriginalVm,
                ReprotectTarget::AlternateLocation,
            ] {
                ops.push(Operation::Reprotect { direction, target });
            }
            for kind in [
                FailoverKind::Planned,
                FailoverKind::Unplanned,
                FailoverKind::Test,
            ] {
                ops.push(Operation::Failover { direction, kind });
            }
        }
        ops
    }

    /// A fact set where every rule passes: the baseline each single-rule test breaks once.
    fn healthy() -> PrereqFacts {
        PrereqFacts {
            item: ItemFacts {
                name: "web01".into(),
                in_database: true,
                source_kind: SourceKind::VmwareVm,
                guest_os: "windows2008r2srv_64Guest".into(),
                service_pack: Some(1),
                replication_group: Some("rg-web".into()),
                via_recovery_plan: true,
                azure_deployment_model: Some(DeploymentModel::ResourceManager),
                azure_network_id: Some(NET.into()),
                failback_target: Some(ReprotectTarget::OriginalVm),
            },
            process_server: Some(ProcessServerFacts {
                name: "ps-azure-01".into(),
                registered: true,
                deployment_model: Some(DeploymentModel::ResourceManager),
                // Different case on purpose: Azure ids compare case-insensitively.
                network_id: Some(NET.to_uppercase()),
                heartbeat_age_secs: Some(30),
            }),
            master_target: Some(MasterTargetFacts {
                name: "mt-01".into(),
                registered: true,
                os_family: GuestFamily::Windows,
                esx_host_id: Some("host-42".into()),
                esx_host_name: Some("esx42.lab".into()),
                esx_host_discovered: true,
                disk_enable_uuid: Some("TRUE".into()),
                registered_datastore: Some("datastore-7".into()),
                current_datastore: Some("datastore-7".into()),
                retention_volume: Some(RetentionVolumeFacts {
                    path: "R:".into(),
                    filesystem: "NTFS".into(),
                    capacity_bytes: 200 << 30,
                    locked: false,
                    in_use_by: vec![],
                    is_cache_volume: false,
                }),
            }),
            original_vm: Some(OriginalVmFacts {
                name: "web01".into(),
                exists: true,
                datastores: vec![DatastoreFacts {
                    id: "datastore-7".into(),
                    name: "ds-gold".into(),
                    accessible_from: vec!["host-41".into(), "host-42".into()],
                }],
                snapshots: vec![],
            }),
            target_datastore: Some(DatastoreFacts {
                id: "datastore-8".into(),
                name: "ds-silver".into(),
                accessible_from: vec!["host-42".into()],
            }),
            vcenter: Some(VcenterFacts {
                server: "vc.lab".into(),
                datastore_discovery: DatastoreDiscovery::Succeeded,
            }),
            on_prem_site: Some(OnPremSiteFacts {
                name: "esx42.lab".into(),
                standalone_esxi: false,
                esxi_edition: EsxiEdition::Licensed,
            }),
            group: Some(GroupFacts {
                name: "rg-web".into(),
                members: vec![
                    GroupMember {
                        item: "web01".into(),
                        master_target: Some("mt-01".into()),
                    },
                    GroupMember {
                        item: "web02".into(),
                        master_target: Some("mt-01".into()),
                    },
                    GroupMember {
                        item: "web03".into(),
                        master_target: None,
                    },
                ],
            }),
        }
    }

    fn mt(f: &mut PrereqFacts) -> &mut MasterTargetFacts {
        f.master_target.as_mut().unwrap()
    }

    fn rv(f: &mut PrereqFacts) -> &mut RetentionVolumeFacts {
        mt(f).retention_volume.as_mut().unwrap()
    }

    /// Asserts exactly one failure, of `rule`, whose object mentions `object_has` and whose fix
    /// mentions `fix_has` (ignoring case); returns it for further checks.
    #[track_caller]
    fn only(
        op: Operation,
        f: &PrereqFacts,
        rule: Rule,
        object_has: &str,
        fix_has: &str,
    ) -> PrereqFailure {
        let got = check(&op, f);
        assert_eq!(
            got.len(),
            1,
            "expected only {rule} for {op}, got:\n{}",
            render(&got)
        );
        let x = got.into_iter().next().unwrap();
        assert_eq!(x.rule, rule);
        assert!(
            x.object.contains(object_has),
            "object {:?} lacks {object_has:?}",
            x.object
        );
        // Case-insensitive: fixes are sentences, so a quoted phrase may start with a capital.
        assert!(
            x.fix.to_lowercase().contains(&fix_has.to_lowercase()),
            "fix {:?} lacks {fix_has:?}",
            x.fix
        );
        assert!(!x.message.is_empty());
        x
    }

    #[test]
    fn healthy_facts_pass_every_operation() {
        let f = healthy();
        for op in all_ops() {
            let got = check(&op, &f);
            assert!(got.is_empty(), "{op}:\n{}", render(&got));
            assert!(ensure(&op, &f).is_ok());
        }
    }

    #[test]
    fn item_not_in_database_gates_every_operation() {
        let mut f = healthy();
        f.item.in_database = false;
        for op in all_ops() {
            let x = only(op, &f, Rule::ItemNotInDatabase, "web01", "backup");
            assert!(x.message.contains("web01"));
            assert!(x.fix.contains("same IP address"));
        }
    }

    #[test]
    fn process_server_missing_when_absent_or_unregistered() {
        let mut f = healthy();
        f.process_server = None;
        let x = only(
            R_ORIG,
            &f,
            Rule::ProcessServerMissing,
            "web01",
            "Deploy a failback process server",
        );
        assert!(x.fix.contains(NET));
        only(R_AZ, &f, Rule::ProcessServerMissing, "web01", "web01");
        only(
            Operation::Protect,
            &f,
            Rule::ProcessServerMissing,
            "web01",
            "web01",
        );

        let mut f = healthy();
        let ps = f.process_server.as_mut().unwrap();
        ps.registered = false;
        ps.heartbeat_age_secs = None; // not reported twice: heartbeat is skipped for unregistered
        only(
            R_ALT,
            &f,
            Rule::ProcessServerMissing,
            "ps-azure-01",
            "ps-azure-01",
        );
    }

    #[test]
    fn process_server_deployment_model_mismatch() {
        let mut f = healthy();
        f.process_server.as_mut().unwrap().deployment_model = Some(DeploymentModel::Classic);
        let x = only(
            R_ORIG,
            &f,
            Rule::ProcessServerDeploymentModel,
            "ps-azure-01",
            "Resource Manager",
        );
        assert!(x.message.contains("classic") && x.message.contains("web01"));
        // Not a concern of the forward direction.
        assert!(check(&R_AZ, &f).is_empty());
    }

    #[test]
    fn process_server_network_mismatch() {
        let mut f = healthy();
        f.process_server.as_mut().unwrap().network_id =
            Some("/subscriptions/s1/.../vnet-other".into());
        let x = only(R_ALT, &f, Rule::ProcessServerNetwork, "ps-azure-01", NET);
        assert!(x.message.contains("vnet-other"));
    }

    #[test]
    fn process_server_heartbeat_stale_or_never() {
        let mut f = healthy();
        f.process_server.as_mut().unwrap().heartbeat_age_secs =
            Some(PROCESS_SERVER_HEARTBEAT_STALE_SECS);
        assert!(
            check(&R_ORIG, &f).is_empty(),
            "exactly the threshold is not yet stale"
        );
        f.process_server.as_mut().unwrap().heartbeat_age_secs =
            Some(PROCESS_SERVER_HEARTBEAT_STALE_SECS + 1);
        only(
            R_ORIG,
            &f,
            Rule::ProcessServerHeartbeat,
            "ps-azure-01",
            "port 443",
        );
        only(
            R_AZ,
            &f,
            Rule::ProcessServerHeartbeat,
            "ps-azure-01",
            "ps-azure-01",
        );
        f.process_server.as_mut().unwrap().heartbeat_age_secs = None;
        let x = only(
            Operation::Protect,
            &f,
            Rule::ProcessServerHeartbeat,
            "ps-azure-01",
            "ps-azure-01",
        );
        assert!(x.message.contains("never"));
    }

    #[test]
    fn master_target_missing_when_absent_or_unregistered() {
        let mut f = healthy();
        f.master_target = None;
        // Dependent rules (uuid, retention, datastore…) stay silent: one failure, one fix.
        only(
            R_ORIG,
            &f,
            Rule::MasterTargetMissing,
            "web01",
            "Install a master target",
        );
        let mut f = healthy();
        mt(&mut f).registered = false;
        only(R_ALT, &f, Rule::MasterTargetMissing, "mt-01", "mt-01");
    }

    #[test]
    fn master_target_host_not_discovered() {
        let mut f = healthy();
        mt(&mut f).esx_host_discovered = false;
        let x = only(
            R_ORIG,
            &f,
            Rule::MasterTargetHostNotDiscovered,
            "esx42.lab",
            "vc.lab",
        );
        assert!(x.object.contains("mt-01"));
        f.on_prem_site.as_mut().unwrap().standalone_esxi = true;
        let x = only(
            R_ORIG,
            &f,
            Rule::MasterTargetHostNotDiscovered,
            "esx42.lab",
            "standalone ESXi host esx42.lab",
        );
        assert!(x.message.contains("standalone"));
    }

    #[test]
    fn master_target_enable_uuid() {
        for bad in [None, Some("FALSE"), Some("\"TRUE\""), Some("yes")] {
            let mut f = healthy();
            mt(&mut f).disk_enable_uuid = bad.map(str::to_owned);
            let x = only(
                R_ORIG,
                &f,
                Rule::MasterTargetEnableUuid,
                "mt-01",
                "disk.EnableUUID to TRUE",
            );
            assert!(x.fix.contains("mt-01"));
        }
        for good in ["true", "True", "TRUE"] {
            let mut f = healthy();
            mt(&mut f).disk_enable_uuid = Some(good.into());
            assert!(check(&R_ORIG, &f).is_empty(), "{good}");
        }
    }

    #[test]
    fn master_target_storage_vmotioned() {
        let mut f = healthy();
        mt(&mut f).current_datastore = Some("datastore-9".into());
        let x = only(
            R_ALT,
            &f,
            Rule::MasterTargetStorageVmotioned,
            "mt-01",
            "datastore-7",
        );
        assert!(x.message.contains("datastore-9"));
    }

    #[test]
    fn retention_volume_missing() {
        let mut f = healthy();
        mt(&mut f).retention_volume = None;
        only(R_ORIG, &f, Rule::RetentionVolumeMissing, "mt-01", "R:");
        mt(&mut f).os_family = GuestFamily::Linux;
        only(
            R_ORIG,
            &f,
            Rule::RetentionVolumeMissing,
            "mt-01",
            "/mnt/retention",
        );
    }

    #[test]
    fn retention_volume_in_use() {
        let mut f = healthy();
        rv(&mut f).in_use_by = vec!["replica target of db01".into()];
        let x = only(R_ORIG, &f, Rule::RetentionVolumeInUse, "R:", "R:");
        assert!(x.object.contains("mt-01") && x.message.contains("db01"));
    }

    #[test]
    fn retention_volume_locked() {
        let mut f = healthy();
        rv(&mut f).locked = true;
        only(
            R_ORIG,
            &f,
            Rule::RetentionVolumeLocked,
            "mt-01",
            "default retention volume for Windows is R:",
        );
    }

    #[test]
    fn retention_volume_cache_volume() {
        let mut f = healthy();
        mt(&mut f).os_family = GuestFamily::Linux;
        rv(&mut f).path = "/".into();
        rv(&mut f).is_cache_volume = true;
        only(
            R_ALT,
            &f,
            Rule::RetentionVolumeCacheVolume,
            "mt-01",
            "/mnt/retention",
        );
    }

    #[test]
    fn retention_volume_fat_filesystem() {
        let mut f = healthy();
        rv(&mut f).filesystem = "FAT32".into();
        let x = only(
            R_ORIG,
            &f,
            Rule::RetentionVolumeFatFilesystem,
            "R:",
            "format it with NTFS/ext4/xfs or choose another volume",
        );
        assert!(x.message.contains("FAT32"));
        rv(&mut f).filesystem = "exFAT".into();
        assert!(check(&R_ORIG, &f).is_empty(), "exFAT is not FAT");
    }

    #[test]
    fn retention_volume_zero_capacity() {
        let mut f = healthy();
        rv(&mut f).capacity_bytes = 0;
        only(R_ORIG, &f, Rule::RetentionVolumeZeroCapacity, "R:", "mt-01");
    }

    #[test]
    fn datastore_unreachable_for_original_vm() {
        let mut f = healthy();
        f.original_vm.as_mut().unwrap().datastores[0].accessible_from = vec!["host-41".into()];
        let x = only(
            R_ORIG,
            &f,
            Rule::DatastoreUnreachable,
            "ds-gold",
            "esx42.lab",
        );
        assert!(x.object.contains("datastore-7"));
        assert!(x.message.contains("mt-01") && x.message.contains("host-41"));
        assert!(x.fix.contains("delete the on-prem VM web01"));
        // The alternate location does not use the original VM's datastores.
        assert!(check(&R_ALT, &f).is_empty());
    }

    #[test]
    fn datastore_unreachable_for_alternate_location_or_recreated_vm() {
        let mut f = healthy();
        f.target_datastore.as_mut().unwrap().accessible_from = vec![];
        only(R_ALT, &f, Rule::DatastoreUnreachable, "ds-silver", "mt-01");
        assert!(
            check(&R_ORIG, &f).is_empty(),
            "original VM exists: its own datastores count"
        );
        f.original_vm.as_mut().unwrap().exists = false;
        only(
            R_ORIG,
            &f,
            Rule::DatastoreUnreachable,
            "ds-silver",
            "esx42.lab",
        );
    }

    #[test]
    fn vm_has_snapshots() {
        let mut f = healthy();
        f.original_vm.as_mut().unwrap().snapshots = vec!["before-patch".into(), "nightly".into()];
        let x = only(
            R_ORIG,
            &f,
            Rule::VmHasSnapshots,
            "web01",
            "delete the snapshots (or the disks) of VM web01",
        );
        assert!(x.message.contains("before-patch") && x.message.contains("nightly"));
        // A new VM (alternate location) or a VM that no longer exists has no snapshots to block.
        assert!(check(&R_ALT, &f).is_empty());
        f.original_vm.as_mut().unwrap().exists = false;
        assert!(check(&R_ORIG, &f).is_empty());
    }

    #[test]
    fn vcenter_read_only_credential() {
        let mut f = healthy();
        f.vcenter.as_mut().unwrap().datastore_discovery = DatastoreDiscovery::PermissionDenied;
        only(
            R_ORIG,
            &f,
            Rule::VcenterReadOnlyCredential,
            "vc.lab",
            "update the vCenter credential for vc.lab with an account that can browse datastores, then retry the job",
        );
    }

    #[test]
    fn free_esxi_edition_gates_failback_and_reprotect() {
        let mut f = healthy();
        f.on_prem_site.as_mut().unwrap().esxi_edition = EsxiEdition::Free;
        for op in [R_ORIG, R_ALT, FAILBACK] {
            only(
                op,
                &f,
                Rule::FreeEsxiEdition,
                "esx42.lab",
                "upgrade esx42.lab to an evaluation or paid licence",
            );
        }
        // Failover to Azure still works on a free edition.
        let fwd = Operation::Failover {
            direction: Direction::OnPremToAzure,
            kind: FailoverKind::Planned,
        };
        assert!(check(&fwd, &f).is_empty());
        f.on_prem_site.as_mut().unwrap().esxi_edition = EsxiEdition::Evaluation;
        assert!(check(&FAILBACK, &f).is_empty());
    }

    #[test]
    fn physical_to_original_vm() {
        let mut f = healthy();
        f.item.source_kind = SourceKind::PhysicalServer;
        f.item.guest_os = "centos6_64Guest".into();
        f.item.service_pack = None;
        only(
            R_ORIG,
            &f,
            Rule::PhysicalToOriginalVm,
            "web01",
            "alternate location",
        );
        only(FAILBACK, &f, Rule::PhysicalToOriginalVm, "web01", "web01");
        assert!(check(&R_ALT, &f).is_empty());
        f.item.failback_target = Some(ReprotectTarget::AlternateLocation);
        assert!(check(&FAILBACK, &f).is_empty());
    }

    #[test]
    fn windows_2008_r2_sp1_physical() {
        let mut f = healthy();
        f.item.source_kind = SourceKind::PhysicalServer;
        f.item.failback_target = Some(ReprotectTarget::AlternateLocation);
        for op in [R_ALT, FAILBACK] {
            let x = only(
                op,
                &f,
                Rule::Windows2008R2Sp1Physical,
                "physical server web01",
                "web01",
            );
            assert!(x.message.contains("2008 R2 SP1"));
        }
        // Service pack from the agent's OS string instead of the field.
        f.item.service_pack = None;
        f.item.guest_os = "Windows Server 2008 R2 Standard Service Pack 1".into();
        only(R_ALT, &f, Rule::Windows2008R2Sp1Physical, "web01", "web01");
        // RTM, or a 2008 R2 SP1 machine that started as a VMware VM, can fail back.
        f.item.guest_os = "Windows Server 2008 R2 Standard".into();
        assert!(check(&FAILBACK, &f).is_empty());
        let mut f = healthy();
        f.item.guest_os = "windows7Server64Guest".into();
        assert!(check(&FAILBACK, &f).is_empty(), "VMware VM source");
    }

    #[test]
    fn group_outside_recovery_plan() {
        let mut f = healthy();
        f.item.via_recovery_plan = false;
        for op in [R_ORIG, R_AZ] {
            only(
                op,
                &f,
                Rule::GroupOutsideRecoveryPlan,
                "rg-web",
                "recovery plan",
            );
        }
        assert!(check(&FAILBACK, &f).is_empty());
    }

    #[test]
    fn group_master_targets_differ() {
        let mut f = healthy();
        f.group.as_mut().unwrap().members.push(GroupMember {
            item: "web04".into(),
            master_target: Some("mt-02".into()),
        });
        let x = only(
            R_ORIG,
            &f,
            Rule::GroupMasterTargetsDiffer,
            "rg-web",
            "mt-01",
        );
        assert!(x.message.contains("web04 -> mt-02") && x.message.contains("web01 -> mt-01"));
        only(R_AZ, &f, Rule::GroupMasterTargetsDiffer, "rg-web", "rg-web");
    }

    #[test]
    fn several_failures_are_all_reported_at_once() {
        let mut f = healthy();
        f.item.in_database = false;
        f.process_server.as_mut().unwrap().deployment_model = Some(DeploymentModel::Classic);
        mt(&mut f).disk_enable_uuid = None;
        rv(&mut f).filesystem = "vfat".into();
        rv(&mut f).locked = true;
        f.original_vm.as_mut().unwrap().snapshots = vec!["s1".into()];
        f.vcenter.as_mut().unwrap().datastore_discovery = DatastoreDiscovery::PermissionDenied;
        f.on_prem_site.as_mut().unwrap().esxi_edition = EsxiEdition::Free;
        let got: Vec<Rule> = check(&R_ORIG, &f).iter().map(|x| x.rule).collect();
        assert_eq!(
            got,
            vec![
                Rule::ItemNotInDatabase,
                Rule::ProcessServerDeploymentModel,
                Rule::MasterTargetEnableUuid,
                Rule::RetentionVolumeLocked,
                Rule::RetentionVolumeFatFilesystem,
                Rule::VmHasSnapshots,
                Rule::VcenterReadOnlyCredential,
                Rule::FreeEsxiEdition,
            ]
        );
        // The job-facing error carries all of them and displays the rendering.
        let err = ensure(&R_ORIG, &f).unwrap_err();
        assert_eq!(err.rules(), got);
        let text = err.to_string();
        assert!(text.starts_with("8 prerequisite checks failed:"));
        for r in &got {
            assert!(
                text.contains(&format!("] {r}\n")),
                "{r} missing from:\n{text}"
            );
        }
        assert_eq!(text, render(&err.failures));
    }

    #[test]
    fn render_block_format() {
        let f = PrereqFailure {
            rule: Rule::VmHasSnapshots,
            object: "VM web01".into(),
            message: "has snapshots".into(),
            fix: "delete them".into(),
        };
        assert_eq!(
            render(&[f]),
            "1 prerequisite check failed:\n\n[1] vm-has-snapshots\n  object:  VM web01\n  problem: has snapshots\n  fix:     delete them\n"
        );
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn rule_ids_are_stable_and_round_trip() {
        assert_eq!(
            Rule::Windows2008R2Sp1Physical.to_string(),
            "windows-2008-r2-sp1-physical"
        );
        assert_eq!(
            Rule::RetentionVolumeFatFilesystem.id(),
            "retention-volume-fat-filesystem"
        );
        for &r in Rule::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.id()));
            assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), r);
            assert_eq!(r.id().parse::<Rule>().unwrap(), r);
            assert!(
                r.id()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
        assert!("no-such-rule".parse::<Rule>().is_err());
    }

    /// Re-reads the rustdoc table and compares it with [`Rule::applies_to`], so documentation and
    /// behaviour cannot drift apart.
    #[test]
    fn rule_table_matches_rustdoc() {
        let cols = [
            R_ORIG,
            R_ALT,
            FAILBACK,
            R_AZ,
            Operation::Failover {
                direction: Direction::OnPremToAzure,
                kind: FailoverKind::Unplanned,
            },
            Operation::Commit,
            Operation::Protect,
        ];
        let src = include_str!("prereq.rs");
        let mut seen = 0;
        for line in src.lines().filter_map(|l| l.strip_prefix("//! | `")) {
            let (id, rest) = line.split_once('`').unwrap();
            let rule: Rule = id.parse().unwrap();
            let cells: Vec<&str> = rest.split('|').skip(1).collect();
            for (i, op) in cols.iter().enumerate() {
                let ticked = cells.get(i).is_some_and(|c| c.contains('✓'));
                assert_eq!(ticked, rule.applies_to(op), "{rule} / {op}");
            }
            seen += 1;
        }
        assert_eq!(seen, Rule::ALL.len());
    }

    #[test]
    fn retention_defaults_and_fat_detection() {
        assert_eq!(retention_volume_defaults(GuestFamily::Windows), "R:");
        assert_eq!(
            retention_volume_defaults(GuestFamily::Linux),
            "/mnt/retention"
        );
        for fs in ["FAT", "fat16", "FAT32", "vfat", "MSDOS", " Fat32 ", "FAT12"] {
            assert!(is_fat(fs), "{fs}");
        }
        for fs in ["exFAT", "NTFS", "ext4", "xfs", "ReFS", ""] {
            assert!(!is_fat(fs), "{fs}");
        }
    }

    #[test]
    fn facts_and_operations_serde_round_trip() {
        let f = healthy();
        let back: PrereqFacts = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        // Partial facts deserialize thanks to serde defaults.
        let partial: PrereqFacts =
            serde_json::from_str(r#"{"item":{"name":"x","in_database":true}}"#).unwrap();
        assert!(partial.master_target.is_none() && partial.item.in_database);
        let op: Operation = serde_json::from_str(
            r#"{"op":"reprotect","direction":"azure-to-on-prem","target":"original-vm"}"#,
        )
        .unwrap();
        assert_eq!(op, R_ORIG);
        assert_eq!(
            serde_json::to_string(&Operation::Commit).unwrap(),
            r#"{"op":"commit"}"#
        );
    }
}

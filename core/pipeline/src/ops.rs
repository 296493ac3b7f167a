//! The operations an operator drives, each a job of idempotent steps: protect, failover
//! (planned, unplanned, test), reprotect in both directions, failback and commit.

use homeward_plugin_host::{
    AdapterError, CallError,
    bindings::{
        compute::{PowerOffMode, VmSpec},
        disks::{AccessMode, NewDisk},
        types::PowerState,
    },
};
use homeward_replication::journal::{Consistency, Journal, JournalConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    error::PipelineError,
    jobs::{Job, JobKind},
    model::{DiskMap, Direction, Group, Item, ItemState, SourceKind},
    pipeline::{Pipeline, SiteRole, StepOutcome},
    prereq,
};

/// Which recovery point a failover uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointChoice {
    /// The newest point.
    Latest,
    /// The newest app-consistent point.
    LatestAppConsistent,
    /// A point by sequence number (`homeward recovery-points`).
    Seq(u64),
}

impl std::str::FromStr for PointChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "latest" => Ok(PointChoice::Latest),
            "latest-app-consistent" => Ok(PointChoice::LatestAppConsistent),
            n => n.parse().map(PointChoice::Seq).map_err(|_| format!("`{s}` is not latest, latest-app-consistent or a recovery point number")),
        }
    }
}

/// How a failover runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverKind {
    /// Shut the source down, sync the last changes, fail over with no data loss.
    Planned,
    /// The source is gone: fail over at a chosen point.
    Unplanned,
    /// Bring up copies in an isolated network; replication goes on.
    Test,
}

/// What to protect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProtectRequest {
    /// The replication group (the VMs cut recovery points together).
    pub group: String,
    /// A recovery plan to create over the group, with the VMs' order as boot order.
    pub plan: Option<String>,
    /// On-premises VM names, in boot order.
    pub vms: Vec<String>,
    /// VMs among them that are physical servers protected by agent.
    pub physical: Vec<String>,
    /// The on-premises site (the only one when omitted).
    pub onprem_site: Option<String>,
    /// The Azure site (the only one when omitted).
    pub azure_site: Option<String>,
    /// The Azure network (id or name) failed-over VMs join.
    pub azure_network: String,
}

/// How to reprotect.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReprotectRequest {
    /// The master target receiving failback data (Azure→on-prem).
    pub master_target: Option<String>,
    /// The process server in Azure sending it.
    pub process_server: Option<String>,
    /// Fail back to a new VM on the master target's host and datastore instead of the
    /// original VM.
    pub alternate_location: bool,
}

fn kind_is(e: &CallError, f: fn(&AdapterError) -> bool) -> bool {
    matches!(e, CallError::Adapter { error, .. } if f(error))
}

fn not_found(e: &AdapterError) -> bool {
    matches!(e, AdapterError::NotFound(_))
}

fn conflict(e: &AdapterError) -> bool {
    matches!(e, AdapterError::Conflict(_))
}

const PROTECT_STEPS: &[&str] = &["prerequisites", "begin", "enable-change-tracking", "create-replicas", "initial-sync", "finish"];

impl Pipeline {
    // ---- entry points ----

    /// Protects VMs forward (on-premises → Azure) as one replication group.
    pub async fn protect(&self, req: ProtectRequest) -> Result<Job, PipelineError> {
        let onprem = self.site_of_role(SiteRole::OnPrem, req.onprem_site.as_deref())?.name.clone();
        let azure = self.site_of_role(SiteRole::Azure, req.azure_site.as_deref())?.name.clone();
        if self.store.get::<Group>(crate::store::Table::Groups, &req.group)?.is_some() {
            return Err(PipelineError::Refused {
                object: format!("group {}", req.group),
                message: "it already exists".into(),
                fix: "reprotect it with `homeward reprotect`, or choose another group name".into(),
            });
        }
        let plugin = &self.site(&onprem)?.plugin;
        let vms = plugin.list_vms().await.map_err(PipelineError::adapter(&onprem, "inventory.list-vms", "the site"))?;
        let mut items = Vec::new();
        for (i, name) in req.vms.iter().enumerate() {
            if self.store.get::<Item>(crate::store::Table::Items, name)?.is_some() {
                return Err(PipelineError::Refused { object: format!("VM {name}"), message: "it is already protected".into(), fix: "see `homeward items`".into() });
            }
            let vm = vms.iter().find(|v| &v.name == name || &v.id == name).ok_or_else(|| PipelineError::NotFound {
                what: "VM",
                name: name.clone(),
                fix: format!("check the name against `homeward sites discover` of site {onprem}"),
            })?;
            items.push(Item {
                name: vm.name.clone(),
                group: req.group.clone(),
                boot_order: i as u32,
                source_kind: if req.physical.contains(name) { SourceKind::Physical } else { SourceKind::VmwareVm },
                guest_os: vm.guest_os.clone(),
                cpu_count: vm.cpu_count,
                memory_mib: vm.memory_mib,
                onprem_site: onprem.clone(),
                onprem_vm: Some(vm.id.clone()),
                original_vm: Some(vm.id.clone()),
                azure_site: azure.clone(),
                azure_vm: None,
                state: ItemState::Protecting,
                direction: Direction::OnPremToAzure,
                failback_to_alternate: false,
                disks: vm
                    .disks
                    .iter()
                    .map(|d| DiskMap { label: d.label.clone(), capacity_bytes: d.capacity_bytes, onprem_disk: Some(d.id.clone()), azure_disk: None, change_id: None })
                    .collect(),
            });
        }
        let mut group = Group::new(&req.group);
        group.azure_network = Some(req.azure_network.clone());
        self.save_group(&group)?;
        for item in &items {
            self.save_item(item)?;
        }
        if let Some(plan) = &req.plan {
            self.store.put_plan(plan, &req.group)?;
        }
        self.start_job(JobKind::Protect, &req.group, json!({"generation": 0}), PROTECT_STEPS).await
    }

    /// Fails a group (or plan) over: to Azure when it replicates forward, and back to
    /// on-premises (failback) when it replicates from Azure.
    pub async fn failover(&self, target: &str, kind: FailoverKind, point: PointChoice, test_network: Option<String>) -> Result<Job, PipelineError> {
        let (group_name, plan) = self.resolve_group(target)?;
        let group = self.group(&group_name)?;
        let items = self.group_items(&group_name)?;
        self.require_state(&items, ItemState::Protected, "fail it over", "protect or reprotect it first")?;
        let params = json!({"kind": kind, "point": point, "plan": plan, "test_network": test_network});
        match (group.direction, kind) {
            (Direction::OnPremToAzure, FailoverKind::Test) => {
                let steps = ["prerequisites", "choose-point", "create-test-disks", "copy-point", "create-test-vms", "power-on", "finish"];
                self.start_job(JobKind::Failover, &group_name, params, &steps).await
            }
            (Direction::OnPremToAzure, FailoverKind::Planned) => {
                let steps = ["prerequisites", "shut-down-sources", "final-sync", "choose-point", "apply-point", "finish-replicas", "create-vms", "power-on", "finish"];
                self.start_job(JobKind::Failover, &group_name, params, &steps).await
            }
            (Direction::OnPremToAzure, FailoverKind::Unplanned) => {
                let steps = ["prerequisites", "choose-point", "apply-point", "finish-replicas", "create-vms", "power-on", "finish"];
                self.start_job(JobKind::Failover, &group_name, params, &steps).await
            }
            (Direction::AzureToOnPrem, FailoverKind::Test) => Err(PipelineError::Refused {
                object: format!("group {group_name}"),
                message: "a test failback is not offered".into(),
                fix: "fail back for real, or test-fail-over the forward direction after reprotecting".into(),
            }),
            (Direction::AzureToOnPrem, FailoverKind::Planned) => {
                let steps = ["prerequisites", "shut-down-azure", "final-sync", "choose-point", "apply-point", "power-on", "finish"];
                self.start_job(JobKind::Failback, &group_name, params, &steps).await
            }
            (Direction::AzureToOnPrem, FailoverKind::Unplanned) => {
                let steps = ["prerequisites", "choose-point", "shut-down-azure", "apply-point", "power-on", "finish"];
                self.start_job(JobKind::Failback, &group_name, params, &steps).await
            }
        }
    }

    /// Discards a test failover's VMs; replication went on meanwhile.
    pub async fn test_cleanup(&self, target: &str) -> Result<Job, PipelineError> {
        let (group_name, _) = self.resolve_group(target)?;
        self.start_job(JobKind::TestCleanup, &group_name, json!({}), &["delete-test-vms", "finish"]).await
    }

    /// Reprotects a group: failed-over items replicate back to on-premises; committed
    /// items replicate forward to Azure again.
    pub async fn reprotect(&self, target: &str, req: ReprotectRequest) -> Result<Job, PipelineError> {
        let (group_name, plan) = self.resolve_group(target)?;
        let group = self.group(&group_name)?;
        let items = self.group_items(&group_name)?;
        let from_plan = plan.is_some();
        let state = items.first().map(|i| i.state);
        // Nothing changes before the prerequisites pass: the new generation, master
        // target and process server travel in the job's parameters until its `begin` step.
        match state {
            Some(ItemState::FailedOver) | Some(ItemState::Reprotecting) if items.iter().all(|i| i.state == state.unwrap()) => {
                let generation = if state == Some(ItemState::FailedOver) { group.generation + 1 } else { group.generation };
                let params = json!({
                    "generation": generation,
                    "alternate": req.alternate_location,
                    "via_plan": from_plan,
                    "master_target": req.master_target,
                    "process_server": req.process_server,
                });
                self.start_job(JobKind::Reprotect, &group_name, params, &["prerequisites", "begin", "prepare-targets", "initial-resync", "finish"]).await
            }
            Some(ItemState::Committed) | Some(ItemState::Protecting) if group.direction == Direction::AzureToOnPrem || state == Some(ItemState::Committed) || items.iter().all(|i| i.state == ItemState::Protecting) => {
                let generation = if state == Some(ItemState::Committed) { group.generation + 1 } else { group.generation };
                self.start_job(JobKind::Protect, &group_name, json!({"generation": generation, "via_plan": from_plan}), PROTECT_STEPS).await
            }
            _ => Err(PipelineError::Refused {
                object: format!("group {group_name}"),
                message: format!("reprotect needs failed-over or committed items, but they are {}", items.iter().map(|i| format!("{} {}", i.name, i.state.label(i.direction))).collect::<Vec<_>>().join(", ")),
                fix: "fail over first (to reprotect back to on-premises), or commit a failback (to protect forward again)".into(),
            }),
        }
    }

    /// The `begin` step of a reprotect to on-premises: the group starts its new
    /// generation in the failback direction. Idempotent.
    fn begin_reprotect(&self, job: &Job, group: &mut Group, items: &mut [Item]) -> Result<StepOutcome, PipelineError> {
        let generation = job.params["generation"].as_u64().unwrap_or(0) as u32;
        if group.generation != generation || group.direction != Direction::AzureToOnPrem {
            group.generation = generation;
            group.direction = Direction::AzureToOnPrem;
            group.journal_dir = None;
            group.base_snapshots.clear();
        }
        group.master_target = job.params["master_target"].as_str().map(str::to_string);
        group.process_server = job.params["process_server"].as_str().map(str::to_string);
        self.save_group(group)?;
        let alternate = job.params["alternate"].as_bool().unwrap_or(false);
        for i in items.iter_mut() {
            i.state = ItemState::Reprotecting;
            i.direction = Direction::AzureToOnPrem;
            i.failback_to_alternate = alternate;
            self.save_item(i)?;
        }
        Ok(StepOutcome::note(json!({"generation": generation})))
    }

    /// The `begin` step of a forward protect after a commit: a new generation with new
    /// replicas. Idempotent; a no-op for a first protect.
    fn begin_protect(&self, job: &Job, group: &mut Group, items: &mut [Item]) -> Result<StepOutcome, PipelineError> {
        let generation = job.params["generation"].as_u64().unwrap_or(0) as u32;
        if group.generation != generation || group.direction != Direction::OnPremToAzure {
            group.generation = generation;
            group.direction = Direction::OnPremToAzure;
            group.master_target = None;
            group.journal_dir = None;
            group.base_snapshots.clear();
            self.save_group(group)?;
            for i in items.iter_mut() {
                i.state = ItemState::Protecting;
                i.direction = Direction::OnPremToAzure;
                for d in i.disks.iter_mut() {
                    d.azure_disk = None;
                    d.change_id = None;
                }
                self.save_item(i)?;
            }
        }
        Ok(StepOutcome::note(json!({"generation": generation})))
    }

    /// Commits a failback: deletes the Azure VMs and what they held.
    pub async fn commit(&self, target: &str) -> Result<Job, PipelineError> {
        let (group_name, _) = self.resolve_group(target)?;
        let items = self.group_items(&group_name)?;
        self.require_state(&items, ItemState::FailedBack, "commit it", "fail back first")?;
        self.start_job(JobKind::Commit, &group_name, json!({}), &["delete-snapshots", "delete-azure-vms", "finish"]).await
    }

    fn require_state(&self, items: &[Item], state: ItemState, to: &str, fix: &str) -> Result<(), PipelineError> {
        if let Some(bad) = items.iter().find(|i| i.state != state) {
            return Err(PipelineError::Refused {
                object: format!("item {}", bad.name),
                message: format!("it is {}, so Homeward cannot {to}", bad.state.label(bad.direction)),
                fix: fix.to_string(),
            });
        }
        if items.is_empty() {
            return Err(PipelineError::NotFound { what: "items of the group", name: String::new(), fix: fix.to_string() });
        }
        Ok(())
    }

    fn step_output(&self, job: u64, step: &str) -> Result<serde_json::Value, PipelineError> {
        let j = self.store.job(job)?.expect("the job exists");
        j.steps.into_iter().find(|s| s.name == step).and_then(|s| s.output).ok_or_else(|| PipelineError::Refused {
            object: format!("job {job}"),
            message: format!("step {step} has no recorded output"),
            fix: "retry the job with `homeward jobs retry`".into(),
        })
    }

    // ---- steps ----

    pub(crate) async fn protect_step(&self, job: &Job, step: &str) -> Result<StepOutcome, PipelineError> {
        let mut group = self.group(&job.target)?;
        let mut items = self.group_items(&job.target)?;
        match step {
            "prerequisites" => {
                let op = if job.params["generation"].as_u64().unwrap_or(0) > 0 {
                    prereq::Operation::Reprotect { direction: prereq::Direction::OnPremToAzure, target: prereq::ReprotectTarget::OriginalVm }
                } else {
                    prereq::Operation::Protect
                };
                self.check_prerequisites(&group, &items, &job.params, op).await
            }
            "begin" => self.begin_protect(job, &mut group, &mut items),
            "enable-change-tracking" => {
                for item in &items {
                    let vm = item.onprem_vm.clone().unwrap_or_default();
                    for d in &item.disks {
                        let plugin = &self.site(&item.onprem_site)?.plugin;
                        let disk = d.onprem_disk.clone().unwrap_or_default();
                        let op = plugin.enable_change_tracking(&vm, &disk).await.map_err(PipelineError::adapter(&item.onprem_site, "disks.enable-change-tracking", &vm))?;
                        self.wait(&item.onprem_site, op, "disks.enable-change-tracking", &vm).await?;
                    }
                }
                Ok(StepOutcome::note(json!({"items": items.len()})))
            }
            "create-replicas" => {
                let mut created = Vec::new();
                for item in items.iter_mut() {
                    let plugin = self.site(&item.azure_site)?.plugin.clone();
                    for (i, d) in item.disks.iter_mut().enumerate() {
                        let name = format!("{}-{}-g{}", item.name, sanitize(&d.label), group.generation);
                        let spec = NewDisk { name: name.clone(), capacity_bytes: d.capacity_bytes, datastore: None, guest_os: (i == 0).then(|| item.guest_os.clone()) };
                        let op = plugin.create_disk(spec).await.map_err(PipelineError::adapter(&item.azure_site, "disks.create-disk", &name))?;
                        let id = self.wait(&item.azure_site, op, "disks.create-disk", &name).await?.unwrap_or(name.clone());
                        d.azure_disk = Some(id.clone());
                        created.push(id);
                    }
                    self.save_item(item)?;
                }
                Ok(StepOutcome::note(json!({"replicas": created})))
            }
            "initial-sync" => self.sync_step(job, &mut group, &mut items, true).await,
            "finish" => self.set_state(&mut items, ItemState::Protected, Some(Direction::OnPremToAzure)),
            other => Err(unknown_step(job, other)),
        }
    }

    pub(crate) async fn failover_step(&self, job: &Job, step: &str) -> Result<StepOutcome, PipelineError> {
        let group = self.group(&job.target)?;
        let mut items = self.group_items(&job.target)?;
        let kind: FailoverKind = serde_json::from_value(job.params["kind"].clone()).unwrap_or(FailoverKind::Unplanned);
        let test = kind == FailoverKind::Test;
        match step {
            "prerequisites" => {
                let op = prereq::Operation::Failover { direction: prereq::Direction::OnPremToAzure, kind: prereq_kind(kind) };
                self.check_prerequisites(&group, &items, &job.params, op).await
            }
            "shut-down-sources" => {
                for item in &items {
                    self.power_off_gracefully(&item.onprem_site, item.onprem_vm.as_deref().unwrap_or_default()).await?;
                }
                Ok(StepOutcome::note(json!({"shut_down": items.iter().map(|i| &i.name).collect::<Vec<_>>()})))
            }
            "final-sync" => {
                let c = self.cycle(&job.target).await?;
                Ok(StepOutcome { bytes_sent: c.bytes_sent, bytes_changed: c.bytes_changed, output: serde_json::to_value(&c).unwrap_or_default() })
            }
            "choose-point" => self.choose_point(&group, job).await,
            "apply-point" => self.apply_point(job, &group, &items).await,
            "finish-replicas" => {
                for item in &items {
                    let plugin = &self.site(&item.azure_site)?.plugin;
                    for d in &item.disks {
                        let disk = d.azure_disk.clone().unwrap_or_default();
                        match plugin.open("", &disk, None, AccessMode::ReadWrite).await {
                            Ok(a) => plugin.close(&a.handle).await.map_err(PipelineError::adapter(&item.azure_site, "disks.close", &disk))?,
                            // Already finished by an earlier attempt.
                            Err(e) if kind_is(&e, conflict) => {}
                            Err(e) => return Err(PipelineError::adapter(&item.azure_site, "disks.open", &disk)(e)),
                        }
                    }
                }
                Ok(StepOutcome::note(json!({"finished": true})))
            }
            "create-test-disks" => {
                // Names only: the disks are created, filled and finished by copy-point,
                // which finds them again if it is rerun.
                let mut all = serde_json::Map::new();
                for item in &items {
                    let names: Vec<String> = item.disks.iter().map(|d| format!("{}-{}-test", item.name, sanitize(&d.label))).collect();
                    all.insert(item.name.clone(), json!(names));
                }
                Ok(StepOutcome::note(serde_json::Value::Object(all)))
            }
            "copy-point" => self.copy_point_to_test_disks(job, &group, &items).await,
            "create-vms" | "create-test-vms" => {
                let network = if test {
                    job.params["test_network"].as_str().map(str::to_string).ok_or_else(|| PipelineError::Refused {
                        object: format!("group {}", group.name),
                        message: "a test failover needs an isolated network".into(),
                        fix: "pass --test-network NET (a network with no route to production)".into(),
                    })?
                } else {
                    group.azure_network.clone().unwrap_or_default()
                };
                let test_disks = if test { Some(self.step_output(job.id, "copy-point")?) } else { None };
                let mut created = Vec::new();
                for item in items.iter_mut() {
                    let attach: Vec<String> = match &test_disks {
                        Some(t) => serde_json::from_value(t[&item.name].clone()).unwrap_or_default(),
                        None => item.disks.iter().filter_map(|d| d.azure_disk.clone()).collect(),
                    };
                    let name = if test { format!("{}-test", item.name) } else { item.name.clone() };
                    let id = self.create_azure_vm(item, &name, &network, attach).await?;
                    if !test {
                        // The VM's own names for its disks (a classic role names them
                        // itself), in order: the OS disk first.
                        let plugin = &self.site(&item.azure_site)?.plugin;
                        let vm = plugin.get_vm(&id).await.map_err(PipelineError::adapter(&item.azure_site, "inventory.get-vm", &id))?;
                        if vm.disks.len() == item.disks.len() {
                            for (d, vd) in item.disks.iter_mut().zip(vm.disks.iter()) {
                                d.azure_disk = Some(vd.id.clone());
                            }
                        }
                        item.azure_vm = Some(id.clone());
                        self.save_item(item)?;
                    }
                    created.push(json!({"item": item.name, "vm": id}));
                }
                Ok(StepOutcome::note(json!({"vms": created})))
            }
            "power-on" => {
                let out = self.step_output(job.id, if test { "create-test-vms" } else { "create-vms" })?;
                let vms: Vec<String> = out["vms"].as_array().map(|a| a.iter().filter_map(|v| v["vm"].as_str().map(str::to_string)).collect()).unwrap_or_default();
                let site = items.first().map(|i| i.azure_site.clone()).unwrap_or_default();
                for vm in &vms {
                    let op = self.site(&site)?.plugin.power_on(vm).await.map_err(PipelineError::adapter(&site, "compute.power-on", vm))?;
                    self.wait(&site, op, "compute.power-on", vm).await?;
                }
                Ok(StepOutcome::note(json!({"powered_on": vms})))
            }
            "finish" => {
                if !test {
                    for item in items.iter_mut() {
                        item.state = ItemState::FailedOver;
                        self.save_item(item)?;
                    }
                }
                Ok(StepOutcome::note(json!({"state": if test { "protected(on-prem→azure), test VMs running" } else { "failed-over(azure)" }})))
            }
            other => Err(unknown_step(job, other)),
        }
    }

    pub(crate) async fn test_cleanup_step(&self, job: &Job, step: &str) -> Result<StepOutcome, PipelineError> {
        let items = self.group_items(&job.target)?;
        match step {
            "delete-test-vms" => {
                let mut deleted = Vec::new();
                for item in &items {
                    let plugin = &self.site(&item.azure_site)?.plugin;
                    let vms = plugin.list_vms().await.map_err(PipelineError::adapter(&item.azure_site, "inventory.list-vms", "the site"))?;
                    if let Some(vm) = vms.iter().find(|v| v.name == format!("{}-test", item.name)) {
                        self.delete_vm(&item.azure_site, &vm.id).await?;
                        deleted.push(vm.name.clone());
                    }
                }
                Ok(StepOutcome::note(json!({"deleted": deleted})))
            }
            "finish" => Ok(StepOutcome::note(json!({}))),
            other => Err(unknown_step(job, other)),
        }
    }

    pub(crate) async fn reprotect_step(&self, job: &Job, step: &str) -> Result<StepOutcome, PipelineError> {
        let mut group = self.group(&job.target)?;
        let mut items = self.group_items(&job.target)?;
        let alternate = job.params["alternate"].as_bool().unwrap_or(false);
        match step {
            "prerequisites" => {
                let target = if alternate { prereq::ReprotectTarget::AlternateLocation } else { prereq::ReprotectTarget::OriginalVm };
                let op = prereq::Operation::Reprotect { direction: prereq::Direction::AzureToOnPrem, target };
                self.check_prerequisites(&group, &items, &job.params, op).await
            }
            "begin" => self.begin_reprotect(job, &mut group, &mut items),
            "prepare-targets" => {
                let mut out = Vec::new();
                for item in items.iter_mut() {
                    let plugin = self.site(&item.onprem_site)?.plugin.clone();
                    if alternate {
                        let mt = self.master_target(group.master_target.as_deref().unwrap_or_default())?;
                        let name = format!("{}-failback-g{}", item.name, group.generation);
                        let vm = match plugin.list_vms().await.map_err(PipelineError::adapter(&item.onprem_site, "inventory.list-vms", "the site"))?.into_iter().find(|v| v.name == name) {
                            Some(vm) => vm,
                            None => {
                                let spec = VmSpec {
                                    name: name.clone(),
                                    guest_os: item.guest_os.clone(),
                                    cpu_count: item.cpu_count,
                                    memory_mib: item.memory_mib,
                                    host: mt.host.clone(),
                                    datastore: mt.registered_datastore.clone(),
                                    networks: Vec::new(),
                                    disks: item
                                        .disks
                                        .iter()
                                        .map(|d| homeward_plugin_host::bindings::compute::DiskSpec { label: d.label.clone(), capacity_bytes: d.capacity_bytes, datastore: mt.registered_datastore.clone(), thin: true })
                                        .collect(),
                                    extra_config: Vec::new(),
                                };
                                let op = plugin.create_vm(spec).await.map_err(PipelineError::adapter(&item.onprem_site, "compute.create-vm", &name))?;
                                let id = self.wait(&item.onprem_site, op, "compute.create-vm", &name).await?.unwrap_or_default();
                                plugin.get_vm(&id).await.map_err(PipelineError::adapter(&item.onprem_site, "inventory.get-vm", &id))?
                            }
                        };
                        self.power_off_gracefully(&item.onprem_site, &vm.id).await?;
                        item.onprem_vm = Some(vm.id.clone());
                        for (d, new) in item.disks.iter_mut().zip(vm.disks.iter()) {
                            d.onprem_disk = Some(new.id.clone());
                        }
                        out.push(json!({"item": item.name, "vm": vm.id, "created": true}));
                    } else {
                        let vm = item.original_vm.clone().unwrap_or_default();
                        self.power_off_gracefully(&item.onprem_site, &vm).await?;
                        item.onprem_vm = Some(vm.clone());
                        out.push(json!({"item": item.name, "vm": vm, "created": false}));
                    }
                    self.save_item(item)?;
                }
                Ok(StepOutcome::note(json!({"targets": out})))
            }
            "initial-resync" => self.sync_step(job, &mut group, &mut items, alternate).await,
            "finish" => self.set_state(&mut items, ItemState::Protected, Some(Direction::AzureToOnPrem)),
            other => Err(unknown_step(job, other)),
        }
    }

    pub(crate) async fn failback_step(&self, job: &Job, step: &str) -> Result<StepOutcome, PipelineError> {
        let group = self.group(&job.target)?;
        let mut items = self.group_items(&job.target)?;
        let kind: FailoverKind = serde_json::from_value(job.params["kind"].clone()).unwrap_or(FailoverKind::Unplanned);
        match step {
            "prerequisites" => {
                let op = prereq::Operation::Failover { direction: prereq::Direction::AzureToOnPrem, kind: prereq_kind(kind) };
                self.check_prerequisites(&group, &items, &job.params, op).await
            }
            "shut-down-azure" => {
                for item in &items {
                    self.power_off_gracefully(&item.azure_site, item.azure_vm.as_deref().unwrap_or_default()).await?;
                }
                Ok(StepOutcome::note(json!({"shut_down": items.iter().map(|i| &i.azure_vm).collect::<Vec<_>>()})))
            }
            "final-sync" => {
                let c = self.cycle(&job.target).await?;
                Ok(StepOutcome { bytes_sent: c.bytes_sent, bytes_changed: c.bytes_changed, output: serde_json::to_value(&c).unwrap_or_default() })
            }
            "choose-point" => self.choose_point(&group, job).await,
            "apply-point" => self.apply_point(job, &group, &items).await,
            "power-on" => {
                let mut on = Vec::new();
                for item in &items {
                    let vm = item.onprem_vm.clone().unwrap_or_default();
                    let op = self.site(&item.onprem_site)?.plugin.power_on(&vm).await.map_err(PipelineError::adapter(&item.onprem_site, "compute.power-on", &vm))?;
                    self.wait(&item.onprem_site, op, "compute.power-on", &vm).await?;
                    on.push(item.name.clone());
                    // Killed with part of the plan booted: the rerun finds them on.
                    crate::jobs::crash_point("power-on", crate::jobs::CrashPhase::Mid);
                }
                Ok(StepOutcome::note(json!({"powered_on": on})))
            }
            "finish" => self.set_state(&mut items, ItemState::FailedBack, None),
            other => Err(unknown_step(job, other)),
        }
    }

    pub(crate) async fn commit_step(&self, job: &Job, step: &str) -> Result<StepOutcome, PipelineError> {
        let mut group = self.group(&job.target)?;
        let mut items = self.group_items(&job.target)?;
        match step {
            "delete-snapshots" => {
                let mut removed = Vec::new();
                for item in &items {
                    let Some(vm) = item.azure_vm.clone() else { continue };
                    let plugin = &self.site(&item.azure_site)?.plugin;
                    let info = match plugin.get_vm(&vm).await {
                        Ok(v) => v,
                        Err(e) if kind_is(&e, not_found) => continue,
                        Err(e) => return Err(PipelineError::adapter(&item.azure_site, "inventory.get-vm", &vm)(e)),
                    };
                    for s in info.snapshots.iter().filter(|s| s.name.starts_with("hw-")) {
                        match plugin.remove_snapshot(&vm, &s.name).await {
                            Ok(op) => {
                                self.wait(&item.azure_site, op, "compute.remove-snapshot", &vm).await?;
                            }
                            Err(e) if kind_is(&e, not_found) => {}
                            Err(e) => return Err(PipelineError::adapter(&item.azure_site, "compute.remove-snapshot", &vm)(e)),
                        }
                        removed.push(s.name.clone());
                    }
                }
                group.base_snapshots.clear();
                self.save_group(&group)?;
                Ok(StepOutcome::note(json!({"removed": removed})))
            }
            "delete-azure-vms" => {
                let mut deleted = Vec::new();
                for item in &items {
                    if let Some(vm) = &item.azure_vm {
                        self.delete_vm(&item.azure_site, vm).await?;
                        deleted.push(vm.clone());
                    }
                }
                Ok(StepOutcome::note(json!({"deleted": deleted})))
            }
            "finish" => {
                for item in items.iter_mut() {
                    item.state = ItemState::Committed;
                    item.azure_vm = None;
                    for d in item.disks.iter_mut() {
                        d.azure_disk = None;
                    }
                    self.save_item(item)?;
                }
                Ok(StepOutcome::note(json!({"state": "committed"})))
            }
            other => Err(unknown_step(job, other)),
        }
    }

    // ---- shared pieces ----

    /// The initial sync (forward) or resync (back) of a group's new generation.
    async fn sync_step(&self, job: &Job, group: &mut Group, items: &mut [Item], targets_are_new: bool) -> Result<StepOutcome, PipelineError> {
        let (report, sent, changed) = self.initial_sync(job.id, group, items, targets_are_new).await?;
        self.save_group(group)?;
        Ok(StepOutcome { output: json!({"disks": report}), bytes_sent: sent, bytes_changed: changed })
    }

    /// Moves every item of a group to `state` (and `direction`). Idempotent.
    fn set_state(&self, items: &mut [Item], state: ItemState, direction: Option<Direction>) -> Result<StepOutcome, PipelineError> {
        for item in items.iter_mut() {
            item.state = state;
            if let Some(d) = direction {
                item.direction = d;
            }
            self.save_item(item)?;
        }
        Ok(StepOutcome::note(json!({"state": items.first().map(|i| i.state.label(i.direction))})))
    }

    async fn choose_point(&self, group: &Group, job: &Job) -> Result<StepOutcome, PipelineError> {
        let choice: PointChoice = serde_json::from_value(job.params["point"].clone()).unwrap_or(PointChoice::Latest);
        let kind: FailoverKind = serde_json::from_value(job.params["kind"].clone()).unwrap_or(FailoverKind::Unplanned);
        let dir = std::path::PathBuf::from(group.journal_dir.clone().unwrap_or_default());
        let (journal, _) = Journal::open(&dir, JournalConfig::default()).map_err(|e| PipelineError::replication(format!("journal {}", dir.display()))(e.into()))?;
        let points = journal.points();
        let point = match (kind, choice) {
            // A planned failover has just synced the shut-down source: its newest point
            // is the last write, so no data is lost.
            (FailoverKind::Planned, _) | (_, PointChoice::Latest) => points.last().copied(),
            (_, PointChoice::LatestAppConsistent) => points.iter().rev().find(|p| p.consistency == Consistency::App).copied(),
            (_, PointChoice::Seq(n)) => points.iter().find(|p| p.seq == n).copied(),
        }
        .ok_or_else(|| PipelineError::NotFound {
            what: "recovery point",
            name: format!("{choice:?}"),
            fix: format!("choose one of the retained points: {}", points.iter().map(|p| p.seq.to_string()).collect::<Vec<_>>().join(", ")),
        })?;
        Ok(StepOutcome::note(json!({"seq": point.seq, "time_ms": point.time_ms, "consistency": if point.consistency == Consistency::App { "app" } else { "crash" }})))
    }

    /// Rolls the replicas back to the chosen point (a no-op at the newest point), after
    /// finishing whatever a crash left in the journal.
    async fn apply_point(&self, job: &Job, group: &Group, items: &[Item]) -> Result<StepOutcome, PipelineError> {
        let seq = self.step_output(job.id, "choose-point")?["seq"].as_u64().unwrap_or(0);
        let dir = std::path::PathBuf::from(group.journal_dir.clone().unwrap_or_default());
        let object = format!("group {}", group.name);
        let (mut journal, _) = Journal::open(&dir, JournalConfig::default()).map_err(|e| PipelineError::replication(object.clone())(e.into()))?;
        let (replicas, handles) = self.open_replicas(group, items).await?;
        let result = async {
            journal.resume(&replicas).await.map_err(|e| PipelineError::replication(object.clone())(e.into()))?;
            let newest = journal.newest_point().map(|p| p.seq);
            if newest != Some(seq) {
                journal.rewind_replicas(seq, &replicas).await.map_err(|e| PipelineError::replication(object.clone())(e.into()))?;
            }
            Ok::<_, PipelineError>(newest)
        }
        .await;
        self.close_all(&handles).await;
        let newest = result?;
        let keep: Vec<u64> = journal.points().iter().map(|p| p.seq).collect();
        self.store.retain_points(&group.name, group.generation, &keep)?;
        Ok(StepOutcome::note(json!({"point": seq, "was_newest": newest == Some(seq)})))
    }

    async fn copy_point_to_test_disks(&self, job: &Job, group: &Group, items: &[Item]) -> Result<StepOutcome, PipelineError> {
        let seq = self.step_output(job.id, "choose-point")?["seq"].as_u64().unwrap_or(0);
        let names = self.step_output(job.id, "create-test-disks")?;
        let dir = std::path::PathBuf::from(group.journal_dir.clone().unwrap_or_default());
        let object = format!("group {}", group.name);
        let (mut journal, _) = Journal::open(&dir, JournalConfig::default()).map_err(|e| PipelineError::replication(object.clone())(e.into()))?;
        let (replicas, handles) = self.open_replicas(group, items).await?;
        // Test disks: opened for upload, filled with the point, then finished.
        let mut targets = homeward_replication::journal::DiskSet::new();
        let mut test_handles = Vec::new();
        let mut ids = serde_json::Map::new();
        let mut n = 0u32;
        for item in items {
            let site = self.site(&item.azure_site)?;
            let mut item_ids = Vec::new();
            for (i, d) in item.disks.iter().enumerate() {
                let name = names[&item.name][i].as_str().unwrap_or_default().to_string();
                let spec = NewDisk { name: name.clone(), capacity_bytes: d.capacity_bytes, datastore: None, guest_os: (i == 0).then(|| item.guest_os.clone()) };
                let op = site.plugin.create_disk(spec).await.map_err(PipelineError::adapter(&item.azure_site, "disks.create-disk", &name))?;
                let id = self.wait(&item.azure_site, op, "disks.create-disk", &name).await?.unwrap_or(name);
                let open = self.open_disk(&item.azure_site, "", &id, None, AccessMode::ReadWrite).await?;
                crate::datapath::write_vhd_footer(&open, &id).await?;
                targets.insert(n, open.transport.clone());
                test_handles.push((item.azure_site.clone(), open));
                item_ids.push(id);
                n += 1;
            }
            ids.insert(item.name.clone(), json!(item_ids));
        }
        // A cycle cut short by a crash is rolled back first: the point is then exactly
        // what the journal recorded, whatever the last cycle left on the replicas.
        let result = async {
            journal.resume(&replicas).await?;
            journal.materialise(seq, &replicas, &targets).await
        }
        .await
        .map_err(|e| PipelineError::replication(object.clone())(e.into()));
        self.close_all(&handles).await;
        // Closing the test disks finishes their upload, so a VM can attach them.
        for (site, h) in &test_handles {
            self.finish_disk(site, h).await;
        }
        result?;
        Ok(StepOutcome::note(serde_json::Value::Object(ids)))
    }

    async fn create_azure_vm(&self, item: &Item, name: &str, network: &str, attach: Vec<String>) -> Result<String, PipelineError> {
        let plugin = &self.site(&item.azure_site)?.plugin;
        let networks = plugin.list_networks().await.map_err(PipelineError::adapter(&item.azure_site, "inventory.list-networks", "the site"))?;
        let net = networks.iter().find(|n| n.id.eq_ignore_ascii_case(network) || n.name == network).ok_or_else(|| PipelineError::NotFound {
            what: "Azure network",
            name: network.to_string(),
            fix: format!("choose one of: {}", networks.iter().map(|n| n.name.clone()).collect::<Vec<_>>().join(", ")),
        })?;
        let spec = VmSpec {
            name: name.to_string(),
            guest_os: item.guest_os.clone(),
            cpu_count: item.cpu_count,
            memory_mib: item.memory_mib,
            host: None,
            datastore: None,
            networks: vec![net.id.clone()],
            disks: Vec::new(),
            extra_config: Vec::new(),
        };
        match plugin.create_vm_from_disks(spec, attach).await {
            Ok(op) => Ok(self.wait(&item.azure_site, op, "compute.create-vm-from-disks", name).await?.unwrap_or_default()),
            Err(e) if kind_is(&e, |e| matches!(e, AdapterError::AlreadyExists(_))) => {
                // An earlier attempt created it before a crash.
                let vms = plugin.list_vms().await.map_err(PipelineError::adapter(&item.azure_site, "inventory.list-vms", "the site"))?;
                vms.into_iter().find(|v| v.name == name).map(|v| v.id).ok_or_else(|| PipelineError::adapter(&item.azure_site, "compute.create-vm-from-disks", name)(e))
            }
            Err(e) => Err(PipelineError::adapter(&item.azure_site, "compute.create-vm-from-disks", name)(e)),
        }
    }

    /// Asks the guest to shut down, and cuts the power where it has no tools.
    /// Idempotent: a VM already off is left alone.
    pub(crate) async fn power_off_gracefully(&self, site: &str, vm: &str) -> Result<(), PipelineError> {
        let plugin = &self.site(site)?.plugin;
        let info = plugin.get_vm(vm).await.map_err(PipelineError::adapter(site, "inventory.get-vm", vm))?;
        if !matches!(info.power_state, PowerState::PoweredOn) {
            return Ok(());
        }
        let op = match plugin.power_off(vm, PowerOffMode::GuestShutdown).await {
            Ok(op) => op,
            Err(e) if kind_is(&e, conflict) => plugin.power_off(vm, PowerOffMode::Hard).await.map_err(PipelineError::adapter(site, "compute.power-off", vm))?,
            Err(e) => return Err(PipelineError::adapter(site, "compute.power-off", vm)(e)),
        };
        self.wait(site, op, "compute.power-off", vm).await?;
        Ok(())
    }

    async fn delete_vm(&self, site: &str, vm: &str) -> Result<(), PipelineError> {
        let plugin = &self.site(site)?.plugin;
        match plugin.get_vm(vm).await {
            Err(e) if kind_is(&e, not_found) => return Ok(()),
            Err(e) => return Err(PipelineError::adapter(site, "inventory.get-vm", vm)(e)),
            Ok(info) if matches!(info.power_state, PowerState::PoweredOn) => {
                let op = plugin.power_off(vm, PowerOffMode::Hard).await.map_err(PipelineError::adapter(site, "compute.power-off", vm))?;
                self.wait(site, op, "compute.power-off", vm).await?;
            }
            Ok(_) => {}
        }
        match plugin.delete_vm(vm).await {
            Ok(op) => {
                self.wait(site, op, "compute.delete-vm", vm).await?;
            }
            Err(e) if kind_is(&e, not_found) => {}
            Err(e) => return Err(PipelineError::adapter(site, "compute.delete-vm", vm)(e)),
        }
        Ok(())
    }
}

fn prereq_kind(kind: FailoverKind) -> prereq::FailoverKind {
    match kind {
        FailoverKind::Planned => prereq::FailoverKind::Planned,
        FailoverKind::Unplanned => prereq::FailoverKind::Unplanned,
        FailoverKind::Test => prereq::FailoverKind::Test,
    }
}

fn unknown_step(job: &Job, step: &str) -> PipelineError {
    PipelineError::Refused {
        object: format!("job {}", job.id),
        message: format!("step `{step}` is unknown to this Homeward"),
        fix: "finish the job with the Homeward version that started it".into(),
    }
}

/// A disk label as a resource-name fragment: `Hard disk 1` → `hard-disk-1`.
fn sanitize(label: &str) -> String {
    let s: String = label.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

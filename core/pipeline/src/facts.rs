//! Gathers the facts the prerequisite rules judge, from the configuration database and
//! live adapter calls, before a job changes anything.

use std::path::Path;

use homeward_plugin_host::{
    AdapterError, CallError,
    bindings::{site::SiteKind, types::DeploymentModel as WitModel},
};
use serde_json::json;

use crate::{
    error::PipelineError,
    model::{Direction, Group, Item, SourceKind},
    pipeline::{Pipeline, StepOutcome},
    prereq::{self, DatastoreDiscovery, DatastoreFacts, EsxiEdition, GuestFamily, MasterTargetFacts, Operation, PrereqFacts, ProcessServerFacts, RetentionVolumeFacts},
    store::{Table, now_ms},
};

fn model_of(m: &WitModel) -> Option<prereq::DeploymentModel> {
    match m {
        WitModel::AzureClassic => Some(prereq::DeploymentModel::Classic),
        WitModel::AzureResourceManager => Some(prereq::DeploymentModel::ResourceManager),
        _ => None,
    }
}

fn model_named(s: &str) -> Option<prereq::DeploymentModel> {
    match s {
        "azure-classic" => Some(prereq::DeploymentModel::Classic),
        "azure-resource-manager" => Some(prereq::DeploymentModel::ResourceManager),
        _ => None,
    }
}

/// The file-system type and capacity of the volume holding `path` (statfs).
pub fn volume_of(path: &Path) -> Option<(String, u64)> {
    use std::ffi::CString;
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let fs = match st.f_type as u64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x4d44 => "vfat",
        0x794c_7630 => "overlay",
        0x6969 => "nfs",
        0x5346_544e => "ntfs",
        0x2011_BAB0 => "exfat",
        _ => "other",
    };
    Some((fs.to_string(), st.f_blocks as u64 * st.f_bsize as u64))
}

impl Pipeline {
    /// Checks every prerequisite of `op` for every item of the group and reports all
    /// failures at once; nothing has been changed when it fails.
    pub(crate) async fn check_prerequisites(&self, group: &Group, items: &[Item], params: &serde_json::Value, op: Operation) -> Result<StepOutcome, PipelineError> {
        // A reprotect names its master target and process server in its parameters; they
        // join the group only once these checks pass.
        let mut group = group.clone();
        if op.is_reprotect_to_on_prem() {
            group.master_target = params["master_target"].as_str().map(str::to_string).or(group.master_target);
            group.process_server = params["process_server"].as_str().map(str::to_string).or(group.process_server);
        }
        let group = &group;
        let mut failures = Vec::new();
        for item in items {
            let facts = self.gather_facts(group, items, item, params, &op).await?;
            failures.extend(prereq::check(&op, &facts));
        }
        // The same group-level failure is found once per member; report it once.
        failures.dedup_by(|a, b| a.rule == b.rule && a.object == b.object);
        let mut seen = std::collections::HashSet::new();
        failures.retain(|f| seen.insert((f.rule, f.object.clone())));
        if failures.is_empty() {
            return Ok(StepOutcome::note(json!({"checked": items.iter().map(|i| &i.name).collect::<Vec<_>>(), "failures": 0})));
        }
        Err(PipelineError::Prerequisites(prereq::PrereqError { operation: op, failures }))
    }

    /// The facts for one item.
    pub async fn gather_facts(&self, group: &Group, items: &[Item], item: &Item, params: &serde_json::Value, op: &Operation) -> Result<PrereqFacts, PipelineError> {
        let mut f = PrereqFacts::default();
        // Only reprotect says how it was asked; other operations act on the whole group.
        let via_plan = match params["via_plan"].as_bool() {
            Some(v) => v,
            None => self.store.group_plan(&group.name)?.is_some(),
        };
        f.item = prereq::ItemFacts {
            name: item.name.clone(),
            in_database: self.store.get::<Item>(Table::Items, &item.name)?.is_some(),
            source_kind: if item.source_kind == SourceKind::Physical { prereq::SourceKind::PhysicalServer } else { prereq::SourceKind::VmwareVm },
            guest_os: item.guest_os.clone(),
            service_pack: None,
            replication_group: (items.len() > 1).then(|| group.name.clone()),
            via_recovery_plan: via_plan,
            azure_deployment_model: None,
            azure_network_id: None,
            failback_target: Some(if item.failback_to_alternate { prereq::ReprotectTarget::AlternateLocation } else { prereq::ReprotectTarget::OriginalVm }),
        };
        let toward_onprem = op.is_reprotect_to_on_prem() || op.is_failback();
        // The Azure VM's model and network, for the process-server rules.
        if toward_onprem && let Some(vm) = &item.azure_vm {
            let plugin = &self.site(&item.azure_site)?.plugin;
            if let Ok(v) = plugin.get_vm(vm).await {
                f.item.azure_deployment_model = model_of(&v.deployment_model);
                f.item.azure_network_id = v.nics.first().map(|n| n.network.clone());
            }
        }
        // Process server: the built-in one on this machine for the forward direction;
        // the registered Azure one for failback.
        if op.is_reprotect_to_on_prem() {
            f.process_server = Some(match group.process_server.as_deref().map(|n| self.store.get::<crate::model::ProcessServer>(Table::ProcessServers, n)) {
                Some(Ok(Some(mut ps))) => {
                    self.refresh_heartbeat(&mut ps).await?;
                    ProcessServerFacts {
                        name: ps.name.clone(),
                        registered: true,
                        deployment_model: model_named(&ps.deployment_model),
                        network_id: Some(ps.network.clone()),
                        heartbeat_age_secs: ps.heartbeat_ms.map(|t| now_ms().saturating_sub(t) / 1000),
                    }
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(None)) => ProcessServerFacts { name: group.process_server.clone().unwrap_or_default(), registered: false, ..Default::default() },
                None => ProcessServerFacts { name: "(none chosen)".into(), registered: false, ..Default::default() },
            });
        } else {
            f.process_server = Some(ProcessServerFacts { name: "built-in process server".into(), registered: true, deployment_model: None, network_id: None, heartbeat_age_secs: Some(0) });
        }
        let onprem = self.site(&item.onprem_site)?;
        if toward_onprem {
            let info = onprem.plugin.describe().await.map_err(PipelineError::adapter(&onprem.name, "site.describe", "the site"))?;
            f.on_prem_site = Some(prereq::OnPremSiteFacts {
                name: onprem.name.clone(),
                standalone_esxi: matches!(info.kind, SiteKind::Esxi),
                esxi_edition: if info.licence.as_ref().is_some_and(|l| l.free) { EsxiEdition::Free } else { EsxiEdition::Licensed },
            });
        }
        if op.is_reprotect_to_on_prem() {
            let datastores = onprem.plugin.list_datastores().await;
            f.vcenter = Some(prereq::VcenterFacts {
                server: onprem.name.clone(),
                datastore_discovery: match &datastores {
                    Err(CallError::Adapter { error: AdapterError::PermissionDenied(_), .. }) => DatastoreDiscovery::PermissionDenied,
                    _ => DatastoreDiscovery::Succeeded,
                },
            });
            let datastores = datastores.unwrap_or_default();
            let ds_facts = |id: &str| {
                datastores
                    .iter()
                    .find(|d| d.id == id)
                    .map(|d| DatastoreFacts { id: d.id.clone(), name: d.name.clone(), accessible_from: d.accessible_from.clone() })
                    .unwrap_or(DatastoreFacts { id: id.to_string(), name: id.to_string(), accessible_from: Vec::new() })
            };
            let hosts = onprem.plugin.list_hosts().await.unwrap_or_default();
            f.master_target = Some(match group.master_target.as_deref().map(|n| self.store.get::<crate::model::MasterTarget>(Table::MasterTargets, n)) {
                Some(Ok(Some(mt))) => {
                    let vm = onprem.plugin.get_vm(&mt.vm).await.ok();
                    let path = Path::new(&mt.retention_path);
                    let volume = volume_of(path).or_else(|| path.parent().and_then(volume_of));
                    let others: Vec<String> = self
                        .store
                        .list::<crate::model::MasterTarget>(Table::MasterTargets)?
                        .into_iter()
                        .filter(|o| o.name != mt.name && Path::new(&o.retention_path) == path)
                        .map(|o| format!("master target {}", o.name))
                        .collect();
                    MasterTargetFacts {
                        name: mt.name.clone(),
                        registered: true,
                        os_family: if mt.os_family == "windows" { GuestFamily::Windows } else { GuestFamily::Linux },
                        esx_host_id: mt.host.clone(),
                        esx_host_name: mt.host.as_ref().and_then(|h| hosts.iter().find(|x| &x.id == h).map(|x| x.name.clone())),
                        esx_host_discovered: mt.host.as_ref().is_some_and(|h| hosts.iter().any(|x| &x.id == h)),
                        disk_enable_uuid: vm.as_ref().and_then(|v| v.extra_config.iter().find(|kv| kv.key.eq_ignore_ascii_case("disk.EnableUUID")).map(|kv| kv.value.clone())),
                        registered_datastore: mt.registered_datastore.clone(),
                        current_datastore: vm.as_ref().and_then(|v| v.disks.first().and_then(|d| d.datastore.clone())),
                        retention_volume: Some(RetentionVolumeFacts {
                            path: mt.retention_path.clone(),
                            filesystem: volume.as_ref().map(|v| v.0.clone()).unwrap_or_default(),
                            capacity_bytes: volume.as_ref().map_or(0, |v| v.1),
                            locked: retention_locked(path),
                            in_use_by: others,
                            is_cache_volume: path.starts_with(&self.data_dir) || self.data_dir.starts_with(path),
                        }),
                    }
                }
                Some(Err(e)) => return Err(e),
                _ => MasterTargetFacts { name: group.master_target.clone().unwrap_or_else(|| "(none chosen)".into()), registered: false, ..Default::default() },
            });
            let original = item.original_vm.clone().unwrap_or_default();
            f.original_vm = Some(match onprem.plugin.get_vm(&original).await {
                Ok(v) => {
                    let mut ids: Vec<String> = v.disks.iter().filter_map(|d| d.datastore.clone()).collect();
                    ids.sort();
                    ids.dedup();
                    prereq::OriginalVmFacts { name: v.name.clone(), exists: true, datastores: ids.iter().map(|i| ds_facts(i)).collect(), snapshots: v.snapshots.iter().map(|s| s.name.clone()).collect() }
                }
                Err(_) => prereq::OriginalVmFacts { name: item.name.clone(), exists: false, ..Default::default() },
            });
            if let Some(Some(mt)) = group.master_target.as_deref().map(|n| self.store.get::<crate::model::MasterTarget>(Table::MasterTargets, n).ok().flatten()) {
                f.target_datastore = mt.registered_datastore.as_deref().map(ds_facts);
            }
            f.group = Some(prereq::GroupFacts {
                name: group.name.clone(),
                members: items.iter().map(|i| prereq::GroupMember { item: i.name.clone(), master_target: group.master_target.clone().or_else(|| params["master_targets"][&i.name].as_str().map(str::to_string)) }).collect(),
            });
        }
        if matches!(op, Operation::Reprotect { direction: prereq::Direction::OnPremToAzure, .. } | Operation::Protect) && group.direction == Direction::OnPremToAzure && items.len() > 1 {
            f.group = Some(prereq::GroupFacts { name: group.name.clone(), members: items.iter().map(|i| prereq::GroupMember { item: i.name.clone(), master_target: Some("built-in".into()) }).collect() });
        }
        Ok(f)
    }

    /// Records a heartbeat when the process server's VM answers powered on.
    pub(crate) async fn refresh_heartbeat(&self, ps: &mut crate::model::ProcessServer) -> Result<(), PipelineError> {
        let plugin = &self.site(&ps.site)?.plugin;
        if let Ok(vm) = plugin.get_vm(&ps.vm).await
            && matches!(vm.power_state, homeward_plugin_host::bindings::types::PowerState::PoweredOn)
        {
            ps.heartbeat_ms = Some(now_ms());
            self.store.put(Table::ProcessServers, &ps.name.clone(), ps)?;
        }
        Ok(())
    }
}

/// Whether another process holds the retention volume's lock file.
fn retention_locked(path: &Path) -> bool {
    let lock = path.join(".homeward-lock");
    match std::fs::read_to_string(&lock) {
        Ok(pid) => pid.trim().parse::<i32>().is_ok_and(|p| p != std::process::id() as i32 && Path::new(&format!("/proc/{p}")).exists()),
        Err(_) => false,
    }
}

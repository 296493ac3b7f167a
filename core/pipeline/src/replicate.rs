//! Replication of a group: snapshots through the source adapter, initial sync or delta
//! resync, change-tracked cycles into the journal of the group's master target, and the
//! recovery points they make.

use std::path::PathBuf;

use homeward_plugin_host::bindings::disks::AccessMode;
use homeward_replication::{
    ReplicationError,
    copy::copy_allocated_unflushed,
    cycle::{DiskChanges, MasterTarget as Mt},
    extent::Extent,
    journal::{Consistency, DiskSet, Journal, JournalConfig, RecoveryPoint},
    progress::ProgressReporter,
    resync::{ResyncOptions, Verified, resync},
    wire::{LoopbackMasterTarget, SessionOptions},
};
use serde::Serialize;
use tracing::info;

use crate::{
    datapath::{OpenDisk, write_vhd_footer},
    error::PipelineError,
    model::{DiskMap, Direction, Group, Item, PointRecord},
    pipeline::{JobProgress, Pipeline, SiteRole},
};

/// The snapshot id taken of each source VM in one cycle.
pub(crate) type Snapshots = std::collections::BTreeMap<String, String>;

/// One end of a disk's replication: a site, a VM (empty for a standalone disk) and a disk.
#[derive(Debug, Clone)]
pub(crate) struct Side {
    pub site: String,
    pub vm: String,
    pub disk: String,
}

/// What a cycle did.
#[derive(Debug, Clone, Serialize)]
pub struct CycleSummary {
    /// The group.
    pub group: String,
    /// The recovery point it made.
    pub seq: u64,
    /// `crash` or `app`.
    pub consistency: String,
    /// When its snapshot was taken.
    pub time_ms: u64,
    /// Changed bytes read.
    pub bytes_changed: u64,
    /// Bytes on the wire after compression.
    pub bytes_sent: u64,
    /// Age of the newest point before this cycle, ms (the RPO that was measured).
    pub rpo_ms: Option<u64>,
}

/// What the initial sync of one disk did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DiskSync {
    pub item: String,
    pub disk: String,
    pub mode: &'static str,
    pub bytes_sent: u64,
    pub blocks_compared: u64,
    pub blocks_sent: u64,
    pub verified: String,
}

fn consistency_name(c: Consistency) -> &'static str {
    match c {
        Consistency::Crash => "crash",
        Consistency::App => "app",
    }
}

impl Pipeline {
    /// The source and target of a disk in `direction`.
    pub(crate) fn sides(&self, item: &Item, d: &DiskMap, direction: Direction) -> Result<(Side, Side), PipelineError> {
        let missing = |what: &str| PipelineError::Refused {
            object: format!("item {} disk {}", item.name, d.label),
            message: format!("it has no {what} recorded"),
            fix: "run the protect or reprotect job for it again".into(),
        };
        let onprem = Side {
            site: item.onprem_site.clone(),
            vm: item.onprem_vm.clone().ok_or_else(|| missing("on-premises VM"))?,
            disk: d.onprem_disk.clone().ok_or_else(|| missing("on-premises disk"))?,
        };
        let azure_disk = d.azure_disk.clone().ok_or_else(|| missing("Azure disk"))?;
        Ok(match direction {
            // Forward replicas are standalone disks until a failover attaches them.
            Direction::OnPremToAzure => (onprem, Side { site: item.azure_site.clone(), vm: String::new(), disk: azure_disk }),
            Direction::AzureToOnPrem => {
                let vm = item.azure_vm.clone().ok_or_else(|| missing("Azure VM"))?;
                (Side { site: item.azure_site.clone(), vm, disk: azure_disk }, onprem)
            }
        })
    }

    /// The journal directory of the group's current generation.
    pub(crate) fn journal_dir(&self, group: &Group) -> Result<PathBuf, PipelineError> {
        let name = format!("{}-g{}", group.name, group.generation);
        Ok(match group.direction {
            Direction::OnPremToAzure => self.data_dir.join("retention").join(name),
            Direction::AzureToOnPrem => {
                let mt = self.master_target(group.master_target.as_deref().unwrap_or_default())?;
                PathBuf::from(mt.retention_path).join("homeward").join(name)
            }
        })
    }

    /// Takes one snapshot per source VM of the group, named uniquely, after removing
    /// snapshots an interrupted attempt left behind. Returns each source VM's snapshot id.
    pub(crate) async fn snapshot_sources(&self, group: &mut Group, items: &[Item], quiesce: bool) -> Result<Snapshots, PipelineError> {
        group.snapshot_counter += 1;
        let name = format!("hw-g{}-{}", group.generation, group.snapshot_counter);
        let mut ids = Snapshots::new();
        // Saved first, so a crash after the snapshot never reuses its name.
        self.save_group(group)?;
        for item in items {
            let (src, _) = self.sides(item, &item.disks[0], group.direction)?;
            let plugin = &self.site(&src.site)?.plugin;
            let vm = plugin.get_vm(&src.vm).await.map_err(PipelineError::adapter(&src.site, "inventory.get-vm", &src.vm))?;
            for s in vm.snapshots.iter().filter(|s| s.name.starts_with("hw-") && Some(s.id.as_str()) != group.base_snapshot(&src.vm)) {
                info!(vm = %src.vm, snapshot = %s.name, "removing a snapshot an interrupted cycle left");
                let op = plugin.remove_snapshot(&src.vm, &s.id).await.map_err(PipelineError::adapter(&src.site, "compute.remove-snapshot", &src.vm))?;
                self.wait(&src.site, op, "compute.remove-snapshot", &src.vm).await?;
            }
            let op = match plugin.create_snapshot(&src.vm, &name, quiesce).await {
                Ok(op) => op,
                // A quiesced snapshot needs guest tools; a crash-consistent one still
                // protects the data, and the point says which it is.
                Err(homeward_plugin_host::CallError::Adapter { error: homeward_plugin_host::AdapterError::Unsupported(_), .. }) if quiesce => {
                    plugin.create_snapshot(&src.vm, &name, false).await.map_err(PipelineError::adapter(&src.site, "compute.create-snapshot", &src.vm))?
                }
                Err(e) => return Err(PipelineError::adapter(&src.site, "compute.create-snapshot", &src.vm)(e)),
            };
            let id = self.wait(&src.site, op, "compute.create-snapshot", &src.vm).await?.unwrap_or_else(|| name.clone());
            ids.insert(src.vm.clone(), id);
        }
        Ok(ids)
    }

    /// Releases the snapshots of a finished cycle: on Azure the newest stays as the base
    /// the next page diff is taken against, and the previous base goes; on vSphere the
    /// change id is enough, so the snapshot goes at once.
    pub(crate) async fn release_snapshots(&self, group: &mut Group, items: &[Item], snapshots: &Snapshots) -> Result<(), PipelineError> {
        for item in items {
            let (src, _) = self.sides(item, &item.disks[0], group.direction)?;
            let site = self.site(&src.site)?;
            let Some(snapshot) = snapshots.get(&src.vm).map(String::as_str) else { continue };
            let drop = if site.role == SiteRole::Azure {
                let old = group.base_snapshot(&src.vm).map(str::to_string);
                group.set_base_snapshot(&src.vm, Some(snapshot.to_string()));
                old
            } else {
                Some(snapshot.to_string())
            };
            if let Some(old) = drop.filter(|o| o != snapshot || site.role != SiteRole::Azure) {
                match site.plugin.remove_snapshot(&src.vm, &old).await {
                    Ok(op) => {
                        self.wait(&src.site, op, "compute.remove-snapshot", &src.vm).await?;
                    }
                    Err(homeward_plugin_host::CallError::Adapter { error: homeward_plugin_host::AdapterError::NotFound(_), .. }) => {}
                    Err(e) => return Err(PipelineError::adapter(&src.site, "compute.remove-snapshot", &src.vm)(e)),
                }
            }
        }
        self.save_group(group)
    }

    /// The changed (and cleared) extents of a disk between `since` and `snapshot`, and the
    /// new change id.
    pub(crate) async fn changes(&self, src: &Side, snapshot: &str, since: &str, capacity: u64) -> Result<(Vec<Extent>, String), PipelineError> {
        let plugin = &self.site(&src.site)?.plugin;
        let (mut extents, mut start) = (Vec::new(), 0u64);
        let id;
        loop {
            let cs = plugin
                .changed_areas(&src.vm, &src.disk, snapshot, since, start)
                .await
                .map_err(PipelineError::adapter(&src.site, "disks.changed-areas", &format!("disk {} of {}", src.disk, src.vm)))?;
            // Cleared ranges are changes too: reading them from the snapshot gives zeros,
            // which the master target writes.
            extents.extend(cs.changed.iter().chain(cs.cleared.iter()).map(|e| Extent::new(e.offset, e.length)));
            start = cs.start_offset + cs.length;
            if cs.length == 0 || start >= capacity {
                id = cs.change_id;
                break;
            }
        }
        Ok((homeward_replication::extent::normalize(extents), id))
    }

    /// Opens every replica of the group for writing, in group disk order.
    pub(crate) async fn open_replicas(&self, group: &Group, items: &[Item]) -> Result<(DiskSet, Vec<(String, OpenDisk)>), PipelineError> {
        let mut set = DiskSet::new();
        let mut handles = Vec::new();
        let mut n = 0u32;
        for item in items {
            for d in &item.disks {
                let (_, dst) = self.sides(item, d, group.direction)?;
                let open = self.open_disk(&dst.site, &dst.vm, &dst.disk, None, AccessMode::ReadWrite).await?;
                set.insert(n, open.transport.clone());
                handles.push((dst.site.clone(), open));
                n += 1;
            }
        }
        Ok((set, handles))
    }

    pub(crate) async fn close_all(&self, handles: &[(String, OpenDisk)]) {
        for (site, h) in handles {
            self.close_disk(site, h).await;
        }
    }

    /// Publishes a transfer's progress (bytes, rate, ETA) as job progress, at most twice
    /// a second, until the returned task is aborted. `job` 0 is a transfer outside any job
    /// (a replication cycle).
    pub(crate) fn watch_progress(&self, job: u64, detail: String, mut rx: tokio::sync::watch::Receiver<homeward_replication::progress::Progress>) -> tokio::task::JoinHandle<()> {
        let sink = self.progress.clone();
        tokio::spawn(async move {
            let Some(sink) = sink else { return };
            let mut last = std::time::Instant::now();
            while rx.changed().await.is_ok() {
                if last.elapsed() < std::time::Duration::from_millis(500) {
                    continue;
                }
                last = std::time::Instant::now();
                let p = rx.borrow().clone();
                sink(&JobProgress {
                    job,
                    step: "transfer".into(),
                    step_no: 0,
                    steps: 0,
                    detail: format!("{detail}, {:.1} MiB/s", p.rate_bytes_per_sec / (1 << 20) as f64),
                    bytes_done: p.bytes_done,
                    bytes_total: p.bytes_total,
                    eta_secs: p.eta.map(|e| e.as_secs_f64()),
                });
            }
        })
    }

    /// The initial sync of a group's generation: snapshot the sources, make every target
    /// equal to its source (delta resync where the target exists, allocated-extent copy
    /// where it is new), verify both sides by hash tree, and start the journal at that
    /// point.
    pub(crate) async fn initial_sync(&self, job: u64, group: &mut Group, items: &mut [Item], targets_are_new: bool) -> Result<(Vec<DiskSync>, u64, u64), PipelineError> {
        let snaps = self.snapshot_sources(group, items, true).await?;
        let time_ms = self.now();
        let (mut report, mut sent, mut changed) = (Vec::new(), 0u64, 0u64);
        for item in items.iter_mut() {
            for di in 0..item.disks.len() {
                let (src, dst) = self.sides(item, &item.disks[di], group.direction)?;
                let d = item.disks[di].clone();
                let object = format!("item {} disk {}", item.name, d.label);
                let snapshot = snaps.get(&src.vm).cloned().unwrap_or_default();
                let (extents, change_id) = self.changes(&src, &snapshot, "*", d.capacity_bytes).await?;
                let source = self.open_disk(&src.site, &src.vm, &src.disk, Some(&snapshot), AccessMode::ReadOnly).await?;
                let target = self.open_disk(&dst.site, &dst.vm, &dst.disk, None, AccessMode::ReadWrite).await?;
                let result = async {
                    write_vhd_footer(&target, &object).await?;
                    let allocated: u64 = extents.iter().map(|e| e.len).sum();
                    let (reporter, rx) = ProgressReporter::new(d.capacity_bytes * 2, 0);
                    let mode = if targets_are_new { "copy, then verify by hash tree" } else { "delta resync by hash, then verify" };
                    let watcher = self.watch_progress(job, format!("{object}: {mode}"), rx);
                    let mut bytes = 0;
                    // The resync below verifies the copy and ends with the target's flush,
                    // so the copy is written back while it is verified.
                    let copied = if targets_are_new {
                        copy_allocated_unflushed(source.transport.as_ref(), target.transport.as_ref(), Some(&reporter))
                            .await
                            .map_err(|e| PipelineError::Replication { object: object.clone(), error: e.into() })
                            .map(|c| c.bytes_written)
                    } else {
                        Ok(0)
                    };
                    let mode = if targets_are_new { "copy" } else { "delta-resync" };
                    bytes += match copied {
                        Ok(b) => b,
                        Err(e) => {
                            watcher.abort();
                            return Err(e);
                        }
                    };
                    // After a copy this only verifies (and repairs what differs, saying so);
                    // against an existing target it sends just the differing blocks.
                    let r = resync(source.transport.as_ref(), target.transport.as_ref(), ResyncOptions::default(), Some(&reporter)).await;
                    watcher.abort();
                    let r = r.map_err(PipelineError::replication(object.clone()))?;
                    bytes += r.bytes_sent;
                    let verified = match r.verified {
                        Verified::Identical => "identical".to_string(),
                        Verified::Repaired { blocks } => {
                            self.store.event("warning", &object, "resync-repaired", &format!("verification found {blocks} blocks still differing; they were sent again and now match"))?;
                            format!("repaired {blocks} blocks")
                        }
                    };
                    self.emit(JobProgress {
                        job,
                        step: "transfer".into(),
                        step_no: 0,
                        steps: 0,
                        detail: format!("{object}: {mode} sent {} KiB of {} KiB compared, verified {verified}", bytes / 1024, r.blocks_total * homeward_replication::hash::DEFAULT_BLOCK / 1024),
                        bytes_done: 0,
                        bytes_total: 0,
                        eta_secs: None,
                    });
                    Ok::<_, PipelineError>((DiskSync { item: item.name.clone(), disk: d.label.clone(), mode, bytes_sent: bytes, blocks_compared: r.blocks_total, blocks_sent: r.blocks_sent, verified }, allocated))
                }
                .await;
                self.close_disk(&src.site, &source).await;
                self.close_disk(&dst.site, &target).await;
                let (sync, allocated) = result?;
                sent += sync.bytes_sent;
                changed += if targets_are_new { allocated } else { sync.blocks_sent * homeward_replication::hash::DEFAULT_BLOCK };
                report.push(sync);
                item.disks[di].change_id = Some(change_id);
                // Killed with some disks synced: the rerun syncs them again, by delta.
                crate::jobs::crash_point(if group.direction == Direction::AzureToOnPrem { "initial-resync" } else { "initial-sync" }, crate::jobs::CrashPhase::Mid);
            }
            self.save_item(item)?;
        }
        let dir = self.journal_dir(group)?;
        if dir.exists() {
            // An attempt that crashed after creating it: the sync above made the replicas
            // whole again, so the journal starts over at this point.
            std::fs::remove_dir_all(&dir).map_err(|e| PipelineError::Io { path: dir.clone(), message: e.to_string() })?;
        }
        let base = RecoveryPoint { seq: 0, time_ms, consistency: Consistency::App };
        Journal::create(&dir, JournalConfig::default(), base).map_err(|e| PipelineError::replication(format!("group {}", group.name))(e.into()))?;
        group.journal_dir = Some(dir.display().to_string());
        group.last_point_ms = Some(time_ms);
        group.last_app_ms = Some(time_ms);
        self.store.retain_points(&group.name, group.generation, &[])?;
        self.store.add_point(&group.name, group.generation, &PointRecord { seq: 0, time_ms, consistency: "app".into(), direction: group.direction.as_str().into() })?;
        self.release_snapshots(group, items, &snaps).await?;
        Ok((report, sent, changed))
    }

    /// Runs one change-tracked cycle of a protected group: one snapshot per VM, changed
    /// areas since the last change ids, read, compress, send, journal, apply, release.
    /// The result is one recovery point for the whole group.
    pub async fn cycle(&self, group_name: &str) -> Result<CycleSummary, PipelineError> {
        let mut group = self.group(group_name)?;
        let mut items = self.group_items(group_name)?;
        if items.iter().any(|i| i.state != crate::model::ItemState::Protected) {
            return Err(PipelineError::Refused {
                object: format!("group {group_name}"),
                message: format!("its items are not all protected ({})", items.iter().map(|i| format!("{} {}", i.name, i.state.label(i.direction))).collect::<Vec<_>>().join(", ")),
                fix: "finish the running protect or reprotect job first (`homeward jobs`)".into(),
            });
        }
        let policy = match group.direction {
            Direction::OnPremToAzure => self.forward_policy.clone(),
            Direction::AzureToOnPrem => crate::model::Policy::failback(),
        };
        let now = self.now();
        let rpo_before = group.last_point_ms.map(|t| now.saturating_sub(t));
        let app_due = group.last_app_ms.is_none_or(|t| now.saturating_sub(t) >= policy.app_consistent_s * 1000);
        let snaps = self.snapshot_sources(&mut group, &items, app_due).await?;
        let time_ms = self.now();
        let mut disks = Vec::new();
        let mut sources = Vec::new();
        let mut new_ids = Vec::new();
        let mut n = 0u32;
        for item in &items {
            for d in &item.disks {
                let (src, _) = self.sides(item, d, group.direction)?;
                let since = d.change_id.clone().unwrap_or_else(|| "*".into());
                let snapshot = snaps.get(&src.vm).cloned().unwrap_or_default();
                let (changed, id) = self.changes(&src, &snapshot, &since, d.capacity_bytes).await?;
                let source = self.open_disk(&src.site, &src.vm, &src.disk, Some(&snapshot), AccessMode::ReadOnly).await?;
                disks.push(DiskChanges { disk: n, source: source.transport.clone(), changed });
                sources.push((src.site.clone(), source));
                new_ids.push(id);
                n += 1;
            }
        }
        let (replicas, handles) = self.open_replicas(&group, &items).await?;
        let dir = PathBuf::from(group.journal_dir.clone().unwrap_or_default());
        let result = async {
            let (journal, report) = Journal::open(&dir, JournalConfig::default()).map_err(|e| PipelineError::replication(format!("journal {}", dir.display()))(e.into()))?;
            if let Some(cut) = &report.tail_cut {
                self.store.event("warning", &format!("journal {}", dir.display()), "journal-tail-cut", &format!("a torn tail was cut at startup: {cut:?}"))?;
            }
            let object = format!("group {group_name}");
            let mut sizes = Vec::new();
            for (id, replica) in &replicas {
                sizes.push((*id, replica.size().await.map_err(|e| PipelineError::replication(object.clone())(e.into()))?));
            }
            // The process-server and master-target roles run in this process, so the cycle
            // crosses loopback TCP through the same framed protocol as between two hosts.
            let server = LoopbackMasterTarget::start(Mt::new(journal, replicas)).await.map_err(|e| PipelineError::replication(object.clone())(e.into()))?;
            let options = SessionOptions { bandwidth: self.bandwidth_limit, codec: self.codec, ..SessionOptions::default() };
            let mut session = server.connect(group_name, &sizes, options).await.map_err(|e| PipelineError::replication(object.clone())(e.into()))?;
            let consistency = if app_due { Consistency::App } else { Consistency::Crash };
            let total: u64 = disks.iter().flat_map(|d| d.changed.iter()).map(|e| e.len).sum();
            let (reporter, rx) = ProgressReporter::new(total, 0);
            // Job 0: a cycle is not a job of its own; the printer shows it by group.
            let watcher = self.watch_progress(0, format!("cycle {} of group {group_name}", session.next_cycle()), rx);
            let sent = session.cycle(&disks, time_ms, consistency, Some(&reporter)).await;
            watcher.abort();
            let sent = match sent {
                Ok(r) => session.close().await.map(|()| r).map_err(ReplicationError::from),
                Err(e) => {
                    // Closing the connection ends the master target's session, which
                    // `finish` waits for.
                    drop(session);
                    Err(e)
                }
            };
            // The master target's own error, if any, explains a failed session best.
            let mt = server.finish().await;
            let (r, mut mt) = match (sent, mt) {
                (Ok(r), Ok(mt)) => (r, mt),
                (_, Err(e)) | (Err(e), _) => return Err(PipelineError::replication(format!("{object} cycle"))(e)),
            };
            let pruned = mt.journal_mut().prune(policy.retention_s * 1000, self.now()).map_err(|e| PipelineError::replication(object.clone())(e.into()))?;
            info!(?pruned, "journal pruned to the policy's retention");
            let keep: Vec<u64> = mt.journal().points().iter().map(|p| p.seq).collect();
            Ok::<_, PipelineError>((r, keep))
        }
        .await;
        for (site, s) in &sources {
            self.close_disk(site, s).await;
        }
        self.close_all(&handles).await;
        let (r, keep) = result?;
        let consistency = consistency_name(r.point.consistency);
        self.store.add_point(&group.name, group.generation, &PointRecord { seq: r.point.seq, time_ms, consistency: consistency.into(), direction: group.direction.as_str().into() })?;
        self.store.retain_points(&group.name, group.generation, &keep)?;
        let mut i = 0;
        for item in items.iter_mut() {
            for d in item.disks.iter_mut() {
                d.change_id = Some(new_ids[i].clone());
                i += 1;
            }
            self.save_item(item)?;
        }
        group.last_point_ms = Some(time_ms);
        if r.point.consistency == Consistency::App {
            group.last_app_ms = Some(time_ms);
        }
        if let Some(rpo) = rpo_before {
            let breached = rpo > policy.rpo_threshold_s * 1000;
            if breached && !group.rpo_breached {
                self.store.event("warning", &format!("group {group_name}"), "rpo-breach", &format!("the newest recovery point was {}s old, over the {} policy's {}s threshold", rpo / 1000, policy.name, policy.rpo_threshold_s))?;
            } else if !breached && group.rpo_breached {
                self.store.event("info", &format!("group {group_name}"), "rpo-recovered", "the RPO is back under the policy's threshold")?;
            }
            group.rpo_breached = breached;
        }
        self.release_snapshots(&mut group, &items, &snaps).await?;
        info!(group = group_name, seq = r.point.seq, bytes_changed = r.bytes_changed, bytes_sent = r.bytes_sent, "cycle done");
        Ok(CycleSummary { group: group_name.to_string(), seq: r.point.seq, consistency: consistency.into(), time_ms, bytes_changed: r.bytes_changed, bytes_sent: r.bytes_sent, rpo_ms: rpo_before })
    }

    /// The retained recovery points of a group's current generation (from its journal).
    pub fn recovery_points(&self, group_name: &str) -> Result<Vec<PointRecord>, PipelineError> {
        let group = self.group(group_name)?;
        self.store.points(&group.name, group.generation)
    }

    /// The measured RPO of a group now (age of its newest point), ms.
    pub fn rpo_ms(&self, group: &Group) -> Option<u64> {
        group.last_point_ms.map(|t| self.now().saturating_sub(t))
    }
}

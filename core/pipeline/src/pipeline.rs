//! The pipeline: the sites and their adapters, the configuration database, and the job
//! runner that drives protected items through their states.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use homeward_plugin_host::{
    Plugin,
    bindings::{
        compute::Operation,
        disks::AccessMode,
    },
};
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, info_span};

use crate::{
    datapath::{OpenDisk, transport_for},
    error::PipelineError,
    jobs::{CrashPhase, Job, JobKind, crash_point},
    model::{Group, Item, MasterTarget, Policy, ProcessServer},
    store::{Store, Table, now_ms},
};

/// Which side of the round trip a site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteRole {
    /// The VMware site (vCenter or standalone ESXi).
    OnPrem,
    /// The Azure site (Resource Manager or classic).
    Azure,
}

impl SiteRole {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteRole::OnPrem => "on-prem",
            SiteRole::Azure => "azure",
        }
    }
}

/// A configured site and its loaded adapter.
#[derive(Clone)]
pub struct SiteHandle {
    /// The site's name in config.
    pub name: String,
    /// On-premises or Azure.
    pub role: SiteRole,
    /// The adapter, in its sandbox.
    pub plugin: Arc<Plugin>,
}

impl std::fmt::Debug for SiteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteHandle").field("name", &self.name).field("role", &self.role).field("plugin", &self.plugin.name()).finish()
    }
}

/// Progress of a running job, for the CLI's bar or plain lines.
#[derive(Debug, Clone, Serialize)]
pub struct JobProgress {
    /// The job.
    pub job: u64,
    /// The step running.
    pub step: String,
    /// Its position (1-based) and the number of steps.
    pub step_no: usize,
    /// Steps in the job.
    pub steps: usize,
    /// What the step is doing now.
    pub detail: String,
    /// Bytes done and total of the current transfer, when there is one.
    pub bytes_done: u64,
    /// Total bytes of the current transfer.
    pub bytes_total: u64,
    /// Estimated time left of the current transfer, seconds.
    pub eta_secs: Option<f64>,
}

/// Receives job progress.
pub type ProgressSink = Arc<dyn Fn(&JobProgress) + Send + Sync>;

/// The pipeline over one data directory.
pub struct Pipeline {
    pub(crate) store: Arc<Store>,
    pub(crate) data_dir: PathBuf,
    pub(crate) sites: BTreeMap<String, SiteHandle>,
    pub(crate) progress: Option<ProgressSink>,
    pub(crate) forward_policy: Policy,
    pub(crate) bandwidth_limit: Option<u64>,
    pub(crate) codec: homeward_replication::compress::CodecChoice,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("data_dir", &self.data_dir).field("sites", &self.sites.keys().collect::<Vec<_>>()).finish()
    }
}

/// What a step returns: its output for the database, and the bytes it moved.
#[derive(Debug, Default)]
pub(crate) struct StepOutcome {
    pub output: serde_json::Value,
    pub bytes_sent: u64,
    pub bytes_changed: u64,
}

impl StepOutcome {
    pub fn note(output: serde_json::Value) -> Self {
        Self { output, ..Default::default() }
    }
}

impl Pipeline {
    /// Opens the configuration database in `data_dir` and takes the configured sites.
    /// The forward policy is created there, and the failback policy with it.
    pub fn open(data_dir: &Path, sites: Vec<SiteHandle>) -> Result<Self, PipelineError> {
        let store = Arc::new(Store::open(data_dir)?);
        store.ensure_policies(&Policy::forward_default())?;
        let forward_policy = store.policy("forward")?.unwrap_or_else(Policy::forward_default);
        Ok(Self {
            store,
            data_dir: data_dir.to_path_buf(),
            sites: sites.into_iter().map(|s| (s.name.clone(), s)).collect(),
            progress: None,
            forward_policy,
            bandwidth_limit: None,
            codec: homeward_replication::compress::CodecChoice::default(),
        })
    }

    /// Holds replication cycles to `bytes_per_second` on the wire.
    pub fn with_bandwidth_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.bandwidth_limit = bytes_per_second.filter(|b| *b > 0);
        self
    }

    /// Compresses cycles on the wire as `codec` chooses.
    pub fn with_codec(mut self, codec: homeward_replication::compress::CodecChoice) -> Self {
        self.codec = codec;
        self
    }

    /// Sends job progress to `sink`.
    pub fn with_progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }

    /// The configuration database.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A configured site by name.
    pub fn site(&self, name: &str) -> Result<&SiteHandle, PipelineError> {
        self.sites.get(name).ok_or_else(|| PipelineError::NotFound {
            what: "site",
            name: name.to_string(),
            fix: format!("add `[sites.{name}]` with its plugin and role to the config (configured: {})", self.sites.keys().cloned().collect::<Vec<_>>().join(", ")),
        })
    }

    /// The one site of `role`, or the named one.
    pub fn site_of_role(&self, role: SiteRole, name: Option<&str>) -> Result<&SiteHandle, PipelineError> {
        if let Some(n) = name {
            return self.site(n);
        }
        let mut of_role = self.sites.values().filter(|s| s.role == role);
        match (of_role.next(), of_role.next()) {
            (Some(s), None) => Ok(s),
            (None, _) => Err(PipelineError::NotFound {
                what: "site with role",
                name: role.as_str().into(),
                fix: format!("add a `[sites.NAME]` with `role = \"{}\"` to the config", role.as_str()),
            }),
            (Some(_), Some(_)) => Err(PipelineError::Refused {
                object: format!("{} sites", role.as_str()),
                message: "more than one is configured".into(),
                fix: "name the site with --site".into(),
            }),
        }
    }

    pub(crate) fn emit(&self, p: JobProgress) {
        if let Some(sink) = &self.progress {
            sink(&p);
        }
    }

    // ---- adapter helpers ----

    /// Waits for an adapter operation and returns its target.
    pub(crate) async fn wait(&self, site: &str, op: Operation, call: &str, object: &str) -> Result<Option<String>, PipelineError> {
        let plugin = &self.site(site)?.plugin;
        let done = plugin.wait(op, call).await.map_err(PipelineError::adapter(site, call, object))?;
        Ok(done.target)
    }

    /// Opens a disk through its site's adapter.
    pub(crate) async fn open_disk(&self, site: &str, vm: &str, disk: &str, snapshot: Option<&str>, mode: AccessMode) -> Result<OpenDisk, PipelineError> {
        let handle = self.site(site)?;
        let object = format!("disk {disk} of {}", if vm.is_empty() { "no VM" } else { vm });
        let access = handle.plugin.open(vm, disk, snapshot, mode).await.map_err(PipelineError::adapter(site, "disks.open", &object))?;
        let mut open = transport_for(&handle.plugin, &object, &access).await?;
        open.keep_open = vm.is_empty() && !access.read_only;
        Ok(open)
    }

    /// Closes an adapter disk handle, except a replica still being uploaded; failures are
    /// logged, since the data is already safe.
    pub(crate) async fn close_disk(&self, site: &str, d: &OpenDisk) {
        if !d.keep_open {
            self.finish_disk(site, d).await;
        }
    }

    /// Closes an adapter disk handle whatever it is (ending an upload).
    pub(crate) async fn finish_disk(&self, site: &str, d: &OpenDisk) {
        if let Ok(h) = self.site(site)
            && let Err(e) = h.plugin.close(&d.handle).await
        {
            tracing::warn!(site, error = %e, "closing a disk handle failed");
        }
    }

    // ---- objects ----

    /// A group by name.
    pub fn group(&self, name: &str) -> Result<Group, PipelineError> {
        self.store.get(Table::Groups, name)?.ok_or_else(|| PipelineError::NotFound {
            what: "replication group",
            name: name.to_string(),
            fix: "protect its VMs first with `homeward protect --group NAME VM...`".into(),
        })
    }

    /// The items of a group in boot order.
    pub fn group_items(&self, group: &str) -> Result<Vec<Item>, PipelineError> {
        Ok(self.store.list::<Item>(Table::Items)?.into_iter().filter(|i| i.group == group).collect())
    }

    /// An item by name.
    pub fn item(&self, name: &str) -> Result<Item, PipelineError> {
        self.store.get(Table::Items, name)?.ok_or_else(|| PipelineError::NotFound {
            what: "protected item",
            name: name.to_string(),
            fix: "the VM must be in the configuration database: protect it, or restore the database from a backup".into(),
        })
    }

    /// Every protected item.
    pub fn items(&self) -> Result<Vec<Item>, PipelineError> {
        self.store.list(Table::Items)
    }

    pub(crate) fn save_item(&self, item: &Item) -> Result<(), PipelineError> {
        self.store.put(Table::Items, &item.name, item)
    }

    pub(crate) fn save_group(&self, group: &Group) -> Result<(), PipelineError> {
        self.store.put(Table::Groups, &group.name, group)
    }

    /// A master target by name.
    pub fn master_target(&self, name: &str) -> Result<MasterTarget, PipelineError> {
        self.store.get(Table::MasterTargets, name)?.ok_or_else(|| PipelineError::NotFound {
            what: "master target",
            name: name.to_string(),
            fix: "register it with `homeward master-targets register NAME --vm VM --retention PATH`".into(),
        })
    }

    /// A process server by name.
    pub fn process_server(&self, name: &str) -> Result<ProcessServer, PipelineError> {
        self.store.get(Table::ProcessServers, name)?.ok_or_else(|| PipelineError::NotFound {
            what: "process server",
            name: name.to_string(),
            fix: "deploy one in the failed-over VMs' Azure network with `homeward process-servers deploy NAME --network NET`".into(),
        })
    }

    /// Resolves a plan name or group name to its group.
    pub fn resolve_group(&self, plan_or_group: &str) -> Result<(String, Option<String>), PipelineError> {
        if let Some(g) = self.store.plan_group(plan_or_group)? {
            return Ok((g, Some(plan_or_group.to_string())));
        }
        if self.store.get::<Group>(Table::Groups, plan_or_group)?.is_some() {
            return Ok((plan_or_group.to_string(), None));
        }
        if let Some(item) = self.store.get::<Item>(Table::Items, plan_or_group)? {
            return Ok((item.group, None));
        }
        Err(PipelineError::NotFound {
            what: "recovery plan, group or item",
            name: plan_or_group.to_string(),
            fix: "list them with `homeward plans` and `homeward items`; a VM must be in the configuration database to fail back".into(),
        })
    }

    // ---- jobs ----

    /// Creates a job and runs it to the end.
    pub(crate) async fn start_job(&self, kind: JobKind, target: &str, params: serde_json::Value, steps: &[&str]) -> Result<Job, PipelineError> {
        let id = self.store.create_job(kind, target, &params, steps)?;
        self.store.event("info", &format!("group {target}"), &format!("{}-started", kind.as_str()), &format!("job {id} started"))?;
        self.run_job(id).await
    }

    /// Runs a job from its first step that is not done (a new job, or one a crash
    /// interrupted) and returns it finished.
    pub async fn run_job(&self, id: u64) -> Result<Job, PipelineError> {
        let job = self.store.job(id)?.ok_or_else(|| PipelineError::NotFound { what: "job", name: id.to_string(), fix: "list jobs with `homeward jobs`".into() })?;
        let span = info_span!("job", id, kind = job.kind.as_str(), target = %job.target);
        async {
            let total = job.steps.len();
            for step in job.steps.iter().filter(|s| s.state != "done") {
                self.store.start_step(id, step.idx)?;
                crash_point(&step.name, CrashPhase::Start);
                self.emit(JobProgress {
                    job: id,
                    step: step.name.clone(),
                    step_no: step.idx as usize + 1,
                    steps: total,
                    detail: if step.attempts > 0 { format!("resuming (attempt {})", step.attempts + 1) } else { "started".into() },
                    bytes_done: 0,
                    bytes_total: 0,
                    eta_secs: None,
                });
                let outcome = self.run_step(&job, &step.name).instrument(info_span!("step", name = %step.name)).await;
                match outcome {
                    Ok(o) => {
                        self.store.finish_step(id, step.idx, &o.output, o.bytes_sent, o.bytes_changed)?;
                        info!(step = %step.name, "step done");
                        crash_point(&step.name, CrashPhase::After);
                    }
                    Err(e) => {
                        self.store.fail_step(id, step.idx)?;
                        let msg = e.to_string();
                        self.store.finish_job(id, Some(&msg))?;
                        self.store.event("error", &format!("group {}", job.target), &format!("{}-failed", job.kind.as_str()), &format!("job {id} failed at step {}: {msg}", step.name))?;
                        return Err(e);
                    }
                }
            }
            self.store.finish_job(id, None)?;
            self.store.event("info", &format!("group {}", job.target), &format!("{}-succeeded", job.kind.as_str()), &format!("job {id} succeeded"))?;
            Ok(self.store.job(id)?.expect("the job exists"))
        }
        .instrument(span)
        .await
    }

    /// Resumes every job a crash interrupted, oldest first.
    pub async fn resume_jobs(&self) -> Result<Vec<Job>, PipelineError> {
        let mut done = Vec::new();
        for id in self.store.job_ids(true)? {
            done.push(self.run_job(id).await?);
        }
        Ok(done)
    }

    /// Retries a failed job from its failed step.
    pub async fn retry_job(&self, id: u64) -> Result<Job, PipelineError> {
        let job = self.store.job(id)?.ok_or_else(|| PipelineError::NotFound { what: "job", name: id.to_string(), fix: "list jobs with `homeward jobs`".into() })?;
        if job.state == "succeeded" {
            return Err(PipelineError::Refused { object: format!("job {id}"), message: "it already succeeded".into(), fix: "nothing to retry".into() });
        }
        self.store.reopen_job(id)?;
        self.run_job(id).await
    }

    async fn run_step(&self, job: &Job, step: &str) -> Result<StepOutcome, PipelineError> {
        match job.kind {
            JobKind::Protect => self.protect_step(job, step).await,
            JobKind::Failover => self.failover_step(job, step).await,
            JobKind::TestCleanup => self.test_cleanup_step(job, step).await,
            JobKind::Reprotect => self.reprotect_step(job, step).await,
            JobKind::Failback => self.failback_step(job, step).await,
            JobKind::Commit => self.commit_step(job, step).await,
        }
    }

    /// Returns the time now, for steps.
    pub(crate) fn now(&self) -> u64 {
        now_ms()
    }
}

//! The operator's pipeline commands: discover, protect, fail over, reprotect, fail back,
//! commit, and the views on items, points, jobs, plans and events, with backup/restore.
//!
//! Every command first resumes jobs a crash interrupted, so starting `homeward` again
//! after a `kill -9` finishes what was running.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use homeward_pipeline::{
    Pipeline, PipelineError, SiteHandle, SiteRole,
    jobs::Job,
    model::Item,
    ops::{FailoverKind, PointChoice, ProtectRequest, ReprotectRequest},
    store::Store,
};

use crate::config::{self, LoadedConfig};
use crate::output::{Output, table};

/// Pipeline subcommands.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Discover every configured site's hosts, datastores, networks and VMs.
    Sites {
        #[command(subcommand)]
        command: SitesCommand,
    },
    /// Protect on-premises VMs to Azure as one replication group.
    Protect {
        /// On-premises VM names, in boot order.
        #[arg(required = true)]
        vms: Vec<String>,
        /// The replication group (default: the first VM's name).
        #[arg(long)]
        group: Option<String>,
        /// Also create a recovery plan over the group.
        #[arg(long)]
        plan: Option<String>,
        /// The Azure network failed-over VMs join.
        #[arg(long)]
        network: String,
        /// VMs among them that are physical servers.
        #[arg(long, value_delimiter = ',')]
        physical: Vec<String>,
    },
    /// Run replication cycles of a group: one now, several, or on a schedule.
    Replicate {
        /// Plan, group or item.
        target: String,
        /// Cycles to run.
        #[arg(long, default_value_t = 1)]
        cycles: u32,
        /// Keep cycling every `[replication] cycle_interval_secs` until interrupted.
        #[arg(long, conflicts_with = "cycles")]
        watch: bool,
    },
    /// Replication policies; the failback policy cannot be edited.
    Policies {
        #[command(subcommand)]
        command: Option<PoliciesCommand>,
    },
    /// Protected items: state, direction, measured RPO, newest point.
    Items,
    /// Retained recovery points of an item's group.
    RecoveryPoints {
        /// Item, group or plan.
        item: String,
    },
    /// Fail over a plan, group or item: to Azure, or back to on-premises (failback).
    Failover {
        /// Plan, group or item.
        target: String,
        /// `latest`, `latest-app-consistent` or a point number.
        #[arg(long, default_value = "latest")]
        point: String,
        /// Planned: shut the source down and sync last changes (no data loss).
        #[arg(long, conflicts_with = "test")]
        planned: bool,
        /// Test failover into an isolated network; replication goes on.
        #[arg(long)]
        test: bool,
        /// The isolated network of a test failover.
        #[arg(long)]
        test_network: Option<String>,
    },
    /// Discard a test failover's VMs.
    TestCleanup {
        /// Plan, group or item.
        target: String,
    },
    /// Reprotect: failed-over VMs back to on-premises, or committed ones forward again.
    Reprotect {
        /// Plan, group or item.
        target: String,
        /// Master target receiving failback data.
        #[arg(long)]
        master_target: Option<String>,
        /// Process server in Azure sending it.
        #[arg(long)]
        process_server: Option<String>,
        /// Fail back to new VMs on the master target's host and datastore.
        #[arg(long)]
        alternate_location: bool,
    },
    /// Commit a failback: delete the Azure VMs.
    Commit {
        /// Plan, group or item.
        target: String,
    },
    /// Jobs: list, one job's steps, watch, resume or retry.
    Jobs {
        /// A job id to show.
        id: Option<u64>,
        /// Follow the job until it ends.
        #[arg(long)]
        watch: bool,
        /// Retry a failed job from its failed step.
        #[arg(long)]
        retry: bool,
    },
    /// Recovery plans.
    Plans {
        #[command(subcommand)]
        command: Option<PlansCommand>,
    },
    /// Events: RPO breaches, job outcomes, repairs.
    Events {
        /// How many of the newest.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Register a master target.
    MasterTargets {
        #[command(subcommand)]
        command: MasterTargetsCommand,
    },
    /// Deploy and register process servers.
    ProcessServers {
        #[command(subcommand)]
        command: ProcessServersCommand,
    },
    /// Online backup of the configuration database.
    Backup {
        /// The backup file to write.
        file: PathBuf,
    },
    /// Restore the configuration database from a backup.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
}

/// `homeward sites …`
#[derive(Debug, Subcommand)]
pub enum SitesCommand {
    /// Discover and store every site's inventory.
    Discover,
}

/// `homeward policies …`
#[derive(Debug, Subcommand)]
pub enum PoliciesCommand {
    /// Change a policy (the forward one; failback is fixed by design).
    Set {
        name: String,
        /// A point older than this raises an RPO event.
        #[arg(long)]
        rpo_threshold_secs: Option<u64>,
        /// How long recovery points are kept.
        #[arg(long)]
        retention_hours: Option<u64>,
        /// How often a cycle quiesces for an app-consistent point.
        #[arg(long)]
        app_consistent_minutes: Option<u64>,
    },
}

/// `homeward plans …`
#[derive(Debug, Subcommand)]
pub enum PlansCommand {
    /// Create a plan over a replication group.
    Create { name: String, #[arg(long)] group: String },
}

/// `homeward master-targets …`
#[derive(Debug, Subcommand)]
pub enum MasterTargetsCommand {
    /// Register an on-premises VM as master target.
    Register {
        name: String,
        /// The master target VM.
        #[arg(long)]
        vm: String,
        /// Its retention volume (default /mnt/retention on Linux, R: on Windows).
        #[arg(long, default_value = "/mnt/retention")]
        retention: String,
        /// `linux` or `windows`.
        #[arg(long, default_value = "linux")]
        os: String,
        /// The on-premises site (when there are several).
        #[arg(long)]
        site: Option<String>,
    },
}

/// `homeward process-servers …`
#[derive(Debug, Subcommand)]
pub enum ProcessServersCommand {
    /// Deploy a process server in Azure for failback.
    Deploy {
        name: String,
        /// The failed-over VMs' network.
        #[arg(long)]
        network: String,
        /// The failed-over VM ids it serves.
        #[arg(long = "for", value_delimiter = ',')]
        for_vms: Vec<String>,
        /// The Azure site (when there are several).
        #[arg(long)]
        site: Option<String>,
    },
}

/// Loads the config's sites into their sandboxes and opens the pipeline.
pub async fn open(loaded: &LoadedConfig, out: Output) -> anyhow::Result<Pipeline> {
    let engine = super::engine(loaded)?;
    let mut sites = Vec::new();
    for (name, site) in &loaded.config.sites {
        let spec = loaded.plugin_spec(&site.plugin)?;
        let plugin = engine.load(spec).with_context(|| format!("site {name}: plugin {} does not load", site.plugin))?;
        let role = if site.role == "azure" { SiteRole::Azure } else { SiteRole::OnPrem };
        sites.push(SiteHandle { name: name.clone(), role, plugin: Arc::new(plugin) });
    }
    let data_dir = loaded.data_dir()?;
    let bandwidth = loaded.config.replication.bandwidth_mbps.map(|m| m.saturating_mul(1_000_000) / 8);
    // Checked when the config was loaded.
    let codec = loaded.config.replication.codec.as_deref().map_or(Ok(homeward_pipeline::CodecChoice::default()), str::parse).map_err(anyhow::Error::msg)?;
    let pipeline = Pipeline::open(&data_dir, sites)?.with_progress(progress_printer(out)).with_bandwidth_limit(bandwidth).with_codec(codec);
    scheduled_backup(loaded, pipeline.store())?;
    let resumed = pipeline.resume_jobs().await;
    match resumed {
        Ok(jobs) => {
            for j in jobs {
                eprintln!("resumed job {} ({} of {}): {}", j.id, j.kind.as_str(), j.target, j.state);
            }
        }
        Err(e) => eprintln!("an interrupted job failed when resumed: {e}"),
    }
    Ok(pipeline)
}

fn scheduled_backup(loaded: &LoadedConfig, store: &Store) -> anyhow::Result<()> {
    let hours = loaded.config.backup.every_hours;
    if hours <= 0.0 {
        return Ok(());
    }
    let due = store.last_backup_ms()?.is_none_or(|t| homeward_pipeline::store::now_ms().saturating_sub(t) as f64 > hours * 3_600_000.0);
    if due {
        let dir = loaded.config.backup.dir.as_ref().map(|d| d.relative()).unwrap_or(loaded.data_dir()?.join("backups"));
        let file = dir.join(format!("homeward-{}.db", homeward_pipeline::store::now_ms()));
        store.backup(&file).with_context(|| format!("scheduled backup to {} failed", file.display()))?;
        eprintln!("scheduled backup written to {}", file.display());
    }
    Ok(())
}

/// Progress lines on stderr: one per step and transfer update; a terminal gets them
/// redrawn in place.
pub fn progress_printer(out: Output) -> homeward_pipeline::pipeline::ProgressSink {
    let tty = std::io::stderr().is_terminal() && !out.json;
    Arc::new(move |p: &homeward_pipeline::JobProgress| {
        let bytes = if p.bytes_total > 0 {
            let pct = p.bytes_done as f64 * 100.0 / p.bytes_total as f64;
            let eta = p.eta_secs.map(|e| format!(", ETA {e:.0}s")).unwrap_or_default();
            format!(" [{}] {pct:.0}% of {}{eta}", bar(pct), human_bytes(p.bytes_total))
        } else {
            String::new()
        };
        let step = if p.steps > 0 { format!("step {}/{} {}", p.step_no, p.steps, p.step) } else { p.step.clone() };
        // Job 0 is a transfer outside any job (a replication cycle): its detail says what.
        let line = if p.job == 0 { format!("{}{bytes}", p.detail) } else { format!("job {} {step}: {}{bytes}", p.job, p.detail) };
        if tty {
            eprint!("\r\x1b[2K{line}\n");
        } else {
            eprintln!("{line}");
        }
    })
}

fn bar(pct: f64) -> String {
    let filled = (pct / 5.0).round().clamp(0.0, 20.0) as usize;
    format!("{}{}", "#".repeat(filled), ".".repeat(20 - filled))
}

/// `1.5 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

fn job_lines(j: &Job) -> String {
    let mut s = format!(
        "job {} {} {}: {} in {:.1}s, {} sent, {} changed\n",
        j.id,
        j.kind.as_str(),
        j.target,
        j.state,
        j.elapsed_ms() as f64 / 1000.0,
        human_bytes(j.bytes_sent),
        human_bytes(j.bytes_changed)
    );
    for st in &j.steps {
        let took = match (st.started_ms, st.finished_ms) {
            (Some(a), Some(b)) => format!("{:.2}s", b.saturating_sub(a) as f64 / 1000.0),
            _ => "-".into(),
        };
        let attempts = if st.attempts > 1 { format!(" (attempts: {})", st.attempts) } else { String::new() };
        s.push_str(&format!("  {:>2}. {:<24} {:<8} {took}{attempts}\n", st.idx + 1, st.name, st.state));
    }
    if let Some(e) = &j.error {
        s.push_str(&format!("error: {e}\n"));
    }
    s
}

fn finish_job(result: Result<Job, PipelineError>, out: Output) -> anyhow::Result<ExitCode> {
    match result {
        Ok(j) => {
            out.emit(&j, || job_lines(&j))?;
            Ok(if j.state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Serialize)]
struct ItemRow {
    name: String,
    group: String,
    state: String,
    direction: String,
    rpo_seconds: Option<f64>,
    rpo_breached: bool,
    last_point: Option<u64>,
    onprem_vm: Option<String>,
    azure_vm: Option<String>,
}

/// Runs one pipeline command.
pub async fn run(flag: Option<&Path>, command: OpsCommand, out: Output) -> anyhow::Result<ExitCode> {
    let loaded = config::load(flag)?;
    if let OpsCommand::Replicate { target, watch: true, .. } = &command {
        let p = open(&loaded, out).await?;
        return replicate_watch(&p, target, loaded.config.replication.cycle_interval_secs, out).await;
    }
    if let OpsCommand::Restore { file } = &command {
        let version = Store::restore(&loaded.data_dir()?, file)?;
        out.emit(&serde_json::json!({"restored": file, "schema_version": version}), || {
            format!("restored the configuration database from {} (schema {version}); the previous one is kept as homeward.db.before-restore", file.display())
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let p = open(&loaded, out).await?;
    run_on(&p, command, out).await
}

/// Runs a command against an open pipeline (the demo uses this too).
pub async fn run_on(p: &Pipeline, command: OpsCommand, out: Output) -> anyhow::Result<ExitCode> {
    match command {
        OpsCommand::Sites { command: SitesCommand::Discover } => {
            let d = p.discover().await?;
            out.emit(&d, || {
                let rows: Vec<Vec<String>> = d
                    .iter()
                    .map(|s| vec![s.site.clone(), s.role.as_str().into(), s.hosts.to_string(), s.datastores.to_string(), s.networks.to_string(), s.vms.to_string(), s.datastore_error.clone().unwrap_or_else(|| "ok".into())])
                    .collect();
                table(&["SITE", "ROLE", "HOSTS", "DATASTORES", "NETWORKS", "VMS", "STATUS"], &rows)
            })?;
            Ok(if d.iter().any(|s| s.datastore_error.is_some()) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        OpsCommand::Protect { vms, group, plan, network, physical } => {
            let group = group.unwrap_or_else(|| vms[0].clone());
            finish_job(p.protect(ProtectRequest { group, plan, vms, physical, onprem_site: None, azure_site: None, azure_network: network }).await, out)
        }
        OpsCommand::Policies { command } => {
            if let Some(PoliciesCommand::Set { name, rpo_threshold_secs, retention_hours, app_consistent_minutes }) = command {
                let mut policy = p.store().policy(&name)?.with_context(|| format!("no policy `{name}`; list them with `homeward policies`"))?;
                if let Some(v) = rpo_threshold_secs {
                    policy.rpo_threshold_s = v;
                }
                if let Some(v) = retention_hours {
                    policy.retention_s = v * 3600;
                }
                if let Some(v) = app_consistent_minutes {
                    policy.app_consistent_s = v * 60;
                }
                p.store().edit_policy(&policy)?;
            }
            let policies = p.store().policies()?;
            let rows: Vec<serde_json::Value> = policies
                .iter()
                .map(|(pol, editable)| serde_json::json!({"name": pol.name, "direction": pol.direction.as_str(), "rpo_threshold_secs": pol.rpo_threshold_s, "retention_hours": pol.retention_s / 3600, "app_consistent_minutes": pol.app_consistent_s / 60, "editable": editable}))
                .collect();
            out.emit(&rows, || {
                let t: Vec<Vec<String>> = policies
                    .iter()
                    .map(|(pol, e)| vec![pol.name.clone(), pol.direction.arrow().into(), format!("{} min", pol.rpo_threshold_s / 60), format!("{} h", pol.retention_s / 3600), format!("{} min", pol.app_consistent_s / 60), if *e { "yes".into() } else { "no (fixed)".into() }])
                    .collect();
                table(&["POLICY", "DIRECTION", "RPO THRESHOLD", "RETENTION", "APP-CONSISTENT", "EDITABLE"], &t)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Replicate { target, cycles, .. } => {
            let (group, _) = p.resolve_group(&target)?;
            let mut done = Vec::new();
            for _ in 0..cycles {
                done.push(p.cycle(&group).await?);
            }
            out.emit(&done, || {
                done.iter()
                    .map(|c| format!("group {} point {} ({}): {} changed, {} sent\n", c.group, c.seq, c.consistency, human_bytes(c.bytes_changed), human_bytes(c.bytes_sent)))
                    .collect()
            })?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Items => {
            let items = p.items()?;
            let rows: Vec<ItemRow> = items.iter().map(|i| item_row(p, i)).collect::<anyhow::Result<_>>()?;
            out.emit(&rows, || {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            r.group.clone(),
                            r.state.clone(),
                            r.rpo_seconds.map(|s| format!("{s:.0}s{}", if r.rpo_breached { " BREACHED" } else { "" })).unwrap_or_else(|| "-".into()),
                            r.last_point.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                table(&["ITEM", "GROUP", "STATE", "RPO", "LAST POINT"], &t)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::RecoveryPoints { item } => {
            let (group, _) = p.resolve_group(&item)?;
            let points = p.recovery_points(&group)?;
            out.emit(&points, || {
                let rows: Vec<Vec<String>> = points.iter().map(|pt| vec![pt.seq.to_string(), pt.time_ms.to_string(), pt.consistency.clone(), pt.direction.clone()]).collect();
                table(&["POINT", "TIME (ms since epoch)", "CONSISTENCY", "DIRECTION"], &rows)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Failover { target, point, planned, test, test_network } => {
            let point: PointChoice = point.parse().map_err(anyhow::Error::msg)?;
            let kind = if test { FailoverKind::Test } else if planned { FailoverKind::Planned } else { FailoverKind::Unplanned };
            finish_job(p.failover(&target, kind, point, test_network).await, out)
        }
        OpsCommand::TestCleanup { target } => finish_job(p.test_cleanup(&target).await, out),
        OpsCommand::Reprotect { target, master_target, process_server, alternate_location } => {
            finish_job(p.reprotect(&target, ReprotectRequest { master_target, process_server, alternate_location }).await, out)
        }
        OpsCommand::Commit { target } => finish_job(p.commit(&target).await, out),
        OpsCommand::Jobs { id, watch, retry } => match id {
            None => {
                let jobs: Vec<Job> = p.store().job_ids(false)?.into_iter().filter_map(|id| p.store().job(id).ok().flatten()).collect();
                out.emit(&jobs, || {
                    let rows: Vec<Vec<String>> = jobs
                        .iter()
                        .map(|j| {
                            let next = j.next_step().map(|s| s.name.clone()).unwrap_or_else(|| "-".into());
                            vec![j.id.to_string(), j.kind.as_str().into(), j.target.clone(), j.state.clone(), next, format!("{:.1}s", j.elapsed_ms() as f64 / 1000.0), human_bytes(j.bytes_sent)]
                        })
                        .collect();
                    table(&["ID", "KIND", "TARGET", "STATE", "NEXT STEP", "TIME", "SENT"], &rows)
                })?;
                Ok(ExitCode::SUCCESS)
            }
            Some(id) if retry => finish_job(p.retry_job(id).await, out),
            Some(id) => {
                let mut job = p.store().job(id)?.with_context(|| format!("job {id} does not exist; list jobs with `homeward jobs`"))?;
                // Another process may be running it; follow its checkpoints.
                while watch && job.state == "running" {
                    if let Some(s) = job.next_step() {
                        eprintln!("job {id}: step {}/{} {}", s.idx + 1, job.steps.len(), s.name);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    job = p.store().job(id)?.expect("jobs are never deleted");
                }
                if watch {
                    return finish_job(Ok(job), out);
                }
                out.emit(&job, || job_lines(&job))?;
                Ok(ExitCode::SUCCESS)
            }
        },
        OpsCommand::Plans { command } => {
            if let Some(PlansCommand::Create { name, group }) = command {
                p.group(&group)?;
                p.store().put_plan(&name, &group)?;
            }
            let plans = p.store().plans()?;
            out.emit(&plans, || table(&["PLAN", "GROUP"], &plans.iter().map(|(a, b)| vec![a.clone(), b.clone()]).collect::<Vec<_>>()))?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Events { limit } => {
            let events = p.store().events(limit)?;
            out.emit(&events, || {
                table(&["ID", "SEVERITY", "OBJECT", "KIND", "MESSAGE"], &events.iter().map(|e| vec![e.id.to_string(), e.severity.clone(), e.object.clone(), e.kind.clone(), e.message.clone()]).collect::<Vec<_>>())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::MasterTargets { command: MasterTargetsCommand::Register { name, vm, retention, os, site } } => {
            let mt = p.register_master_target(&name, site.as_deref(), &vm, &retention, &os).await?;
            out.emit(&mt, || format!("master target {} registered: VM {}, host {}, retention {}", mt.name, mt.vm, mt.host.clone().unwrap_or_default(), mt.retention_path))?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::ProcessServers { command: ProcessServersCommand::Deploy { name, network, for_vms, site } } => {
            let ps = p.deploy_process_server(&name, site.as_deref(), &network, for_vms).await?;
            out.emit(&ps, || format!("process server {} deployed in {} ({}), VM {}", ps.name, ps.network, ps.deployment_model, ps.vm))?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Backup { file } => {
            p.store().backup(&file)?;
            out.emit(&serde_json::json!({"backup": file}), || format!("configuration database backed up to {}", file.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Restore { .. } => unreachable!("handled before the pipeline opens"),
    }
}

/// Cycles on a schedule until Ctrl-C or SIGTERM, one line (or JSON object) per cycle.
async fn replicate_watch(p: &Pipeline, target: &str, interval_secs: u64, out: Output) -> anyhow::Result<ExitCode> {
    let (group, _) = p.resolve_group(target)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        match p.cycle(&group).await {
            Ok(c) if out.json => println!("{}", serde_json::to_string(&c)?),
            Ok(c) => println!("group {} point {} ({}): {} changed, {} sent", c.group, c.seq, c.consistency, human_bytes(c.bytes_changed), human_bytes(c.bytes_sent)),
            // A failed cycle is retried at the next interval; the RPO grows meanwhile and
            // raises its event when it passes the threshold.
            Err(e) => eprintln!("cycle of group {group} failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(interval_secs)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = term.recv() => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn policy_threshold_ms(p: &Pipeline, group: &homeward_pipeline::model::Group) -> u64 {
    let name = if group.direction == homeward_pipeline::model::Direction::AzureToOnPrem { "failback" } else { "forward" };
    p.store().policy(name).ok().flatten().map_or(900, |pol| pol.rpo_threshold_s) * 1000
}

fn item_row(p: &Pipeline, i: &Item) -> anyhow::Result<ItemRow> {
    let group = p.group(&i.group)?;
    let points = p.store().points(&group.name, group.generation)?;
    let protected = i.state == homeward_pipeline::model::ItemState::Protected;
    let rpo = if protected { p.rpo_ms(&group) } else { None };
    Ok(ItemRow {
        name: i.name.clone(),
        group: i.group.clone(),
        state: i.state.label(i.direction),
        direction: i.direction.as_str().into(),
        rpo_seconds: rpo.map(|r| r as f64 / 1000.0),
        rpo_breached: protected && (group.rpo_breached || rpo.is_some_and(|r| r > policy_threshold_ms(p, &group))),
        last_point: points.last().map(|pt| pt.seq),
        onprem_vm: i.onprem_vm.clone(),
        azure_vm: i.azure_vm.clone(),
    })
}

//! `homeward demo`: the failback drill on the built-in lab, end to end, with the real
//! adapter components in their sandboxes.
//!
//! It starts a simulated vCenter and Azure Resource Manager site on loopback, writes an
//! operator config for them, and drives the three stages of failback through the same
//! pipeline the operator commands use: protect a group of two VMs with several disks,
//! write in the guests, fail over to Azure, write there, reprotect to the original VMs
//! (only deltas move), fail back at the latest app-consistent point, commit, and protect
//! forward again; then the same round with an alternate location. Every on-premises disk
//! is checked by hash against the source at the chosen point, read through the lab's own
//! files rather than the data path under test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use homeward_lab::azure::{AzureLab, AzureLabConfig, DiskId};
use homeward_lab::operator::{self, AzureModel, Component};
use homeward_lab::vsphere::VsphereLab;
use homeward_pipeline::{
    Pipeline,
    jobs::Job,
    model::Item,
    ops::{FailoverKind, PointChoice, ProtectRequest, ReprotectRequest},
};
use homeward_plugin_host::hash::sha256_file;

use super::ops::human_bytes;
use crate::config;
use crate::output::Output;

const DEMO_VCENTER: &str = include_str!("../../../../examples/lab/demo-vcenter.toml");
const DEMO_AZURE: &str = include_str!("../../../../examples/lab/demo-azure.toml");
const SUB: &str = operator::DEMO_SUBSCRIPTION;
const RG: &str = operator::DEMO_RESOURCE_GROUP;
const VMS: [&str; 2] = ["db01", "web01"];
const MIB: u64 = 1 << 20;

/// Options of `homeward demo`.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    /// Where the lab and the state go; a temporary directory when `None`.
    pub dir: Option<PathBuf>,
}

/// One job's timing in the report.
#[derive(Debug, Serialize)]
pub struct JobTiming {
    /// The job id.
    pub id: u64,
    /// What it did.
    pub kind: String,
    /// Seconds from start to end.
    pub seconds: f64,
    /// Payload bytes it sent.
    pub bytes_sent: u64,
}

/// One round trip.
#[derive(Debug, Serialize)]
pub struct Round {
    /// `resource-manager` or `classic`: the Azure adapter of the round.
    pub azure: String,
    /// `original-vm` or `alternate-location`.
    pub failback_to: String,
    /// Each on-premises disk equals the source at the chosen point (by BLAKE3).
    pub verified: bool,
    /// The recovery point failback used, and its consistency.
    pub point: u64,
    /// `app` or `crash`.
    pub consistency: String,
    /// Age of the chosen point when failback started: the data-loss window.
    pub rpo_seconds: f64,
    /// From failback start until the on-premises VMs were powered on.
    pub rto_seconds: f64,
    /// Bytes the reprotect resync sent to on-premises.
    pub bytes_sent: u64,
    /// Bytes that differed between Azure and on-premises when reprotect started.
    pub bytes_changed: u64,
    /// Total capacity of the group's disks.
    pub disk_bytes: u64,
    /// Per-disk hash checks.
    pub disks: Vec<DiskCheck>,
    /// The jobs of the round.
    pub jobs: Vec<JobTiming>,
}

/// One disk's verification.
#[derive(Debug, Serialize)]
pub struct DiskCheck {
    /// `vm/disk`.
    pub disk: String,
    /// BLAKE3 of the Azure disk at the point.
    pub expected: String,
    /// BLAKE3 of the on-premises disk after failback.
    pub actual: String,
}

/// The drill's report.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    /// Every round verified.
    pub verified: bool,
    /// First round's figures, at the top for scripts.
    pub rpo_seconds: f64,
    /// First round's RTO.
    pub rto_seconds: f64,
    /// First round's reprotect bytes sent.
    pub bytes_sent: u64,
    /// First round's changed bytes.
    pub bytes_changed: u64,
    /// Disk bytes of the group.
    pub disk_bytes: u64,
    /// The rounds.
    pub rounds: Vec<Round>,
    /// What was not run, and why.
    pub skipped: Vec<String>,
    /// Where the lab's state was kept.
    pub dir: String,
}

struct Lab {
    vc: VsphereLab,
    az: AzureLab,
    model: AzureModel,
}

fn config_text(lab: &Lab, dir: &Path) -> anyhow::Result<String> {
    let vc = homeward_plugin_artifacts::vmware_vcenter();
    let az = match lab.model {
        AzureModel::ResourceManager => homeward_plugin_artifacts::azure_rm(),
        AzureModel::Classic => homeward_plugin_artifacts::azure_classic(),
    };
    let (vc_sha, az_sha) = (sha256_file(vc)?, sha256_file(az)?);
    Ok(operator::pipeline_config(
        &lab.vc,
        &lab.az,
        lab.model,
        Component { path: vc, sha256: &vc_sha },
        Component { path: az, sha256: &az_sha },
        &lab.vc.credentials().user,
        &dir.join("state"),
        operator::LAB_SECRET_VARS,
    ))
}

fn timing(j: &Job) -> JobTiming {
    JobTiming { id: j.id, kind: j.kind.as_str().into(), seconds: j.elapsed_ms() as f64 / 1000.0, bytes_sent: j.bytes_sent }
}

fn ok_job(j: Job) -> anyhow::Result<Job> {
    if j.state != "succeeded" {
        bail!("job {} ({}) ended {}: {}", j.id, j.kind.as_str(), j.state, j.error.unwrap_or_default());
    }
    Ok(j)
}

fn say(out: Output, text: impl AsRef<str>) {
    if !out.json {
        println!("{}", text.as_ref());
    }
}

impl Lab {
    /// Writes in the on-premises guests (through the simulated hypervisor, as a guest would).
    fn write_onprem(&self, round: u64) -> anyhow::Result<()> {
        for (n, vm) in VMS.iter().enumerate() {
            for key in self.vc.disk_keys(vm)? {
                let seed = round * 100 + n as u64 * 10 + key as u64;
                self.vc.guest_write(vm, key, (seed % 7) * MIB, &operator::guest_data(MIB as usize + 4096, seed))?;
                self.vc.guest_write(vm, key, 12 * MIB + (seed % 3) * 65536, &operator::guest_data(65536, seed + 1))?;
            }
        }
        Ok(())
    }

    /// Writes (and trims) in the failed-over Azure VMs' disks.
    fn write_azure(&self, items: &[Item], round: u64) -> anyhow::Result<()> {
        for (n, item) in items.iter().enumerate() {
            for (k, _) in item.disks.iter().enumerate() {
                let disk = self.azure_disk_id(item, k);
                let seed = 7000 + round * 100 + n as u64 * 10 + k as u64;
                self.az.write_disk(&disk, ((seed % 5) + 1) * MIB, &operator::guest_data(256 * 1024, seed))?;
                self.az.write_disk(&disk, 3 * 65536, &operator::guest_data(8192, seed + 3))?;
                self.az.clear_disk(&disk, 12 * MIB, 65536)?;
            }
        }
        Ok(())
    }

    /// The lab's name for the `k`th disk of an item's failed-over VM.
    fn azure_disk_id(&self, item: &Item, k: usize) -> DiskId {
        match self.model {
            AzureModel::ResourceManager => {
                let id = item.disks[k].azure_disk.clone().unwrap_or_default();
                DiskId::Managed { subscription: SUB.into(), resource_group: RG.into(), disk: id.rsplit('/').next().unwrap_or(&id).to_string() }
            }
            // A failed-over classic VM is a cloud service with one role of its name.
            AzureModel::Classic => DiskId::Classic { subscription: SUB.into(), service: item.name.clone(), role: item.name.clone(), lun: k.checked_sub(1).map(|l| l as u32) },
        }
    }

    fn azure_vm_exists(&self, name: &str) -> bool {
        match self.model {
            AzureModel::ResourceManager => self.az.vm_exists(SUB, RG, name),
            AzureModel::Classic => self.az.classic_role_exists(SUB, name, name),
        }
    }

    /// BLAKE3 of every Azure disk of the items, keyed `vm/disk label`.
    fn azure_hashes(&self, items: &[Item]) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for item in items {
            for (k, d) in item.disks.iter().enumerate() {
                let bytes = self.az.read_disk(&self.azure_disk_id(item, k), 0, d.capacity_bytes)?;
                out.insert(format!("{}/{}", item.name, d.label), blake3::hash(&bytes).to_hex().to_string());
            }
        }
        Ok(out)
    }

    /// BLAKE3 of every on-premises disk the items fail back to, read from the lab's flat
    /// files (not through the data path being verified).
    fn onprem_hashes(&self, items: &[Item]) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let names: BTreeMap<String, String> = self.vc.vm_names().into_iter().filter_map(|n| self.vc.vm_ref(&n).map(|r| (r.value, n))).collect();
        for item in items {
            let vm_id = item.onprem_vm.clone().unwrap_or_default();
            let vm = names.get(&vm_id).cloned().unwrap_or(vm_id);
            for (d, key) in item.disks.iter().zip(self.vc.disk_keys(&vm)?) {
                let bytes = self.vc.read_disk(&vm, key, 0, d.capacity_bytes as usize)?;
                out.insert(format!("{}/{}", item.name, d.label), blake3::hash(&bytes).to_hex().to_string());
            }
        }
        Ok(out)
    }
}

/// Runs the drill: Resource Manager with failback to the original VMs and to an
/// alternate location, then classic with failback to the original VMs.
pub async fn run(args: DemoArgs, out: Output) -> anyhow::Result<ExitCode> {
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.canonicalize()?
        }
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    say(out, format!("homeward demo: failback drill on the built-in lab in {}", dir.display()));
    let mut rounds = drill(AzureModel::ResourceManager, &dir.join("resource-manager"), &[false, true], out).await?;
    rounds.extend(drill(AzureModel::Classic, &dir.join("classic"), &[false], out).await?);
    let first = &rounds[0];
    let report = DemoReport {
        verified: rounds.iter().all(|r| r.verified),
        rpo_seconds: first.rpo_seconds,
        rto_seconds: first.rto_seconds,
        bytes_sent: first.bytes_sent,
        bytes_changed: first.bytes_changed,
        disk_bytes: first.disk_bytes,
        rounds,
        skipped: Vec::new(),
        dir: dir.display().to_string(),
    };
    let ok = report.verified;
    out.emit(&report, || render(&report))?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Starts the lab for one Azure model, writes its config, and runs the rounds.
async fn drill(model: AzureModel, dir: &Path, alternates: &[bool], out: Output) -> anyhow::Result<Vec<Round>> {
    let name = if model == AzureModel::Classic { "Azure classic (Service Management)" } else { "Azure Resource Manager" };
    let vc = VsphereLab::from_toml(DEMO_VCENTER, dir.join("vcenter")).await.context("cannot start the vCenter lab site")?;
    let az = AzureLab::start_with_toml(AzureLabConfig { data_dir: Some(dir.join("azure")), ..AzureLabConfig::default() }, DEMO_AZURE).context("cannot start the Azure lab site")?;
    let lab = Lab { vc, az, model };
    let values = operator::secret_values(&lab.vc, &lab.vc.credentials().user, &lab.az).context("the lab's vCenter user")?;
    for (var, value) in operator::LAB_SECRET_VARS.names().into_iter().zip(values) {
        // SAFETY: set before any adapter of this drill reads them; the secrets never
        // touch the config file.
        unsafe { std::env::set_var(var, value) };
    }
    let config_file = dir.join("homeward.toml");
    std::fs::write(&config_file, config_text(&lab, dir)?)?;
    say(out, format!("sites: vCenter {} and {name}; config {}", lab.vc.sdk_url(), config_file.display()));
    let result = rounds(&lab, &config_file, dir, alternates, out).await;
    let Lab { vc, az, .. } = lab;
    vc.shutdown().await;
    az.shutdown();
    result
}

async fn rounds(lab: &Lab, config_file: &Path, dir: &Path, alternates: &[bool], out: Output) -> anyhow::Result<Vec<Round>> {
    let loaded = config::load(Some(config_file))?;
    let p = super::ops::open(&loaded, out).await?;
    p.discover().await?;
    lab.write_onprem(1)?;
    let network = if lab.model == AzureModel::Classic { "classic-dr" } else { "vnet-dr" };
    say(out, "1. protect db01 and web01 (one replication group, plan app-plan) to Azure");
    ok_job(p.protect(ProtectRequest {
        group: "app".into(),
        plan: Some("app-plan".into()),
        vms: VMS.iter().map(|s| s.to_string()).collect(),
        physical: Vec::new(),
        onprem_site: None,
        azure_site: None,
        azure_network: network.into(),
    })
    .await?)?;
    lab.write_onprem(2)?;
    let c = p.cycle("app").await?;
    say(out, format!("   guests wrote; cycle made point {} ({}), {} changed, {} sent", c.seq, c.consistency, human_bytes(c.bytes_changed), human_bytes(c.bytes_sent)));
    let mut done = Vec::new();
    for (n, alternate) in alternates.iter().enumerate() {
        done.push(round_trip(lab, &p, dir, n as u64 + 1, *alternate, network, out).await?);
    }
    Ok(done)
}

async fn round_trip(lab: &Lab, p: &Pipeline, dir: &Path, round: u64, alternate: bool, network: &str, out: Output) -> anyhow::Result<Round> {
    let mut jobs = Vec::new();
    let to = if alternate { "alternate-location" } else { "original-vm" };
    say(out, format!("round {round}: failback to the {to}"));
    say(out, "2. planned failover to Azure (sources shut down, last changes synced)");
    jobs.push(timing(&ok_job(p.failover("app-plan", FailoverKind::Planned, PointChoice::Latest, None).await?)?));
    let items = p.group_items("app")?;
    say(out, "3. the Azure VMs run and write");
    lab.write_azure(&items, round * 10)?;

    say(out, format!("4. reprotect to on-premises ({to}) through master target mt01 and an Azure process server"));
    let retention = dir.join("retention");
    p.register_master_target("mt01", None, "mt01", &retention.display().to_string(), "linux").await?;
    let vm_ids: Vec<String> = items.iter().filter_map(|i| i.azure_vm.clone()).collect();
    p.deploy_process_server("ps-failback", None, network, vm_ids).await?;
    let rep = ok_job(p.reprotect("app-plan", ReprotectRequest { master_target: Some("mt01".into()), process_server: Some("ps-failback".into()), alternate_location: alternate }).await?)?;
    let (bytes_sent, bytes_changed) = (rep.bytes_sent, rep.bytes_changed);
    jobs.push(timing(&rep));
    let items = p.group_items("app")?;
    let disk_bytes: u64 = items.iter().flat_map(|i| i.disks.iter()).map(|d| d.capacity_bytes).sum();
    say(out, format!("   resync sent {} of {} disk bytes", human_bytes(bytes_sent), human_bytes(disk_bytes)));
    // The reprotect's resync point is app-consistent (quiesced); nothing wrote since.
    let app_point_hashes = lab.azure_hashes(&items)?;
    let app_point = p.recovery_points("app")?.last().map(|pt| (pt.seq, pt.time_ms)).unwrap_or_default();
    lab.write_azure(&items, round * 10 + 1)?;
    let c = p.cycle("app").await?;
    say(out, format!("   Azure wrote more; cycle made point {} ({}), {} sent", c.seq, c.consistency, human_bytes(c.bytes_sent)));

    say(out, "5. fail back at latest-app-consistent");
    let started = homeward_pipeline::store::now_ms();
    let t0 = Instant::now();
    let fb = ok_job(p.failover("app-plan", FailoverKind::Unplanned, PointChoice::LatestAppConsistent, None).await?)?;
    let rto_seconds = t0.elapsed().as_secs_f64();
    let chosen = fb.steps.iter().find(|s| s.name == "choose-point").and_then(|s| s.output.clone()).unwrap_or_default();
    jobs.push(timing(&fb));
    let point = chosen["seq"].as_u64().unwrap_or(u64::MAX);
    let consistency = chosen["consistency"].as_str().unwrap_or_default().to_string();
    if point != app_point.0 {
        bail!("failback chose point {point}, but the newest app-consistent point is {}", app_point.0);
    }
    let items = p.group_items("app")?;
    let actual = lab.onprem_hashes(&items)?;
    let disks: Vec<DiskCheck> = app_point_hashes
        .iter()
        .map(|(k, v)| DiskCheck { disk: k.clone(), expected: v.clone(), actual: actual.get(k).cloned().unwrap_or_default() })
        .collect();
    let verified = !disks.is_empty() && disks.iter().all(|d| d.expected == d.actual);
    say(out, format!("   {} disks checked by hash: {}", disks.len(), if verified { "identical to Azure at the point" } else { "DIFFERENT" }));

    say(out, "6. commit: the Azure VMs are deleted");
    jobs.push(timing(&ok_job(p.commit("app-plan").await?)?));
    for item in &items {
        if lab.azure_vm_exists(&item.name) {
            bail!("commit left Azure VM {} behind", item.name);
        }
    }
    say(out, "7. reprotect forward to Azure");
    jobs.push(timing(&ok_job(p.reprotect("app-plan", ReprotectRequest::default()).await?)?));
    let c = p.cycle("app").await?;
    say(out, format!("   protected forward again; point {} ({})", c.seq, c.consistency));
    Ok(Round {
        azure: if lab.model == AzureModel::Classic { "classic".into() } else { "resource-manager".into() },
        failback_to: to.into(),
        verified,
        point,
        consistency,
        rpo_seconds: started.saturating_sub(app_point.1) as f64 / 1000.0,
        rto_seconds,
        bytes_sent,
        bytes_changed,
        disk_bytes,
        disks,
        jobs,
    })
}

fn render(r: &DemoReport) -> String {
    let mut s = format!("\nfailback drill: {}\n", if r.verified { "VERIFIED" } else { "NOT VERIFIED" });
    for round in &r.rounds {
        s.push_str(&format!(
            "  {:<16} to {:<19} verified={} point {} ({}) rpo {:.1}s rto {:.1}s; resync sent {} ({} changed) of {} disk bytes\n",
            round.azure,
            round.failback_to,
            round.verified,
            round.point,
            round.consistency,
            round.rpo_seconds,
            round.rto_seconds,
            human_bytes(round.bytes_sent),
            human_bytes(round.bytes_changed),
            human_bytes(round.disk_bytes)
        ));
        for j in &round.jobs {
            s.push_str(&format!("      job {:>2} {:<10} {:>6.1}s  {} sent\n", j.id, j.kind, j.seconds, human_bytes(j.bytes_sent)));
        }
    }
    for k in &r.skipped {
        s.push_str(&format!("  skipped: {k}\n"));
    }
    s
}

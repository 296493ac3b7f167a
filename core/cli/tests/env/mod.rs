//! A lab (vCenter + Azure Resource Manager) running in the test process, an operator
//! config for it, and the `homeward` binary run against it as separate processes, so a
//! test can kill one mid-job and start another, as an operator would. The lab stops when
//! the environment drops, also when a test fails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use homeward_lab::azure::{AzureLab, AzureLabConfig, DiskId};
use homeward_lab::operator::{self, Component};
use homeward_lab::vsphere::VsphereLab;
use homeward_plugin_host::hash::sha256_file;
use serde_json::Value;

pub const DEMO_VCENTER: &str = include_str!("../../../../examples/lab/demo-vcenter.toml");
pub const DEMO_AZURE: &str = include_str!("../../../../examples/lab/demo-azure.toml");
pub const MIB: u64 = 1 << 20;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub vc: Option<VsphereLab>,
    pub az: Option<AzureLab>,
    pub config: PathBuf,
    pub secrets: Vec<(String, String)>,
}

/// One `homeward` run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Everything it printed (errors go to stdout as JSON under `--json`).
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: stdout {}\nstderr {}", self.stdout, self.stderr))
    }
}

impl Env {
    /// Starts the lab with `vcenter_toml` and the demo's Azure site, and writes a config
    /// using the vCenter adapter (or `vsphere_wasm`) as `user`.
    pub async fn start(vcenter_toml: &str, user: Option<&str>, vsphere_wasm: Option<&Path>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let vc = VsphereLab::from_toml(vcenter_toml, dir.path().join("vcenter")).await.expect("the vSphere lab starts");
        let az = AzureLab::start_with_toml(AzureLabConfig { data_dir: Some(dir.path().join("azure")), ..AzureLabConfig::default() }, DEMO_AZURE).expect("the Azure lab starts");
        let user = user.map(str::to_string).unwrap_or_else(|| vc.credentials().user);
        let vs = vsphere_wasm.unwrap_or(homeward_plugin_artifacts::vmware_vcenter());
        let azp = homeward_plugin_artifacts::azure_rm();
        let (vs_sha, az_sha) = (sha256_file(vs).unwrap(), sha256_file(azp).unwrap());
        let text = operator::pipeline_config(
            &vc,
            &az,
            operator::AzureModel::ResourceManager,
            Component { path: vs, sha256: &vs_sha },
            Component { path: azp, sha256: &az_sha },
            &user,
            &dir.path().join("state"),
            operator::LAB_SECRET_VARS,
        );
        let config = dir.path().join("homeward.toml");
        std::fs::write(&config, text).unwrap();
        let values = operator::secret_values(&vc, &user, &az).expect("the lab has that user");
        let secrets = operator::LAB_SECRET_VARS.names().iter().map(|n| n.to_string()).zip(values).collect();
        Env { dir, vc: Some(vc), az: Some(az), config, secrets }
    }

    pub fn vc(&self) -> &VsphereLab {
        self.vc.as_ref().unwrap()
    }

    pub fn az(&self) -> &AzureLab {
        self.az.as_ref().unwrap()
    }

    pub fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    /// Runs `homeward --json --config CONFIG ARGS`, with `crash_at` set as the crash hook.
    pub async fn run_with(&self, config: &Path, args: &[&str], crash_at: Option<&str>) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeward"));
        cmd.arg("--json").arg("--config").arg(config).args(args).env_remove("HOMEWARD_CONFIG").env_remove("HOMEWARD_CRASH_AT");
        for (k, v) in &self.secrets {
            cmd.env(k, v);
        }
        if let Some(step) = crash_at {
            cmd.env("HOMEWARD_CRASH_AT", step);
        }
        let out = cmd.output().await.expect("homeward runs");
        Run { code: out.status.code(), signal: out.status.signal(), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() }
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with(&self.config, args, None).await
    }

    /// Runs and requires success; returns the JSON output.
    pub async fn ok(&self, args: &[&str]) -> Value {
        let r = self.run(args).await;
        assert!(r.ok(), "homeward {args:?} failed: {r:?}");
        r.json()
    }

    /// Runs a job command that is killed (SIGKILL) at `step`, then starts `homeward`
    /// again, which resumes it; returns the finished job.
    pub async fn crash_and_resume(&self, args: &[&str], step: &str) -> Value {
        let r = self.run_with(&self.config, args, Some(step)).await;
        assert_eq!(r.signal, Some(9), "homeward {args:?} should have been killed at {step}: {r:?}");
        let jobs = self.ok(&["jobs"]).await;
        let id = jobs.as_array().unwrap().last().unwrap()["id"].as_u64().unwrap();
        let job = self.ok(&["jobs", &id.to_string()]).await;
        assert_eq!(job["state"], "succeeded", "job {id} after resuming from a crash in {step}: {job}");
        job
    }

    pub fn azure_disk(&self, id: &str) -> DiskId {
        DiskId::Managed { subscription: operator::DEMO_SUBSCRIPTION.into(), resource_group: operator::DEMO_RESOURCE_GROUP.into(), disk: id.rsplit('/').next().unwrap().to_string() }
    }

    /// The items as `homeward items --json` shows them, by name.
    pub async fn items(&self) -> BTreeMap<String, Value> {
        self.ok(&["items"]).await.as_array().unwrap().iter().map(|i| (i["name"].as_str().unwrap().to_string(), i.clone())).collect()
    }

    /// The stored items (with disk maps), straight from the configuration database.
    pub fn db_items(&self) -> Vec<Value> {
        let conn = rusqlite::Connection::open(self.dir.path().join("state/homeward.db")).unwrap();
        let mut stmt = conn.prepare("SELECT detail FROM items ORDER BY boot_order").unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(|s| serde_json::from_str(&s.unwrap()).unwrap()).collect()
    }

    /// Guest writes in the on-premises VMs.
    pub fn write_onprem(&self, seed: u64) {
        for vm in ["db01", "web01"] {
            for key in self.vc().disk_keys(vm).unwrap() {
                let s = seed * 31 + key as u64;
                self.vc().guest_write(vm, key, (s % 5) * MIB, &operator::guest_data(300_000, s)).unwrap();
            }
        }
    }

    /// Writes and trims in the Azure VMs' disks.
    pub fn write_azure(&self, seed: u64) {
        for item in self.db_items() {
            for d in item["disks"].as_array().unwrap() {
                let disk = self.azure_disk(d["azure_disk"].as_str().unwrap());
                let s = seed * 17 + d["capacity_bytes"].as_u64().unwrap() / MIB;
                self.az().write_disk(&disk, ((s % 4) + 1) * MIB, &operator::guest_data(200_192, s)).unwrap();
                self.az().clear_disk(&disk, 10 * MIB, 65536).unwrap();
            }
        }
    }

    /// BLAKE3 of the Azure disks, keyed `item/label`.
    pub fn azure_hashes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for item in self.db_items() {
            for d in item["disks"].as_array().unwrap() {
                let bytes = self.az().read_disk(&self.azure_disk(d["azure_disk"].as_str().unwrap()), 0, d["capacity_bytes"].as_u64().unwrap()).unwrap();
                out.insert(format!("{}/{}", item["name"].as_str().unwrap(), d["label"].as_str().unwrap()), blake3::hash(&bytes).to_hex().to_string());
            }
        }
        out
    }

    /// BLAKE3 of the on-premises disks the items fail back to, from the lab's files.
    pub fn onprem_hashes(&self) -> BTreeMap<String, String> {
        let names: BTreeMap<String, String> = self.vc().vm_names().into_iter().filter_map(|n| self.vc().vm_ref(&n).map(|r| (r.value, n))).collect();
        let mut out = BTreeMap::new();
        for item in self.db_items() {
            let vm = names[item["onprem_vm"].as_str().unwrap()].clone();
            for (d, key) in item["disks"].as_array().unwrap().iter().zip(self.vc().disk_keys(&vm).unwrap()) {
                let bytes = self.vc().read_disk(&vm, key, 0, d["capacity_bytes"].as_u64().unwrap() as usize).unwrap();
                out.insert(format!("{}/{}", item["name"].as_str().unwrap(), d["label"].as_str().unwrap()), blake3::hash(&bytes).to_hex().to_string());
            }
        }
        out
    }

    /// Protects db01 and web01 as group `app` with plan `app-plan`.
    pub async fn protect(&self, extra: &[&str]) -> Value {
        self.ok(&["sites", "discover"]).await;
        let mut args = vec!["protect", "db01", "web01", "--group", "app", "--plan", "app-plan", "--network", "vnet-dr"];
        args.extend_from_slice(extra);
        let job = self.ok(&args).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        job
    }

    /// Registers mt01 and deploys the failback process server.
    pub async fn failback_infrastructure(&self) {
        let retention = self.path("retention");
        self.ok(&["master-targets", "register", "mt01", "--vm", "mt01", "--retention", &retention]).await;
        let ids: Vec<String> = self.db_items().iter().map(|i| i["azure_vm"].as_str().unwrap().to_string()).collect();
        self.ok(&["process-servers", "deploy", "ps-failback", "--network", "vnet-dr", "--for", &ids.join(",")]).await;
    }

    pub async fn shutdown(mut self) {
        if let Some(vc) = self.vc.take() {
            vc.shutdown().await;
        }
        if let Some(az) = self.az.take() {
            az.shutdown();
        }
    }
}

/// The step attempts of a job, by step name.
pub fn attempts(job: &Value) -> BTreeMap<String, u64> {
    job["steps"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap().to_string(), s["attempts"].as_u64().unwrap())).collect()
}

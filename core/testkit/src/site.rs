//! The simulated sites each profile runs against, and the grants a production operator
//! would give the adapter there.
//!
//! Every case gets a fresh [`Site`], so no case sees what another one did. Lab servers bind
//! ephemeral ports on 127.0.0.1 and stop when the site is dropped, also when a case fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use homeward_lab::azure::{AzureLab, AzureLabConfig, DiskId, Fault as AzureFault, Service};
use homeward_lab::vsphere::{Fault as VsphereFault, VsphereLab};
use homeward_plugin_host::limits::Limits;
use homeward_plugin_host::{PluginSpec, Preopen};
use serde::{Deserialize, Serialize};

/// Which simulated site a run uses, and so which config the adapter is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// The lab's vSphere site in vCenter mode (two hosts, a shared and a local datastore).
    Vcenter,
    /// The lab's vSphere site as a standalone ESXi host (enterprise licence).
    Esxi,
    /// The lab's Azure Resource Manager, token endpoint and Blob services.
    AzureRm,
    /// The lab's Azure classic Service Management and Blob services.
    AzureClassic,
    /// A temporary directory site, preopened at `/site` (the adapter template's model).
    Directory,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 5] = [Profile::Vcenter, Profile::Esxi, Profile::AzureRm, Profile::AzureClassic, Profile::Directory];

    /// The profile's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Vcenter => "vcenter",
            Profile::Esxi => "esxi",
            Profile::AzureRm => "azure-rm",
            Profile::AzureClassic => "azure-classic",
            Profile::Directory => "directory",
        }
    }

    /// Guesses the profile from an adapter's manifest name (`vmware-vcenter` → vcenter,
    /// `azure-rm` → azure-rm …); anything unrecognised is `directory`.
    pub fn infer(manifest_name: &str) -> Profile {
        let n = manifest_name.to_ascii_lowercase();
        if n.contains("vcenter") {
            Profile::Vcenter
        } else if n.contains("esxi") {
            Profile::Esxi
        } else if n.contains("classic") {
            Profile::AzureClassic
        } else if n.contains("azure") || n.contains("-rm") {
            Profile::AzureRm
        } else {
            Profile::Directory
        }
    }

    /// The config keys the profile gives the adapter (values are per site), for `check` and
    /// the docs: a vendor adapter for this profile must read these keys.
    pub fn config_keys(self) -> &'static [&'static str] {
        match self {
            Profile::Vcenter | Profile::Esxi => &["endpoint", "username", "scheme", "secret:password"],
            Profile::AzureRm => &[
                "login_endpoint",
                "arm_endpoint",
                "blob_endpoint",
                "tenant_id",
                "client_id",
                "subscription_id",
                "resource_group",
                "secret:client_secret",
            ],
            Profile::AzureClassic => &[
                "management_endpoint",
                "blob_endpoint",
                "subscription_id",
                "certificate_thumbprint",
                "storage_account",
                "secret:management_certificate_key",
                "secret:storage_key",
            ],
            Profile::Directory => &["root", "preopen:/site"],
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const SUB: &str = "2f0c6e7a-1111-4222-8333-944445555666";
const RG: &str = "rg-dr";

/// The seed VM every site has: its name as the adapter lists it, and which of its disks the
/// data cases use (by position in `vm-info.disks`).
pub(crate) struct Seed {
    pub vm_name: &'static str,
    pub disk_index: usize,
}

const VCENTER: &str = r#"
mode = "vcenter"
datacenter = "dc1"
hosts = [{ name = "esx1.lab.local" }, { name = "esx2.lab.local" }]
datastores = [{ name = "datastore1", capacity_gib = 100 }, { name = "local-esx1", capacity_gib = 20, hosts = ["esx1.lab.local"] }]
networks = [{ name = "VM Network" }]
users = [{ name = "administrator@vsphere.local", password = "Secret1!", role = "Admin" }]

[[vms]]
name = "web01"
host = "esx1.lab.local"
datastore = "datastore1"
guest_id = "rhel8_64Guest"
power = "poweredOn"
cpus = 2
memory_mb = 2048
networks = ["VM Network"]
extra_config = { "disk.EnableUUID" = "TRUE" }
change_tracking = true
disks = [{ capacity_mib = 16 }]
"#;

const ESXI: &str = r#"
mode = "esxi"
license = "esxEnterprisePlus"
hosts = [{ name = "esx-standalone.lab.local" }]
datastores = [{ name = "datastore1", capacity_gib = 50 }]
networks = [{ name = "VM Network" }]
vms = [{ name = "web01", power = "poweredOn", networks = ["VM Network"], change_tracking = true, disks = [{ capacity_mib = 16 }] }]
users = [{ name = "root", password = "esxroot" }]
"#;

const AZURE: &str = r#"
[[subscriptions]]
id = "2f0c6e7a-1111-4222-8333-944445555666"
name = "DR"

[[subscriptions.resource_groups]]
name = "rg-dr"
location = "westeurope"

[[subscriptions.resource_groups.virtual_networks]]
name = "vnet-dr"
address_prefixes = ["10.10.0.0/16"]
subnets = [{ name = "default", address_prefix = "10.10.1.0/24" }]

[[subscriptions.resource_groups.vms]]
name = "web01"
network = "vnet-dr"
subnet = "default"
os_disk_mib = 4
data_disks_mib = [4]

[[subscriptions.classic.virtual_networks]]
name = "classic-vnet"
address_prefixes = ["10.20.0.0/16"]
subnets = [{ name = "Subnet-1", address_prefix = "10.20.1.0/24" }]

[[subscriptions.classic.vms]]
service = "legacy-svc"
name = "app01"
network = "classic-vnet"
subnet = "Subnet-1"
os_disk_mib = 4
data_disks_mib = [4]
"#;

/// Capacity of the directory site's seed disk.
const DIRECTORY_DISK_BYTES: u64 = 4 << 20;

enum Backend {
    Vsphere(VsphereLab),
    Azure(AzureLab),
    Directory { root: PathBuf },
}

/// A fault the error-path and limits cases inject.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Injected {
    /// HTTP 429 with `Retry-After` in seconds.
    Throttle(u32),
    /// An HTTP 5xx (or the backend's server-side fault).
    ServerError,
    /// The connection closes without an answer.
    Drop,
    /// Every answer is delayed.
    Latency(Duration),
}

/// Where a disk's bytes are in the lab, so the kit can write, clear and read them as the
/// guest would.
#[derive(Debug, Clone)]
pub(crate) enum LabDisk {
    Vsphere { vm: String, key: i32 },
    Azure(DiskId),
    File(PathBuf),
}

static SECRET_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Puts a secret in a process environment variable of its own (the plugin host reads
/// secrets only from the environment) and returns the variable's name.
fn secret_var(value: &str) -> String {
    let var = format!("HOMEWARD_TESTKIT_SECRET_{}_{}", std::process::id(), SECRET_SEQ.fetch_add(1, Ordering::SeqCst));
    // SAFETY: each variable name is used once, written before any adapter can read it, and
    // never changed afterwards.
    unsafe { std::env::set_var(&var, value) };
    var
}

fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
}

/// What an adapter is given on a site: its config, secrets, grants.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    pub config: BTreeMap<String, String>,
    /// Secret name → value (put in an environment variable at load time).
    pub secrets: BTreeMap<String, String>,
    pub allow_hosts: Vec<String>,
    pub preopens: Vec<Preopen>,
}

/// One fresh simulated site.
pub(crate) struct Site {
    pub profile: Profile,
    backend: Backend,
    /// State of the site and of the adapter's key-value stores; removed on drop.
    pub dir: tempfile::TempDir,
}

impl Site {
    /// Starts a fresh site for `profile`.
    pub async fn start(profile: Profile) -> anyhow::Result<Site> {
        let dir = tempfile::tempdir().context("creating the test kit's temporary directory")?;
        let backend = match profile {
            Profile::Vcenter | Profile::Esxi => {
                let spec = if profile == Profile::Vcenter { VCENTER } else { ESXI };
                Backend::Vsphere(VsphereLab::from_toml(spec, dir.path().join("lab")).await.context("starting the vSphere lab site")?)
            }
            Profile::AzureRm | Profile::AzureClassic => {
                let lab = tokio::task::spawn_blocking(|| AzureLab::start_with_toml(AzureLabConfig::default(), AZURE))
                    .await
                    .context("starting the Azure lab site")?
                    .context("starting the Azure lab site")?;
                Backend::Azure(lab)
            }
            Profile::Directory => {
                let root = dir.path().join("site");
                write_directory_site(&root).context("writing the directory site")?;
                Backend::Directory { root }
            }
        };
        Ok(Site { profile, backend, dir })
    }

    /// The seed VM and disk of this profile.
    pub fn seed(&self) -> Seed {
        match self.profile {
            Profile::Vcenter | Profile::Esxi | Profile::Directory => Seed { vm_name: "web01", disk_index: 0 },
            Profile::AzureRm => Seed { vm_name: "web01", disk_index: 1 },
            Profile::AzureClassic => Seed { vm_name: "app01", disk_index: 1 },
        }
    }

    /// A VM id that does not exist, in the form the backend's ids take.
    pub fn missing_vm_id(&self) -> String {
        match self.profile {
            Profile::Vcenter | Profile::Esxi => "vm-99999".into(),
            Profile::AzureRm => format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/hw-missing"),
            Profile::AzureClassic => "legacy-svc/hw-missing".into(),
            Profile::Directory => "hw-missing".into(),
        }
    }

    /// The grants a production operator would give the adapter here.
    pub fn grants(&self) -> Grants {
        let mut g = Grants::default();
        let mut set = |k: &str, v: String| {
            g.config.insert(k.to_string(), v);
        };
        match &self.backend {
            Backend::Vsphere(lab) => {
                let c = lab.credentials();
                let endpoint = lab.addr().to_string();
                set("endpoint", endpoint.clone());
                set("username", c.user.clone());
                set("scheme", "http".into());
                g.secrets.insert("password".into(), c.password);
                g.allow_hosts.push(format!("http://{endpoint}"));
            }
            Backend::Azure(lab) => {
                let e = lab.endpoints().clone();
                let c = lab.credentials();
                if self.profile == Profile::AzureRm {
                    set("login_endpoint", e.login.clone());
                    set("arm_endpoint", e.resource_manager.clone());
                    set("blob_endpoint", e.blob.clone());
                    set("tenant_id", c.tenant_id.clone());
                    set("client_id", c.client_id.clone());
                    set("subscription_id", SUB.into());
                    set("resource_group", RG.into());
                    g.secrets.insert("client_secret".into(), c.client_secret.clone());
                    g.allow_hosts = vec![origin(&e.login), origin(&e.resource_manager), origin(&e.blob)];
                } else {
                    use base64::Engine;
                    set("management_endpoint", e.classic.clone());
                    set("blob_endpoint", format!("{}/{}", e.blob, c.storage_account));
                    set("subscription_id", SUB.into());
                    set("certificate_thumbprint", c.management_certificate.thumbprint.clone());
                    set("storage_account", c.storage_account.clone());
                    g.secrets.insert(
                        "management_certificate_key".into(),
                        base64::engine::general_purpose::STANDARD.encode(&c.management_certificate.key),
                    );
                    g.secrets.insert("storage_key".into(), c.storage_key.clone());
                    g.allow_hosts = vec![origin(&e.classic), origin(&e.blob)];
                }
                g.allow_hosts.dedup();
            }
            Backend::Directory { root } => {
                set("root", "/site".into());
                g.preopens.push(Preopen { host: root.clone(), guest: "/site".into(), writable: true });
            }
        }
        g
    }

    /// The grants with a wrong credential, for the auth error path; `None` where the site
    /// has no credentials.
    pub fn bad_credentials(&self) -> Option<Grants> {
        let mut g = self.grants();
        match self.profile {
            Profile::Vcenter | Profile::Esxi => {
                g.secrets.insert("password".into(), "not-the-password".into());
            }
            Profile::AzureRm => {
                g.secrets.insert("client_secret".into(), "not-the-secret".into());
            }
            Profile::AzureClassic => {
                use base64::Engine;
                g.secrets.insert("management_certificate_key".into(), base64::engine::general_purpose::STANDARD.encode(b"not the certificate key"));
            }
            Profile::Directory => return None,
        }
        Some(g)
    }

    /// A plugin spec for the component with these grants.
    pub fn spec(&self, name: &str, component: &Path, sha256: &str, grants: &Grants, limits: Limits) -> PluginSpec {
        PluginSpec {
            name: name.to_string(),
            path: component.to_path_buf(),
            sha256: sha256.to_string(),
            allow_hosts: grants.allow_hosts.clone(),
            preopens: grants.preopens.clone(),
            config: grants.config.clone(),
            secrets: grants.secrets.iter().map(|(k, v)| (k.clone(), secret_var(v))).collect(),
            limits,
            kv_dir: self.dir.path().join("kv").join(name),
            config_source: format!("homeward testkit --profile {}", self.profile),
        }
    }

    /// Where the disk the adapter calls `disk_id` (of VM `vm_name`, at position `index`) is
    /// in the lab.
    pub fn lab_disk(&self, vm_name: &str, index: usize, disk_id: &str) -> anyhow::Result<LabDisk> {
        Ok(match &self.backend {
            Backend::Vsphere(lab) => {
                let keys = lab.disk_keys(vm_name)?;
                let key = disk_id.parse::<i32>().ok().filter(|k| keys.contains(k)).or_else(|| keys.get(index).copied());
                LabDisk::Vsphere { vm: vm_name.to_string(), key: key.with_context(|| format!("the lab has no disk {disk_id} on {vm_name}"))? }
            }
            Backend::Azure(_) if self.profile == Profile::AzureRm => LabDisk::Azure(if index == 0 {
                DiskId::Managed { subscription: SUB.into(), resource_group: RG.into(), disk: format!("{vm_name}-osdisk") }
            } else {
                DiskId::Managed { subscription: SUB.into(), resource_group: RG.into(), disk: format!("{vm_name}-data{}", index - 1) }
            }),
            Backend::Azure(_) => LabDisk::Azure(DiskId::Classic {
                subscription: SUB.into(),
                service: "legacy-svc".into(),
                role: vm_name.to_string(),
                lun: if index == 0 { None } else { Some(index as u32 - 1) },
            }),
            Backend::Directory { root } => LabDisk::File(root.join(vm_name).join(format!("{disk_id}.raw"))),
        })
    }

    /// Writes `data` at `offset` as the guest would; change tracking sees it.
    pub fn write(&self, disk: &LabDisk, offset: u64, data: &[u8]) -> anyhow::Result<()> {
        match (&self.backend, disk) {
            (Backend::Vsphere(lab), LabDisk::Vsphere { vm, key }) => lab.seed_disk(vm, *key, offset, data)?,
            (Backend::Azure(lab), LabDisk::Azure(id)) => lab.write_disk(id, offset, data)?,
            (Backend::Directory { .. }, LabDisk::File(path)) => write_file_at(path, offset, data)?,
            _ => anyhow::bail!("disk {disk:?} is not on this site"),
        }
        Ok(())
    }

    /// Clears a range as the guest would (TRIM on Azure; zeroing where the backend has no
    /// discard, which vSphere reports as a write).
    pub fn clear(&self, disk: &LabDisk, offset: u64, len: u64) -> anyhow::Result<()> {
        match (&self.backend, disk) {
            (Backend::Azure(lab), LabDisk::Azure(id)) => lab.clear_disk(id, offset, len)?,
            _ => self.write(disk, offset, &vec![0; len as usize])?,
        }
        Ok(())
    }

    /// Reads a range as the guest sees it.
    pub fn read(&self, disk: &LabDisk, offset: u64, len: u64) -> anyhow::Result<Vec<u8>> {
        Ok(match (&self.backend, disk) {
            (Backend::Vsphere(lab), LabDisk::Vsphere { vm, key }) => lab.read_disk(vm, *key, offset, len as usize)?,
            (Backend::Azure(lab), LabDisk::Azure(id)) => lab.read_disk(id, offset, len)?,
            (Backend::Directory { .. }, LabDisk::File(path)) => read_file_at(path, offset, len)?,
            _ => anyhow::bail!("disk {disk:?} is not on this site"),
        })
    }

    /// Arms a fault for the adapter's next request; `Err(reason)` where the site cannot.
    pub fn inject(&self, fault: Injected) -> Result<(), String> {
        match &self.backend {
            Backend::Vsphere(lab) => match fault {
                Injected::Throttle(secs) => {
                    // A throttling proxy in front of vCenter answers 429 with Retry-After.
                    lab.inject_throttle(None, 1, secs);
                    Ok(())
                }
                Injected::ServerError => {
                    // vim25 answers server-side failures with HTTP 500 and a SystemError fault.
                    for method in ["RetrievePropertiesEx", "RetrieveProperties"] {
                        lab.inject_fault(method, 1, VsphereFault::system_error("injected by the test kit"));
                    }
                    Ok(())
                }
                Injected::Drop => {
                    lab.drop_connections(None, 1);
                    Ok(())
                }
                Injected::Latency(d) => {
                    lab.inject_latency(None, d);
                    Ok(())
                }
            },
            Backend::Azure(lab) => {
                let service = if self.profile == Profile::AzureRm { Service::ResourceManager } else { Service::Classic };
                lab.inject(match fault {
                    Injected::Throttle(secs) => AzureFault::throttle(service, secs),
                    Injected::ServerError => AzureFault::server_error(service, 503),
                    Injected::Drop => AzureFault::drop_connection(service),
                    Injected::Latency(d) => AzureFault::latency(service, d).times(1000),
                });
                Ok(())
            }
            Backend::Directory { .. } => Err("a directory site has no server between the adapter and its data, so there is nothing to inject a fault into".into()),
        }
    }

    /// Disarms every injected fault.
    pub fn clear_faults(&self) {
        match &self.backend {
            Backend::Vsphere(lab) => lab.clear_injections(),
            Backend::Azure(lab) => lab.clear_faults(),
            Backend::Directory { .. } => {}
        }
    }

    /// Stops the site's servers (dropping does too).
    pub async fn shutdown(self) {
        match self.backend {
            Backend::Vsphere(lab) => lab.shutdown().await,
            Backend::Azure(lab) => {
                let _ = tokio::task::spawn_blocking(move || lab.shutdown()).await;
            }
            Backend::Directory { .. } => {}
        }
    }
}

fn write_directory_site(root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(root.join("web01"))?;
    std::fs::write(root.join("site.toml"), "name = \"testkit\"\nhost = \"testkit-host\"\ndatastore = \"testkit-store\"\nnetworks = [\"lan\", \"dmz\"]\n")?;
    std::fs::write(
        root.join("web01/vm.toml"),
        format!(
            "name = \"web01\"\nguest_os = \"ubuntu64Guest\"\ncpu_count = 2\nmemory_mib = 2048\npower_state = \"powered-on\"\nnetworks = [\"lan\"]\n\n[disks.disk0]\ncapacity_bytes = {DIRECTORY_DISK_BYTES}\nchange_tracking = true\n"
        ),
    )?;
    let f = std::fs::File::create(root.join("web01/disk0.raw"))?;
    f.set_len(DIRECTORY_DISK_BYTES)?;
    Ok(())
}

fn write_file_at(path: &Path, offset: u64, data: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)?;
    f.sync_all()
}

fn read_file_at(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

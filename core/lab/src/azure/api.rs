//! The lab's Rust API: start and stop the site, describe it, act as the guests and script
//! faults.

use super::blob::store::{BlobRef, BlobStore, PAGE};
use super::classic;
use super::error::LabError;
use super::faults::{Fault, FaultRule};
use super::spec::LabSpec;
use super::state::State;
use super::token::TokenStore;
use super::{AzureLabConfig, ManagementCertificate, Service, Shared};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Base URLs of the four services (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Token authority: `{login}/{tenant}/oauth2/v2.0/token`.
    pub login: String,
    /// Resource Manager: `{resource_manager}/subscriptions/...`.
    pub resource_manager: String,
    /// Classic Service Management: `{classic}/{subscription-id}/services/...`.
    pub classic: String,
    /// Blob service, path-style: `{blob}/{account}/{container}/{blob}`.
    pub blob: String,
}

impl Endpoints {
    /// The token URL for the lab's tenant.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.login)
    }
}

/// Everything a client needs to authenticate to the lab.
#[derive(Clone)]
pub struct Credentials {
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Service principal client id.
    pub client_id: String,
    /// Service principal secret.
    pub client_secret: String,
    /// Scope to request for Resource Manager tokens.
    pub scope: String,
    /// Customer storage account name.
    pub storage_account: String,
    /// Its key, base64 as the portal shows it.
    pub storage_key: String,
    /// Classic management certificate.
    pub management_certificate: ManagementCertificate,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("storage_account", &self.storage_account)
            .field("management_certificate", &self.management_certificate)
            .finish_non_exhaustive()
    }
}

/// Names a disk for guest I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskId {
    /// A Resource Manager managed disk.
    Managed {
        /// Subscription id.
        subscription: String,
        /// Resource group.
        resource_group: String,
        /// Disk name.
        disk: String,
    },
    /// A classic VHD of a role: the OS disk (`lun: None`) or a data disk.
    Classic {
        /// Subscription id.
        subscription: String,
        /// Cloud service name.
        service: String,
        /// Role name.
        role: String,
        /// Data disk LUN, `None` for the OS disk.
        lun: Option<u32>,
    },
}

/// A disk of a VM as the lab stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// How to address it in the lab API.
    pub id: DiskId,
    /// Disk name.
    pub name: String,
    /// LUN of a data disk; `None` for the OS disk.
    pub lun: Option<u32>,
    /// Virtual size in bytes (without the VHD footer).
    pub size_bytes: u64,
    /// The local fixed-VHD file (image plus footer), stored sparse.
    pub path: PathBuf,
}

/// A running simulated Azure site. Dropping it shuts it down.
pub struct AzureLab {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _data_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for AzureLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureLab").field("endpoints", &self.shared.endpoints).finish_non_exhaustive()
    }
}

fn bind() -> Result<(TcpListener, String), LabError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(LabError::Start)?;
    l.set_nonblocking(true).map_err(LabError::Start)?;
    let url = format!("http://{}", l.local_addr().map_err(LabError::Start)?);
    Ok((l, url))
}

impl AzureLab {
    /// Binds the four services on ephemeral loopback ports and starts serving.
    pub fn start(config: AzureLabConfig) -> Result<Self, LabError> {
        let (temp, root) = match &config.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(LabError::Start)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new().prefix("homeward-azure-lab").tempdir().map_err(LabError::Start)?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let (login_l, login) = bind()?;
        let (arm_l, resource_manager) = bind()?;
        let (classic_l, classic_url) = bind()?;
        let (blob_l, blob) = bind()?;
        let endpoints = Endpoints { login, resource_manager, classic: classic_url, blob };
        let mut blobs = BlobStore::new(root);
        blobs.add_account(&config.storage_account, config.storage_key.clone());
        let md_account = format!("md-{}", uuid::Uuid::new_v4().simple().to_string().get(..12).unwrap_or("lab"));
        blobs.add_account(&md_account, (0..64).map(|_| rand::random::<u8>()).collect());
        let state = State {
            blobs,
            tokens: TokenStore::default(),
            subs: BTreeMap::new(),
            ops: BTreeMap::new(),
            faults: Vec::new(),
            md_account,
            account: config.storage_account.clone(),
            log: Default::default(),
        };
        let shared = Arc::new(Shared { config, endpoints, state: Mutex::new(state) });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let listeners = vec![
            (Service::Login, login_l),
            (Service::ResourceManager, arm_l),
            (Service::Classic, classic_l),
            (Service::Blob, blob_l),
        ];
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("azure-lab".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    for (service, l) in listeners {
                        match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => {
                                tokio::spawn(super::server::serve(server_shared.clone(), service, l));
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                });
                // Open connections and in-flight requests are abandoned: the lab is gone.
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .map_err(LabError::Start)?;
        let mut lab = Self { shared, stop: Some(stop_tx), thread: Some(thread), _data_dir: temp };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(lab),
            Ok(Err(e)) => {
                lab.stop_now();
                Err(LabError::Start(e))
            }
            Err(_) => {
                lab.stop_now();
                Err(LabError::Start(std::io::Error::other("the lab thread exited during start")))
            }
        }
    }

    /// Starts a lab and creates what `toml` describes (see [`LabSpec`]).
    pub fn start_with_toml(config: AzureLabConfig, toml: &str) -> Result<Self, LabError> {
        let spec = LabSpec::from_toml(toml)?;
        let lab = Self::start(config)?;
        lab.apply_spec(&spec)?;
        Ok(lab)
    }

    /// The services' base URLs.
    pub fn endpoints(&self) -> &Endpoints {
        &self.shared.endpoints
    }

    /// The credentials the lab accepts.
    pub fn credentials(&self) -> Credentials {
        let c = &self.shared.config;
        Credentials {
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            scope: "https://management.azure.com/.default".into(),
            storage_account: c.storage_account.clone(),
            storage_key: STANDARD.encode(&c.storage_key),
            management_certificate: c.management_certificate.clone(),
        }
    }

    /// Stops serving and waits for the server thread. Also done on drop.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Creates everything `spec` describes; existing subscriptions and groups are reused.
    pub fn apply_spec(&self, spec: &LabSpec) -> Result<(), LabError> {
        let mut st = self.shared.lock();
        for sub in &spec.subscriptions {
            super::setup::apply_subscription(&mut st, sub)?;
        }
        Ok(())
    }

    /// Arms a fault.
    pub fn inject(&self, fault: Fault) {
        let remaining = fault.times;
        self.shared.lock().faults.push(FaultRule { fault, remaining });
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// How many armed fault uses are left (all faults together).
    pub fn pending_faults(&self) -> u32 {
        self.shared.lock().faults.iter().map(|r| r.remaining).sum()
    }

    /// The requests answered so far (the most recent 10 000), oldest first.
    pub fn requests(&self) -> Vec<super::RecordedRequest> {
        self.shared.lock().log.iter().cloned().collect()
    }

    /// Makes every bearer token issued so far expired.
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.expire_all();
    }

    /// The disks of a Resource Manager VM, OS disk first.
    pub fn vm_disks(&self, subscription: &str, resource_group: &str, vm: &str) -> Result<Vec<DiskInfo>, LabError> {
        let st = self.shared.lock();
        let g = st.rg(subscription, resource_group).ok_or_else(|| LabError::NotFound { kind: "resource group", name: resource_group.into() })?;
        let v = g.vms.get(&vm.to_ascii_lowercase()).ok_or_else(|| LabError::NotFound { kind: "virtual machine", name: vm.into() })?;
        let mut out = Vec::new();
        for (lun, key) in std::iter::once((None, &v.os_disk)).chain(v.data_disks.iter().map(|d| (Some(d.lun), &d.disk))) {
            let d = g.disks.get(key).ok_or_else(|| LabError::NotFound { kind: "disk", name: key.clone() })?;
            let blob = st.blobs.get(&d.blob, None)?;
            out.push(DiskInfo {
                id: DiskId::Managed { subscription: subscription.into(), resource_group: g.name.clone(), disk: d.name.clone() },
                name: d.name.clone(),
                lun,
                size_bytes: d.size_bytes,
                path: blob.file.clone(),
            });
        }
        Ok(out)
    }

    /// The disks of a classic role, OS disk first.
    pub fn classic_vm_disks(&self, subscription: &str, service: &str, role: &str) -> Result<Vec<DiskInfo>, LabError> {
        let mut st = self.shared.lock();
        let r = classic::role_mut(&mut st, subscription, service, role).ok_or_else(|| LabError::NotFound { kind: "classic role", name: role.into() })?.clone();
        let mut out = Vec::new();
        for d in std::iter::once(&r.os_disk).chain(r.data_disks.iter()) {
            out.push(DiskInfo {
                id: DiskId::Classic { subscription: subscription.into(), service: service.into(), role: r.name.clone(), lun: d.lun },
                name: d.name.clone(),
                lun: d.lun,
                size_bytes: d.size_bytes,
                path: st.blobs.get(&d.blob, None)?.file.clone(),
            });
        }
        Ok(out)
    }

    fn resolve(st: &mut State, id: &DiskId) -> Result<(BlobRef, u64), LabError> {
        match id {
            DiskId::Managed { subscription, resource_group, disk } => {
                let g = st.rg(subscription, resource_group).ok_or_else(|| LabError::NotFound { kind: "resource group", name: resource_group.clone() })?;
                let d = g.disks.get(&disk.to_ascii_lowercase()).ok_or_else(|| LabError::NotFound { kind: "disk", name: disk.clone() })?;
                Ok((d.blob.clone(), d.size_bytes))
            }
            DiskId::Classic { subscription, service, role, lun } => {
                let r = classic::role_mut(st, subscription, service, role).ok_or_else(|| LabError::NotFound { kind: "classic role", name: role.clone() })?;
                let d = match lun {
                    None => &r.os_disk,
                    Some(l) => r.data_disks.iter().find(|d| d.lun == Some(*l)).ok_or_else(|| LabError::NotFound { kind: "classic data disk", name: format!("{role} lun {l}") })?,
                };
                Ok((d.blob.clone(), d.size_bytes))
            }
        }
    }

    fn check_range(offset: u64, len: u64, size: u64) -> Result<(), LabError> {
        let reason = if !offset.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            "offset and length must be multiples of 512"
        } else if len == 0 {
            "length must not be zero"
        } else if offset.checked_add(len).is_none_or(|end| end > size) {
            "the range extends past the end of the disk"
        } else {
            return Ok(());
        };
        Err(LabError::InvalidRange { offset, len, reason })
    }

    /// Simulates the guest writing `data` at `offset` (512-byte aligned) of a disk.
    pub fn write_disk(&self, disk: &DiskId, offset: u64, data: &[u8]) -> Result<(), LabError> {
        let mut st = self.shared.lock();
        let (blob, size) = Self::resolve(&mut st, disk)?;
        Self::check_range(offset, data.len() as u64, size)?;
        st.blobs.write_pages(&blob, offset, data)?;
        Ok(())
    }

    /// Simulates the guest discarding (TRIM) a range: the pages become clear, reading zeros.
    pub fn clear_disk(&self, disk: &DiskId, offset: u64, len: u64) -> Result<(), LabError> {
        let mut st = self.shared.lock();
        let (blob, size) = Self::resolve(&mut st, disk)?;
        Self::check_range(offset, len, size)?;
        st.blobs.clear_pages(&blob, offset, len)?;
        Ok(())
    }

    /// Reads a disk range as the guest sees it.
    pub fn read_disk(&self, disk: &DiskId, offset: u64, len: u64) -> Result<Vec<u8>, LabError> {
        let mut st = self.shared.lock();
        let (blob, size) = Self::resolve(&mut st, disk)?;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(LabError::InvalidRange { offset, len, reason: "the range extends past the end of the disk" });
        }
        Ok(st.blobs.read(&blob, None, offset, len)?)
    }

    /// Power state of a Resource Manager VM as its instance view code suffix
    /// (`running`, `stopped`, `deallocated`, `starting`…), settling due operations first.
    pub fn vm_power_state(&self, subscription: &str, resource_group: &str, vm: &str) -> Result<String, LabError> {
        let mut st = self.shared.lock();
        super::lro::settle(&mut st, &self.shared.config.lro);
        let g = st.rg(subscription, resource_group).ok_or_else(|| LabError::NotFound { kind: "resource group", name: resource_group.into() })?;
        let v = g.vms.get(&vm.to_ascii_lowercase()).ok_or_else(|| LabError::NotFound { kind: "virtual machine", name: vm.into() })?;
        Ok(v.power.code().0.trim_start_matches("PowerState/").to_string())
    }

    /// Whether a Resource Manager VM exists.
    pub fn vm_exists(&self, subscription: &str, resource_group: &str, vm: &str) -> bool {
        let mut st = self.shared.lock();
        super::lro::settle(&mut st, &self.shared.config.lro);
        st.rg(subscription, resource_group).is_some_and(|g| g.vms.contains_key(&vm.to_ascii_lowercase()))
    }

    /// Power state (`Started`, `Stopped`, `Starting`, `Stopping`) and instance status
    /// (`ReadyRole`, `StoppedVM`, `StoppedDeallocated`…) of a classic role.
    pub fn classic_role_state(&self, subscription: &str, service: &str, role: &str) -> Result<(String, String), LabError> {
        let mut st = self.shared.lock();
        super::lro::settle(&mut st, &self.shared.config.lro);
        let r = classic::role_mut(&mut st, subscription, service, role).ok_or_else(|| LabError::NotFound { kind: "classic role", name: role.into() })?;
        Ok((r.power.as_str().to_string(), r.instance_status.clone()))
    }

    /// Whether a classic role exists.
    pub fn classic_role_exists(&self, subscription: &str, service: &str, role: &str) -> bool {
        let mut st = self.shared.lock();
        super::lro::settle(&mut st, &self.shared.config.lro);
        classic::role_mut(&mut st, subscription, service, role).is_some()
    }
}

impl Drop for AzureLab {
    fn drop(&mut self) {
        self.stop_now();
    }
}

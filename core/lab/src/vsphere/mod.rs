//! Simulated vSphere site: vCenter or standalone ESXi, speaking vim25 SOAP at `/sdk` and
//! datastore file access at `/folder` on 127.0.0.1, with VM disks as sparse VMDK files.
//!
//! ```no_run
//! # async fn demo() -> Result<(), homeward_lab::vsphere::LabError> {
//! use homeward_lab::vsphere::VsphereLab;
//! let spec = r#"
//!     mode = "esxi"
//!     license = "esxBasic"
//!     hosts = [{ name = "esx1" }]
//!     datastores = [{ name = "datastore1", capacity_gib = 10 }]
//!     users = [{ name = "root", password = "pw" }]
//! "#;
//! let lab = VsphereLab::from_toml(spec, "/tmp/lab").await?;
//! println!("{} as {}", lab.sdk_url(), lab.credentials().user);
//! lab.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What the site serves
//!
//! - Sessions: `RetrieveServiceContent`, `CurrentTime`, `Login`/`Logout` with the
//!   `vmware_soap_session` cookie (NotAuthenticated without it or after
//!   [`VsphereLab::expire_sessions`]).
//! - Inventory: `CreateContainerView`/`DestroyView`, `RetrievePropertiesEx`,
//!   `ContinueRetrievePropertiesEx`, `CancelRetrievePropertiesEx`, `RetrieveProperties`
//!   with TraversalSpec/SelectionSpec, dotted property paths and paging; `CreateFilter`,
//!   `WaitForUpdatesEx`, `WaitForUpdates`, `CheckForUpdates`, `DestroyPropertyFilter`.
//! - VMs (as tasks): `CreateVM_Task`, `PowerOnVM_Task`, `PowerOffVM_Task`, `Destroy_Task`,
//!   `ReconfigVM_Task`, `CreateSnapshot_Task`, `RemoveSnapshot_Task`,
//!   `RemoveAllSnapshots_Task`, `CloneVM_Task` (vCenter only; ESXi answers NotSupported);
//!   `ShutdownGuest`; `QueryChangedDiskAreas`.
//! - Search: `FindByUuid`, `FindAllByUuid` (BIOS or instance uuid), `FindByInventoryPath`,
//!   `FindByDatastorePath`.
//! - Licence and privileges: `LicenseManager.licenses`, `HasPrivilegeOnEntities`,
//!   `HasPrivilegeOnEntity`, `AuthorizationManager.roleList`. A free ESXi licence
//!   (`esxBasic`) answers writes and `QueryChangedDiskAreas` with RestrictedVersion.
//! - Files: `GET`/`PUT /folder/{path}?dcPath=…&dsName=…` (Range, Content-Range), by session
//!   cookie or basic auth, needing `Datastore.Browse` / `Datastore.FileManagement`.
//!
//! Disks are a `vmfs` descriptor plus a sparse flat extent. A snapshot freezes each disk's
//! running file and continues in a sparse copy (`vm-000001.vmdk`), so the snapshot's files
//! hold its point in time; removing it renames the newer file over the frozen one, as
//! consolidation does. Changed areas are tracked per disk in 512-byte sectors.

mod cbt;
mod collector;
mod configspec;
pub mod faults;
mod folder;
mod inject;
mod inventory;
mod methods;
mod properties;
mod search;
mod server;
pub mod soap;
pub mod spec;
mod tasks;
mod updates;
mod vm_properties;
mod vmops;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use faults::Fault;
pub use soap::MoRef;
pub use spec::{Mode, SiteSpec};
pub use tasks::TaskGate;

use inject::Injections;
use inventory::{Inventory, Power};
use vmops::WriteData;

/// Errors of the lab API (not of the simulated site, which answers with [`Fault`]s).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The TOML description does not parse.
    #[error("invalid vSphere lab description: {0}")]
    Toml(#[from] toml::de::Error),
    /// The description is inconsistent (unknown host name, two ESXi hosts, ...).
    #[error("invalid vSphere lab description: {0}")]
    InvalidSpec(String),
    /// A lab file could not be created or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The server could not bind its loopback port.
    #[error("cannot bind 127.0.0.1 for the vSphere lab: {0}")]
    Bind(std::io::Error),
    /// No VM, disk or datastore of that name.
    #[error("{0} not found in the vSphere lab")]
    NotFound(String),
    /// Guest writes need a running guest.
    #[error("VM '{0}' is powered off: power it on before simulating guest writes")]
    PoweredOff(String),
    /// The site refused the operation with a vSphere fault.
    #[error("vSphere fault {0}")]
    Fault(#[from] Fault),
}

/// The shared state behind the HTTP server and the lab API.
pub struct Site {
    inv: Mutex<Inventory>,
    /// Whether tasks run, or are held queued or running.
    task_gate: watch::Sender<TaskGate>,
    /// How long a task stays running before it completes.
    task_duration: Mutex<Duration>,
    injections: Mutex<Injections>,
}

impl Site {
    /// Locks the inventory. A panic elsewhere must not wedge the whole lab, so a poisoned
    /// lock is taken over.
    fn lock(&self) -> MutexGuard<'_, Inventory> {
        self.inv.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A login the site accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// A running simulated vSphere site. Shut it down with [`VsphereLab::shutdown`]; dropping
/// it also stops the server and closes every connection.
pub struct VsphereLab {
    site: Arc<Site>,
    addr: SocketAddr,
    mode: Mode,
    dir: PathBuf,
    users: Vec<Credentials>,
    datacenter: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl VsphereLab {
    /// Parses a TOML description (see [`spec`]) and starts the site.
    pub async fn from_toml(toml: &str, dir: impl Into<PathBuf>) -> Result<Self, LabError> {
        Self::start(SiteSpec::from_toml(toml)?, dir).await
    }

    /// Builds the inventory under `dir` (datastores become `dir/datastores/<name>/`) and
    /// serves it on an ephemeral loopback port. Must be called inside a tokio runtime.
    pub async fn start(spec: SiteSpec, dir: impl Into<PathBuf>) -> Result<Self, LabError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| LabError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let inv = Inventory::build(&spec, &dir)?;
        let datacenter = inv.datacenter.name.clone();
        let site = Arc::new(Site {
            inv: Mutex::new(inv),
            task_gate: watch::channel(TaskGate::Open).0,
            task_duration: Mutex::new(Duration::ZERO),
            injections: Mutex::new(Injections::default()),
        });
        let (addr, stop, task) = server::serve(Arc::clone(&site))
            .await
            .map_err(LabError::Bind)?;
        tracing::info!(%addr, mode = ?spec.mode, "vSphere lab started");
        Ok(VsphereLab {
            site,
            addr,
            mode: spec.mode,
            dir,
            users: spec
                .users
                .iter()
                .map(|u| Credentials {
                    user: u.name.clone(),
                    password: u.password.clone(),
                })
                .collect(),
            datacenter,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The SOAP endpoint, `http://127.0.0.1:<port>/sdk`.
    pub fn sdk_url(&self) -> String {
        format!("http://{}/sdk", self.addr)
    }

    /// `http://127.0.0.1:<port>`, the base of `/sdk` and `/folder`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `/folder` URL of a datastore file (`rel` relative to the datastore root).
    pub fn folder_url(&self, datastore: &str, rel: &str) -> String {
        format!(
            "http://{}/folder/{rel}?dcPath={}&dsName={datastore}",
            self.addr, self.datacenter
        )
    }

    /// Socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// vCenter or ESXi.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The datacenter name (`dcPath` of `/folder`).
    pub fn datacenter(&self) -> &str {
        &self.datacenter
    }

    /// The lab directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first user of the description, normally the administrator.
    pub fn credentials(&self) -> Credentials {
        self.users[0].clone()
    }

    /// A user of the description by name.
    pub fn user(&self, name: &str) -> Option<Credentials> {
        self.users.iter().find(|u| u.user == name).cloned()
    }

    /// Every user of the description.
    pub fn users(&self) -> Vec<Credentials> {
        self.users.clone()
    }

    /// The managed object reference of a VM.
    pub fn vm_ref(&self, vm: &str) -> Option<MoRef> {
        self.site.lock().vm_by_name(vm).map(|v| v.moref.clone())
    }

    /// The managed object reference of a datastore.
    pub fn datastore_ref(&self, name: &str) -> Option<MoRef> {
        self.site
            .lock()
            .datastore_by_name(name)
            .map(|d| d.moref.clone())
    }

    /// Whether a VM is powered on.
    pub fn is_powered_on(&self, vm: &str) -> Result<bool, LabError> {
        let inv = self.site.lock();
        let v = inv
            .vm_by_name(vm)
            .ok_or_else(|| LabError::NotFound(format!("VM '{vm}'")))?;
        Ok(v.power == Power::On)
    }

    /// Device keys of a VM's disks, in order.
    pub fn disk_keys(&self, vm: &str) -> Result<Vec<i32>, LabError> {
        let inv = self.site.lock();
        let v = inv
            .vm_by_name(vm)
            .ok_or_else(|| LabError::NotFound(format!("VM '{vm}'")))?;
        Ok(v.disks.iter().map(|d| d.key).collect())
    }

    /// Local paths of a disk's running descriptor and flat extent.
    pub fn disk_files(&self, vm: &str, key: i32) -> Result<(PathBuf, PathBuf), LabError> {
        let inv = self.site.lock();
        let v = inv
            .vm_by_name(vm)
            .ok_or_else(|| LabError::NotFound(format!("VM '{vm}'")))?;
        let d = v
            .disk(key)
            .ok_or_else(|| LabError::NotFound(format!("disk {key} of VM '{vm}'")))?;
        let ds = inv
            .datastore(&d.datastore)
            .ok_or_else(|| LabError::NotFound(format!("datastore of disk {key}")))?;
        let top = d.chain.last().cloned().unwrap_or_default();
        Ok((ds.dir.join(&top), ds.dir.join(inventory::flat_of(&top))))
    }

    fn guest(&self, vm: &str, key: i32, offset: u64, data: WriteData<'_>) -> Result<(), LabError> {
        let mut inv = self.site.lock();
        let v = inv
            .vm_by_name(vm)
            .ok_or_else(|| LabError::NotFound(format!("VM '{vm}'")))?;
        if v.power != Power::On {
            return Err(LabError::PoweredOff(vm.to_string()));
        }
        let vm_ref = v.moref.clone();
        vmops::write_disk(&mut inv, &vm_ref, key, offset, data)?;
        Ok(())
    }

    /// Simulates the guest writing `data` at `offset` of disk `key`; change tracking
    /// records it. Fails with NoDiskSpace when the datastore is full.
    pub fn guest_write(
        &self,
        vm: &str,
        key: i32,
        offset: u64,
        data: &[u8],
    ) -> Result<(), LabError> {
        self.guest(vm, key, offset, WriteData::Bytes(data))
    }

    /// Simulates the guest writing `len` zero bytes (which allocates and counts as changed).
    pub fn guest_write_zeros(
        &self,
        vm: &str,
        key: i32,
        offset: u64,
        len: u64,
    ) -> Result<(), LabError> {
        self.guest(vm, key, offset, WriteData::Zeros(len))
    }

    /// Writes disk content for test setup, whatever the power state (a disk that already
    /// held data). Change tracking records it like any other write.
    pub fn seed_disk(&self, vm: &str, key: i32, offset: u64, data: &[u8]) -> Result<(), LabError> {
        let mut inv = self.site.lock();
        let vm_ref = inv
            .vm_by_name(vm)
            .ok_or_else(|| LabError::NotFound(format!("VM '{vm}'")))?
            .moref
            .clone();
        vmops::write_disk(&mut inv, &vm_ref, key, offset, WriteData::Bytes(data))?;
        Ok(())
    }

    /// Powers a VM on or off directly (test setup, or a host event such as a crash),
    /// without a task.
    pub fn set_power(&self, vm: &str, on: bool) -> Result<(), LabError> {
        let mut inv = self.site.lock();
        let vm_ref = inv
            .vm_by_name(vm)
            .ok_or_else(|| LabError::NotFound(format!("VM '{vm}'")))?
            .moref
            .clone();
        let v = inv.vm_mut(&vm_ref)?;
        match (on, v.power) {
            (true, Power::Off) => vmops::power_on(v)?,
            (false, Power::On) => vmops::power_off(v)?,
            _ => {}
        }
        Ok(())
    }

    /// Reads the running contents of a disk, as the guest sees them.
    pub fn read_disk(
        &self,
        vm: &str,
        key: i32,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, LabError> {
        let (_, flat) = self.disk_files(vm, key)?;
        crate::vmdk::read_at(&flat, offset, len).map_err(|e| LabError::Io {
            path: flat.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    fn injections(&self) -> MutexGuard<'_, Injections> {
        self.site
            .injections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Delays every answer to `method` (every request when `None`) by `delay`. Folder
    /// accesses are named `GET /folder` and `PUT /folder`.
    pub fn inject_latency(&self, method: Option<&str>, delay: Duration) {
        self.injections().add_latency(method, delay);
    }

    /// Answers the next `count` calls of `method` with `fault` instead of running them.
    pub fn inject_fault(&self, method: &str, count: u32, fault: Fault) {
        self.injections().add_fault(method, count, fault);
    }

    /// Lets the next `count` tasks started by `method` (e.g. `CreateSnapshot_Task`) end in
    /// state `error` with `fault` instead of doing their work; the call itself succeeds.
    pub fn inject_task_error(&self, method: &str, count: u32, fault: Fault) {
        self.injections()
            .add_fault(&tasks::task_key(method), count, fault);
    }

    /// Closes the connection, without an answer, for the next `count` calls of `method`
    /// (any request when `None`).
    pub fn drop_connections(&self, method: Option<&str>, count: u32) {
        self.injections().add_drop(method, count);
    }

    /// Answers the next `count` SOAP calls of `method` (any call when `None`) with HTTP 429
    /// and `Retry-After: retry_after_secs`, as a throttling proxy in front of vCenter does.
    pub fn inject_throttle(&self, method: Option<&str>, count: u32, retry_after_secs: u32) {
        self.injections().add_throttle(method, count, retry_after_secs);
    }

    /// Removes all latency, fault, drop and throttle rules.
    pub fn clear_injections(&self) {
        self.injections().clear();
    }

    /// Marks a datastore full (free space 0, every allocation fails with NoDiskSpace) or
    /// frees it again.
    pub fn set_datastore_full(&self, name: &str, full: bool) -> Result<(), LabError> {
        let mut inv = self.site.lock();
        let ds = inv
            .datastores
            .iter_mut()
            .find(|d| d.name == name)
            .ok_or_else(|| LabError::NotFound(format!("datastore '{name}'")))?;
        ds.full = full;
        Ok(())
    }

    /// Shrinks a datastore's capacity so that only `free` more bytes fit: it then runs full
    /// as data is written, and further allocations fail with NoDiskSpace.
    pub fn limit_datastore_free_space(&self, name: &str, free: u64) -> Result<(), LabError> {
        let mut inv = self.site.lock();
        let ds = inv
            .datastores
            .iter_mut()
            .find(|d| d.name == name)
            .ok_or_else(|| LabError::NotFound(format!("datastore '{name}'")))?;
        ds.capacity = ds.used() + free;
        Ok(())
    }

    /// Ends every session, as a vCenter restart or session timeout does.
    pub fn expire_sessions(&self) {
        self.site.lock().sessions.clear();
    }

    /// Holds tasks from now on: [`TaskGate::HoldQueued`] keeps new tasks `queued`,
    /// [`TaskGate::HoldRunning`] lets them reach `running` but not finish, and
    /// [`TaskGate::Open`] lets every held task complete.
    pub fn set_task_gate(&self, gate: TaskGate) {
        self.site.task_gate.send_replace(gate);
    }

    /// Keeps new tasks `queued` until [`VsphereLab::release_tasks`].
    pub fn hold_tasks(&self) {
        self.set_task_gate(TaskGate::HoldQueued);
    }

    /// Lets held tasks run to completion.
    pub fn release_tasks(&self) {
        self.set_task_gate(TaskGate::Open);
    }

    /// Makes every task stay `running` this long before it completes, like a slow host.
    pub fn set_task_duration(&self, duration: Duration) {
        *self
            .site
            .task_duration
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = duration;
    }

    /// Names of all VMs.
    pub fn vm_names(&self) -> Vec<String> {
        self.site
            .lock()
            .vms
            .values()
            .map(|v| v.name.clone())
            .collect()
    }

    /// An extraConfig value of a VM.
    pub fn extra_config(&self, vm: &str, key: &str) -> Result<Option<String>, LabError> {
        let inv = self.site.lock();
        let v = inv
            .vm_by_name(vm)
            .ok_or_else(|| LabError::NotFound(format!("VM '{vm}'")))?;
        Ok(v.extra_config.get(key).cloned())
    }

    /// Applies another licence edition, as an administrator would (`esxBasic` is the
    /// free edition, which refuses API writes on standalone ESXi).
    pub fn set_license(&self, edition: &str) {
        self.site.lock().license.edition = edition.to_string();
    }

    /// Names of a VM's snapshots, oldest first.
    pub fn snapshot_names(&self, vm: &str) -> Result<Vec<String>, LabError> {
        let inv = self.site.lock();
        let v = inv
            .vm_by_name(vm)
            .ok_or_else(|| LabError::NotFound(format!("VM '{vm}'")))?;
        Ok(v.snapshots.iter().map(|s| s.name.clone()).collect())
    }

    /// Stops the server and closes every connection.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for VsphereLab {
    fn drop(&mut self) {
        self.stop_now();
        // Aborting drops the accept loop's JoinSet, which aborts every connection task.
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.release_tasks();
    }
}

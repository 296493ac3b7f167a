//! A loaded plugin: its pin, manifest and grants, and calls into it under the sandbox's
//! limits. One instance serves calls one at a time; an instance that traps, times out or
//! hits a limit is discarded and the next call instantiates a fresh one.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::Instrument;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::bindings::{Adapter, AdapterError, AdapterPre, compute, disks, inventory, site};
use crate::cache::CacheOutcome;
use crate::engine::PluginEngine;
use crate::error::{CallError, LoadError};
use crate::inspect::ComponentInfo;
use crate::kv::KvStore;
use crate::limits::{Limits, MemoryLimiter};
use crate::outbound::OutboundPolicy;
use crate::state::{AdapterState, PluginShared, SandboxHooks};

/// A directory the operator lets a plugin see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the adapter sees it, such as `/site`.
    pub guest: String,
    /// Whether the adapter may change files there.
    pub writable: bool,
}

/// Everything the operator's config says about one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The plugin's name in config (`[plugins.NAME]`).
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// The pinned sha256 (hex, optionally prefixed `sha256:`).
    pub sha256: String,
    /// Outbound origins the operator grants (narrowing the manifest).
    pub allow_hosts: Vec<String>,
    pub preopens: Vec<Preopen>,
    /// The adapter's own config section, values rendered as strings.
    pub config: BTreeMap<String, String>,
    /// Secret name → host environment variable.
    pub secrets: BTreeMap<String, String>,
    pub limits: Limits,
    /// Directory of the plugin's key-value store.
    pub kv_dir: PathBuf,
    /// The config file the spec came from, for error messages.
    pub config_source: String,
}

/// How loading went.
#[derive(Debug, Clone, Serialize)]
pub struct LoadStats {
    pub cache: CacheOutcome,
    #[serde(with = "duration_ms")]
    pub compile_time: Duration,
    #[serde(with = "duration_ms")]
    pub total_time: Duration,
}

mod duration_ms {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

/// Per-call measurements, for the test kit's limits report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallStats {
    pub calls: u64,
    pub host_calls: u64,
    pub fuel_used: u64,
    pub peak_memory_bytes: u64,
}

struct Live {
    store: Store<AdapterState>,
    adapter: Adapter,
}

/// The future a call closure returns.
pub(crate) type CallFuture<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<Result<R, AdapterError>>> + Send + 'a>>;

/// A loaded adapter.
pub struct Plugin {
    spec: PluginSpec,
    sha256: String,
    info: ComponentInfo,
    policy: Arc<OutboundPolicy>,
    shared: Arc<PluginShared>,
    engine: Engine,
    pre: AdapterPre<AdapterState>,
    stats: LoadStats,
    live: tokio::sync::Mutex<Option<Live>>,
    call_stats: std::sync::Mutex<CallStats>,
}

impl Plugin {
    pub(crate) fn new(
        engine: &PluginEngine,
        spec: PluginSpec,
        sha256: String,
        info: ComponentInfo,
        pre: AdapterPre<AdapterState>,
        stats: LoadStats,
    ) -> Result<Plugin, LoadError> {
        let name = spec.name.clone();
        let policy = crate::verify::policy(&spec, &info)?;
        for p in &spec.preopens {
            if !p.host.is_dir() {
                return Err(LoadError::Preopen { name, host: p.host.clone(), message: "not a directory".into() });
            }
        }
        let kv = KvStore::open(&spec.kv_dir).map_err(|e| LoadError::Config { name: name.clone(), message: e.to_string() })?;
        let shared = Arc::new(PluginShared { name, config: spec.config.clone(), secrets: spec.secrets.clone(), kv });
        if engine.options.fuel != spec.limits.fuel.is_some() && spec.limits.fuel.is_some() {
            return Err(LoadError::Config { name: spec.name.clone(), message: "a fuel budget needs an engine built with fuel enabled".into() });
        }
        Ok(Plugin {
            spec,
            sha256,
            info,
            policy: Arc::new(policy),
            shared,
            engine: engine.engine.clone(),
            pre,
            stats,
            live: tokio::sync::Mutex::new(None),
            call_stats: std::sync::Mutex::new(CallStats::default()),
        })
    }

    /// The plugin's configured name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The component file.
    pub fn path(&self) -> &Path {
        &self.spec.path
    }

    /// The verified sha256 of the component.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Version, exports, imports and manifest, read before instantiation.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// The outbound policy: declared, granted and effective origins.
    pub fn outbound(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// The plugin's limits.
    pub fn limits(&self) -> &Limits {
        &self.spec.limits
    }

    /// The operator's preopens.
    pub fn preopens(&self) -> &[Preopen] {
        &self.spec.preopens
    }

    /// How loading went (cache hit or compile, and times).
    pub fn load_stats(&self) -> &LoadStats {
        &self.stats
    }

    /// Totals over the calls so far.
    pub fn call_stats(&self) -> CallStats {
        self.call_stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Maps a path the adapter sees (inside a preopen) to the host's path. Refuses paths
    /// that climb out of the preopen.
    pub fn resolve_guest_path(&self, guest: &str) -> Option<PathBuf> {
        let guest_path = Path::new(guest);
        if guest_path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return None;
        }
        self.spec
            .preopens
            .iter()
            .filter_map(|p| guest_path.strip_prefix(&p.guest).ok().map(|rest| p.host.join(rest)))
            .next()
    }

    /// Creates a fresh instance. Exposed so benchmarks can measure instantiation.
    pub async fn instantiate_fresh(&self) -> Result<(), CallError> {
        let live = self.instantiate().await?;
        drop(live);
        Ok(())
    }

    async fn instantiate(&self) -> Result<Live, CallError> {
        let fail = |message: String| CallError::Instantiate { plugin: self.spec.name.clone(), message };
        let mut wasi = WasiCtxBuilder::new();
        for p in &self.spec.preopens {
            let perms = if p.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            wasi.preopened_dir(&p.host, &p.guest, perms).map_err(|e| fail(format!("preopen {}: {e:#}", p.host.display())))?;
        }
        let state = AdapterState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: SandboxHooks { policy: self.policy.clone(), denials: Vec::new() },
            limiter: MemoryLimiter::new(self.spec.limits.memory_mib),
            shared: self.shared.clone(),
            deadline: Some(Instant::now() + self.spec.limits.call_timeout),
            host_calls: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Yield to the executor at every tick so a spinning guest cannot starve other
        // tasks, and interrupt it once the call's deadline has passed.
        store.epoch_deadline_callback(|ctx| match ctx.data().deadline {
            Some(deadline) if Instant::now() >= deadline => Ok(UpdateDeadline::Interrupt),
            _ => Ok(UpdateDeadline::Yield(1)),
        });
        store.set_epoch_deadline(1);
        if let Some(fuel) = self.spec.limits.fuel {
            store.set_fuel(fuel).map_err(|e| fail(format!("{e:#}")))?;
            store.fuel_async_yield_interval(Some(100_000)).map_err(|e| fail(format!("{e:#}")))?;
        }
        let timeout = self.spec.limits.call_timeout;
        let adapter = match tokio::time::timeout(timeout, self.pre.instantiate_async(&mut store)).await {
            Ok(Ok(adapter)) => adapter,
            Ok(Err(e)) => {
                if store.data().limiter.hit {
                    return Err(CallError::MemoryLimit { plugin: self.spec.name.clone(), call: "instantiate".into(), limit_mib: self.spec.limits.memory_mib });
                }
                return Err(fail(format!("{e:#}")));
            }
            Err(_) => return Err(CallError::Timeout { plugin: self.spec.name.clone(), call: "instantiate".into(), timeout }),
        };
        Ok(Live { store, adapter })
    }

    /// Runs one export call under the sandbox's limits.
    pub(crate) async fn call<R, F>(&self, call: &str, f: F) -> Result<R, CallError>
    where
        R: Send,
        F: for<'a> FnOnce(&'a Adapter, &'a mut Store<AdapterState>) -> CallFuture<'a, R> + Send,
    {
        let span = tracing::info_span!("adapter_call", plugin = %self.spec.name, call);
        self.call_inner(call, f).instrument(span).await
    }

    async fn call_inner<R, F>(&self, call: &str, f: F) -> Result<R, CallError>
    where
        R: Send,
        F: for<'a> FnOnce(&'a Adapter, &'a mut Store<AdapterState>) -> CallFuture<'a, R> + Send,
    {
        let plugin = self.spec.name.clone();
        let limits = &self.spec.limits;
        let mut guard = self.live.lock().await;
        if guard.is_none() {
            *guard = Some(self.instantiate().await?);
        }
        let live = guard.as_mut().expect("instance present");
        {
            let data = live.store.data_mut();
            data.deadline = Some(Instant::now() + limits.call_timeout);
            data.limiter.hit = false;
            data.hooks.denials.clear();
            data.host_calls = 0;
        }
        if let Some(fuel) = limits.fuel {
            live.store.set_fuel(fuel).map_err(|e| CallError::Instantiate { plugin: plugin.clone(), message: format!("{e:#}") })?;
        }
        live.store.set_epoch_deadline(1);

        let outcome = {
            let Live { store, adapter } = live;
            tokio::time::timeout(limits.call_timeout, f(adapter, store)).await
        };

        let data = live.store.data_mut();
        let denial = data.hooks.denials.drain(..).next();
        let memory_hit = data.limiter.hit;
        let host_calls = data.host_calls;
        let peak = data.limiter.peak_bytes as u64;
        let fuel_used = limits.fuel.map(|budget| budget.saturating_sub(live.store.get_fuel().unwrap_or(0))).unwrap_or(0);
        if let Ok(mut s) = self.call_stats.lock() {
            s.calls += 1;
            s.host_calls += host_calls;
            s.fuel_used += fuel_used;
            s.peak_memory_bytes = s.peak_memory_bytes.max(peak);
        }

        let call = call.to_string();
        let result = match outcome {
            Ok(Ok(Ok(value))) => return Ok(value),
            Ok(Ok(Err(error))) => match denial {
                Some(denial) => Err(CallError::Denied { plugin, call, denial }),
                None => return Err(CallError::Adapter { plugin, call, error }),
            },
            Err(_elapsed) => Err(CallError::Timeout { plugin, call, timeout: limits.call_timeout }),
            Ok(Err(error)) => Err(if memory_hit {
                CallError::MemoryLimit { plugin, call, limit_mib: limits.memory_mib }
            } else if let Some(denial) = denial {
                CallError::Denied { plugin, call, denial }
            } else {
                match error.downcast_ref::<Trap>() {
                    Some(Trap::Interrupt) => CallError::Timeout { plugin, call, timeout: limits.call_timeout },
                    Some(Trap::OutOfFuel) => CallError::FuelExhausted { plugin, call, fuel: limits.fuel.unwrap_or(0) },
                    _ => CallError::Trap { plugin, call, message: format!("{error:#}") },
                }
            }),
        };
        // The instance may be mid-way through anything; never reuse it.
        *guard = None;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "adapter call failed; instance discarded");
        }
        result
    }

    // ---- site ----

    /// `site.describe`.
    pub async fn describe(&self) -> Result<site::SiteInfo, CallError> {
        self.call("site.describe", |a, s| Box::pin(a.homeward_adapter_site().call_describe(s))).await
    }

    // ---- inventory ----

    /// `inventory.list-hosts`.
    pub async fn list_hosts(&self) -> Result<Vec<inventory::HostInfo>, CallError> {
        self.call("inventory.list-hosts", |a, s| Box::pin(a.homeward_adapter_inventory().call_list_hosts(s))).await
    }

    /// `inventory.list-datastores`.
    pub async fn list_datastores(&self) -> Result<Vec<inventory::DatastoreInfo>, CallError> {
        self.call("inventory.list-datastores", |a, s| Box::pin(a.homeward_adapter_inventory().call_list_datastores(s))).await
    }

    /// `inventory.list-networks`.
    pub async fn list_networks(&self) -> Result<Vec<inventory::NetworkInfo>, CallError> {
        self.call("inventory.list-networks", |a, s| Box::pin(a.homeward_adapter_inventory().call_list_networks(s))).await
    }

    /// `inventory.list-vms`.
    pub async fn list_vms(&self) -> Result<Vec<inventory::VmInfo>, CallError> {
        self.call("inventory.list-vms", |a, s| Box::pin(a.homeward_adapter_inventory().call_list_vms(s))).await
    }

    /// `inventory.get-vm`.
    pub async fn get_vm(&self, vm: &str) -> Result<inventory::VmInfo, CallError> {
        let vm = vm.to_string();
        self.call("inventory.get-vm", move |a, s| Box::pin(async move { a.homeward_adapter_inventory().call_get_vm(s, &vm).await })).await
    }

    /// `inventory.check-privileges`.
    pub async fn check_privileges(&self, entities: Vec<String>, privileges: Vec<String>) -> Result<Vec<inventory::PrivilegeCheck>, CallError> {
        self.call("inventory.check-privileges", move |a, s| {
            Box::pin(async move { a.homeward_adapter_inventory().call_check_privileges(s, &entities, &privileges).await })
        })
        .await
    }

    // ---- compute ----

    /// `compute.create-vm`.
    pub async fn create_vm(&self, spec: compute::VmSpec) -> Result<compute::Operation, CallError> {
        self.call("compute.create-vm", move |a, s| Box::pin(async move { a.homeward_adapter_compute().call_create_vm(s, &spec).await })).await
    }

    /// `compute.create-vm-from-disks`.
    pub async fn create_vm_from_disks(&self, spec: compute::VmSpec, attach: Vec<String>) -> Result<compute::Operation, CallError> {
        self.call("compute.create-vm-from-disks", move |a, s| {
            Box::pin(async move { a.homeward_adapter_compute().call_create_vm_from_disks(s, &spec, &attach).await })
        })
        .await
    }

    /// `compute.power-on`.
    pub async fn power_on(&self, vm: &str) -> Result<compute::Operation, CallError> {
        let vm = vm.to_string();
        self.call("compute.power-on", move |a, s| Box::pin(async move { a.homeward_adapter_compute().call_power_on(s, &vm).await })).await
    }

    /// `compute.power-off`.
    pub async fn power_off(&self, vm: &str, mode: compute::PowerOffMode) -> Result<compute::Operation, CallError> {
        let vm = vm.to_string();
        self.call("compute.power-off", move |a, s| Box::pin(async move { a.homeward_adapter_compute().call_power_off(s, &vm, mode).await })).await
    }

    /// `compute.delete-vm`.
    pub async fn delete_vm(&self, vm: &str) -> Result<compute::Operation, CallError> {
        let vm = vm.to_string();
        self.call("compute.delete-vm", move |a, s| Box::pin(async move { a.homeward_adapter_compute().call_delete_vm(s, &vm).await })).await
    }

    /// `compute.attach-disk`.
    pub async fn attach_disk(&self, vm: &str, disk: compute::DiskSpec) -> Result<compute::Operation, CallError> {
        let vm = vm.to_string();
        self.call("compute.attach-disk", move |a, s| Box::pin(async move { a.homeward_adapter_compute().call_attach_disk(s, &vm, &disk).await })).await
    }

    /// `compute.detach-disk`.
    pub async fn detach_disk(&self, vm: &str, disk: &str, delete_backing: bool) -> Result<compute::Operation, CallError> {
        let (vm, disk) = (vm.to_string(), disk.to_string());
        self.call("compute.detach-disk", move |a, s| {
            Box::pin(async move { a.homeward_adapter_compute().call_detach_disk(s, &vm, &disk, delete_backing).await })
        })
        .await
    }

    /// `compute.reconfigure`.
    pub async fn reconfigure(&self, vm: &str, changes: Vec<crate::bindings::types::KeyValue>) -> Result<compute::Operation, CallError> {
        let vm = vm.to_string();
        self.call("compute.reconfigure", move |a, s| Box::pin(async move { a.homeward_adapter_compute().call_reconfigure(s, &vm, &changes).await })).await
    }

    /// `compute.create-snapshot`.
    pub async fn create_snapshot(&self, vm: &str, name: &str, quiesce: bool) -> Result<compute::Operation, CallError> {
        let (vm, name) = (vm.to_string(), name.to_string());
        self.call("compute.create-snapshot", move |a, s| {
            Box::pin(async move { a.homeward_adapter_compute().call_create_snapshot(s, &vm, &name, quiesce).await })
        })
        .await
    }

    /// `compute.remove-snapshot`.
    pub async fn remove_snapshot(&self, vm: &str, snapshot: &str) -> Result<compute::Operation, CallError> {
        let (vm, snapshot) = (vm.to_string(), snapshot.to_string());
        self.call("compute.remove-snapshot", move |a, s| {
            Box::pin(async move { a.homeward_adapter_compute().call_remove_snapshot(s, &vm, &snapshot).await })
        })
        .await
    }

    /// `compute.deploy-process-server`.
    pub async fn deploy_process_server(&self, spec: compute::ProcessServerSpec) -> Result<compute::Operation, CallError> {
        self.call("compute.deploy-process-server", move |a, s| {
            Box::pin(async move { a.homeward_adapter_compute().call_deploy_process_server(s, &spec).await })
        })
        .await
    }

    /// `compute.poll-operation`.
    pub async fn poll_operation(&self, id: &str) -> Result<compute::Operation, CallError> {
        let id = id.to_string();
        self.call("compute.poll-operation", move |a, s| Box::pin(async move { a.homeward_adapter_compute().call_poll_operation(s, &id).await })).await
    }

    /// Polls an operation until it finishes, honouring its `poll-after-ms`, and returns
    /// the finished operation. A failed operation becomes the adapter error it carries.
    pub async fn wait(&self, mut op: compute::Operation, call: &str) -> Result<compute::Operation, CallError> {
        loop {
            match op.state {
                compute::OperationState::Succeeded => return Ok(op),
                compute::OperationState::Failed(error) => {
                    return Err(CallError::Adapter { plugin: self.spec.name.clone(), call: call.to_string(), error });
                }
                compute::OperationState::Running => {
                    tokio::time::sleep(Duration::from_millis(u64::from(op.poll_after_ms.clamp(10, 30_000)))).await;
                    op = self.poll_operation(&op.id).await?;
                }
            }
        }
    }

    // ---- disks ----

    /// `disks.enable-change-tracking`.
    pub async fn enable_change_tracking(&self, vm: &str, disk: &str) -> Result<compute::Operation, CallError> {
        let (vm, disk) = (vm.to_string(), disk.to_string());
        self.call("disks.enable-change-tracking", move |a, s| {
            Box::pin(async move { a.homeward_adapter_disks().call_enable_change_tracking(s, &vm, &disk).await })
        })
        .await
    }

    /// `disks.changed-areas`.
    pub async fn changed_areas(&self, vm: &str, disk: &str, snapshot: &str, since: &str, start: u64) -> Result<disks::ChangeSet, CallError> {
        let (vm, disk, snapshot, since) = (vm.to_string(), disk.to_string(), snapshot.to_string(), since.to_string());
        self.call("disks.changed-areas", move |a, s| {
            Box::pin(async move { a.homeward_adapter_disks().call_changed_areas(s, &vm, &disk, &snapshot, &since, start).await })
        })
        .await
    }

    /// `disks.open`.
    pub async fn open(&self, vm: &str, disk: &str, snapshot: Option<&str>, mode: disks::AccessMode) -> Result<disks::DiskAccess, CallError> {
        let (vm, disk, snapshot) = (vm.to_string(), disk.to_string(), snapshot.map(str::to_string));
        self.call("disks.open", move |a, s| {
            Box::pin(async move { a.homeward_adapter_disks().call_open(s, &vm, &disk, snapshot.as_deref(), mode).await })
        })
        .await
    }

    /// `disks.create-disk`.
    pub async fn create_disk(&self, spec: disks::NewDisk) -> Result<compute::Operation, CallError> {
        self.call("disks.create-disk", move |a, s| Box::pin(async move { a.homeward_adapter_disks().call_create_disk(s, &spec).await })).await
    }

    /// `disks.delete-disk`.
    pub async fn delete_disk(&self, disk: &str) -> Result<compute::Operation, CallError> {
        let disk = disk.to_string();
        self.call("disks.delete-disk", move |a, s| Box::pin(async move { a.homeward_adapter_disks().call_delete_disk(s, &disk).await })).await
    }

    /// `disks.close`.
    pub async fn close(&self, handle: &str) -> Result<(), CallError> {
        let handle = handle.to_string();
        self.call("disks.close", move |a, s| Box::pin(async move { a.homeward_adapter_disks().call_close(s, &handle).await })).await
    }

    /// `disks.read` (served transport).
    pub async fn read(&self, handle: &str, offset: u64, length: u32) -> Result<Vec<u8>, CallError> {
        let handle = handle.to_string();
        self.call("disks.read", move |a, s| Box::pin(async move { a.homeward_adapter_disks().call_read(s, &handle, offset, length).await })).await
    }

    /// `disks.write` (served transport).
    pub async fn write(&self, handle: &str, offset: u64, data: Vec<u8>) -> Result<(), CallError> {
        let handle = handle.to_string();
        self.call("disks.write", move |a, s| Box::pin(async move { a.homeward_adapter_disks().call_write(s, &handle, offset, &data).await })).await
    }
}

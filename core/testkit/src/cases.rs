//! The conformance cases. Each runs on a fresh [`Site`] with its own plugin instances, and
//! ends passed, failed (with what to fix) or skipped (with why).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use homeward_plugin_host::bindings::compute::{DiskSpec, Operation, OperationState, PowerOffMode, ProcessServerSpec, VmSpec};
use homeward_plugin_host::bindings::disks::AccessMode;
use homeward_plugin_host::bindings::inventory::VmInfo;
use homeward_plugin_host::bindings::site::SiteInfo;
use homeward_plugin_host::bindings::types::{DeploymentModel, Extent, KeyValue, PowerState};
use homeward_plugin_host::limits::Limits;
use homeward_plugin_host::{AdapterError, CallError, Plugin, PluginEngine};

use crate::report::CaseStats;
use crate::site::{Grants, Injected, LabDisk, Profile, Site};
use crate::{RunOptions, locator};

/// How a case ended early.
#[derive(Debug, Clone)]
pub(crate) enum End {
    Fail(String),
    Skip(String),
}

/// A case's result before expectations are applied.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub end: Option<End>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    pub stats: CaseStats,
}

type Step<T> = Result<T, End>;

fn fail(msg: impl Into<String>) -> End {
    End::Fail(msg.into())
}

/// The kind of a call error: the contract's variant name, or the host's failure kind.
fn kind(e: &CallError) -> &'static str {
    e.kind()
}

trait OrFail<T> {
    /// Turns a failed call into a case failure naming the call.
    fn or_fail(self, what: &str) -> Step<T>;
}

impl<T> OrFail<T> for Result<T, CallError> {
    fn or_fail(self, what: &str) -> Step<T> {
        self.map_err(|e| fail(format!("{what} failed ({}): {e}", kind(&e))))
    }
}

/// Everything a case works with.
pub(crate) struct Ctx<'a> {
    opts: &'a RunOptions,
    engine: &'a PluginEngine,
    sha256: &'a str,
    site: Site,
    info: SiteInfo,
    plugins: Vec<Arc<Plugin>>,
    warnings: Vec<String>,
    notes: Vec<String>,
    rng: u64,
}

impl Ctx<'_> {
    fn component(&self) -> &Path {
        &self.opts.component
    }

    /// Loads the adapter with these grants and limits.
    fn load_with(&mut self, grants: &Grants, limits: Limits) -> Step<Arc<Plugin>> {
        let name = format!("testkit{}", self.plugins.len());
        let mut grants = grants.clone();
        grants.config.extend(self.opts.extra_config.clone());
        let spec = self.site.spec(&name, self.component(), self.sha256, &grants, limits);
        let p = Arc::new(self.engine.load(spec).map_err(|e| fail(format!("loading the adapter failed: {e}")))?);
        self.plugins.push(p.clone());
        Ok(p)
    }

    /// Loads the adapter with the production grants of this site.
    fn load(&mut self) -> Step<Arc<Plugin>> {
        let g = self.site.grants();
        let limits = self.opts.limits();
        self.load_with(&g, limits)
    }

    fn stats(&self) -> CaseStats {
        let mut s = CaseStats::default();
        for p in &self.plugins {
            let c = p.call_stats();
            s.calls += c.calls;
            s.host_calls += c.host_calls;
            s.fuel_used += c.fuel_used;
            s.peak_memory_bytes = s.peak_memory_bytes.max(c.peak_memory_bytes);
        }
        s
    }

    /// xorshift64*: small, seeded, reproducible.
    fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        // Never all zero: a zero block would read as unallocated.
        (0..len).map(|_| (self.next() >> 56) as u8 | 1).collect()
    }
}

/// Runs one case on a fresh site and collects what it used.
pub(crate) async fn run_case(
    name: &str,
    opts: &RunOptions,
    engine: &PluginEngine,
    sha256: &str,
    profile: Profile,
    described: Result<&SiteInfo, String>,
) -> Outcome {
    let info = match described {
        Ok(i) => i.clone(),
        Err(e) => {
            return Outcome {
                end: Some(fail(format!("site.describe failed on a fresh {profile} site, so no case can run: {e}"))),
                ..Outcome::default()
            };
        }
    };
    let site = match Site::start(profile).await {
        Ok(s) => s,
        Err(e) => return Outcome { end: Some(fail(format!("the {profile} lab site did not start: {e:#}"))), ..Outcome::default() },
    };
    let mut ctx = Ctx {
        opts,
        engine,
        sha256,
        site,
        info,
        plugins: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
        rng: opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
    };
    let budget = (opts.call_timeout * 8).max(Duration::from_secs(120));
    let fut = async {
        match name {
            "contract" => contract(&mut ctx).await,
            "idempotency" => idempotency(&mut ctx).await,
            "read-after-write" => read_after_write(&mut ctx).await,
            "change-tracking" => change_tracking(&mut ctx).await,
            "data-path" => data_path(&mut ctx).await,
            "errors::auth" => errors_auth(&mut ctx).await,
            "errors::not-found" => errors_not_found(&mut ctx).await,
            "errors::conflict" => errors_conflict(&mut ctx).await,
            "errors::throttle" => errors_injected(&mut ctx, Injected::Throttle(7)).await,
            "errors::server-error" => errors_injected(&mut ctx, Injected::ServerError).await,
            "errors::dropped-connection" => errors_injected(&mut ctx, Injected::Drop).await,
            "limits::deadline" => limits_deadline(&mut ctx).await,
            "sandbox::undeclared-host" => sandbox_undeclared_host(&mut ctx).await,
            "sandbox::outside-preopen" => sandbox_outside_preopen(&mut ctx).await,
            other => Err(fail(format!("unknown case {other}"))),
        }
    };
    let end = match tokio::time::timeout(budget, fut).await {
        Ok(Ok(())) => None,
        Ok(Err(end)) => Some(end),
        Err(_) => Some(fail(format!("the case did not finish within {budget:?}; some call kept the adapter busy"))),
    };
    let stats = ctx.stats();
    let Ctx { site, warnings, notes, plugins, .. } = ctx;
    drop(plugins);
    site.shutdown().await;
    Outcome { end, warnings, notes, stats }
}

// ------------------------------------------------------------------ helpers

async fn done(p: &Plugin, op: Result<Operation, CallError>, call: &str) -> Step<Operation> {
    let op = op.or_fail(call)?;
    p.wait(op, call).await.or_fail(&format!("{call} (its operation)"))
}

async fn seed_vm(ctx: &Ctx<'_>, p: &Plugin) -> Step<VmInfo> {
    let name = ctx.site.seed().vm_name;
    let vms = p.list_vms().await.or_fail("inventory.list-vms")?;
    vms.into_iter().find(|v| v.name == name).ok_or_else(|| {
        fail(format!("inventory.list-vms does not list the site's VM `{name}`; the {} profile's site has it (check the adapter reads the profile's config keys: {})", ctx.site.profile, ctx.site.profile.config_keys().join(", ")))
    })
}

fn is_adapter(e: &CallError, want: &str) -> bool {
    matches!(e, CallError::Adapter { .. }) && e.kind() == want
}

/// Whether an operation finished succeeded without the host having to poll.
fn finished_ok(op: &Operation) -> bool {
    matches!(op.state, OperationState::Succeeded)
}

/// Normalises extents: sorted, merged.
fn norm(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.retain(|e| e.1 > 0);
    v.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (o, l) in v {
        match out.last_mut() {
            Some(last) if o <= last.0 + last.1 => last.1 = last.1.max(o + l - last.0),
            _ => out.push((o, l)),
        }
    }
    out
}

/// `a` minus `b`, both normalised.
fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(o, l) in a {
        let mut pieces = vec![(o, o + l)];
        for &(bo, bl) in b {
            let (bs, be) = (bo, bo + bl);
            pieces = pieces
                .into_iter()
                .flat_map(|(s, e)| {
                    if be <= s || bs >= e {
                        vec![(s, e)]
                    } else {
                        let mut v = Vec::new();
                        if s < bs {
                            v.push((s, bs));
                        }
                        if be < e {
                            v.push((be, e));
                        }
                        v
                    }
                })
                .collect();
        }
        out.extend(pieces.into_iter().map(|(s, e)| (s, e - s)));
    }
    out
}

fn total(v: &[(u64, u64)]) -> u64 {
    v.iter().map(|e| e.1).sum()
}

fn show(v: &[(u64, u64)]) -> String {
    let parts: Vec<String> = v.iter().take(6).map(|(o, l)| format!("[{o}, {})", o + l)).collect();
    if v.len() > 6 { format!("{} … ({} ranges)", parts.join(" "), v.len()) } else { parts.join(" ") }
}

fn pairs(v: &[Extent]) -> Vec<(u64, u64)> {
    v.iter().map(|e| (e.offset, e.length)).collect()
}

fn sorted_disjoint(v: &[(u64, u64)]) -> bool {
    v.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0)
}

/// Follows `changed-areas` pages over the whole disk: (changed, cleared, change id).
async fn all_changes(p: &Plugin, vm: &str, disk: &str, snapshot: &str, since: &str, capacity: u64) -> Step<(Vec<(u64, u64)>, Vec<(u64, u64)>, String)> {
    let (mut changed, mut cleared, mut change_id) = (Vec::new(), Vec::new(), String::new());
    let mut start = 0;
    let mut pages = 0;
    while start < capacity {
        let cs = p.changed_areas(vm, disk, snapshot, since, start).await.or_fail(&format!("disks.changed-areas(since {since:?}, from {start})"))?;
        if cs.start_offset != start {
            return Err(fail(format!("disks.changed-areas asked from offset {start} answered a page starting at {}: start-offset must echo the request", cs.start_offset)));
        }
        if cs.length == 0 {
            return Err(fail(format!("disks.changed-areas from offset {start} answered a page of length 0 before the disk's end ({capacity}): every page must advance")));
        }
        let (c, k) = (pairs(&cs.changed), pairs(&cs.cleared));
        for (what, v) in [("changed", &c), ("cleared", &k)] {
            if !sorted_disjoint(v) {
                return Err(fail(format!("disks.changed-areas returned `{what}` extents that are not sorted and disjoint: {}", show(v))));
            }
            if v.iter().any(|&(o, l)| o < cs.start_offset || o + l > cs.start_offset + cs.length) {
                return Err(fail(format!("disks.changed-areas returned `{what}` extents outside the page [{}, {}): {}", cs.start_offset, cs.start_offset + cs.length, show(v))));
            }
        }
        changed.extend(c);
        cleared.extend(k);
        change_id = cs.change_id;
        start = cs.start_offset + cs.length;
        pages += 1;
        if pages > 100_000 {
            return Err(fail("disks.changed-areas never reached the end of the disk after 100000 pages"));
        }
    }
    Ok((norm(changed), norm(cleared), change_id))
}

/// A VM the kit creates, shaped after the seed VM.
fn new_vm_spec(seed: &VmInfo, name: &str) -> VmSpec {
    let on_prem = seed.deployment_model == DeploymentModel::OnPremises;
    VmSpec {
        name: name.to_string(),
        guest_os: seed.guest_os.clone(),
        cpu_count: 1,
        memory_mib: 1024,
        host: None,
        datastore: if on_prem { seed.disks.first().and_then(|d| d.datastore.clone()) } else { None },
        networks: seed.nics.first().map(|n| vec![n.network.clone()]).unwrap_or_default(),
        disks: if on_prem { vec![DiskSpec { label: "data0".into(), capacity_bytes: 8 << 20, datastore: None, thin: true }] } else { vec![] },
        extra_config: vec![],
    }
}

// ------------------------------------------------------------------ contract

async fn contract(ctx: &mut Ctx<'_>) -> Step<()> {
    let p = ctx.load()?;
    let caps = ctx.info.capabilities.clone();
    let mut problems: Vec<String> = Vec::new();
    let info = p.describe().await.or_fail("site.describe")?;
    for (field, value) in [("adapter", &info.adapter), ("api-version", &info.api_version), ("product", &info.product), ("product-version", &info.product_version)] {
        if value.trim().is_empty() {
            problems.push(format!("site.describe returned an empty `{field}`: fill it in (operators read it in `homeward plugins check`)"));
        }
    }
    let again = p.describe().await.or_fail("site.describe (again)")?;
    if again.adapter != info.adapter || format!("{:?}{:?}", again.kind, again.capabilities) != format!("{:?}{:?}", info.kind, info.capabilities) {
        problems.push("site.describe answered differently on a second call: it must be idempotent".into());
    }
    if caps.change_tracking && caps.transports.is_empty() {
        problems.push("describe claims change-tracking but offers no transport: list the locators `disks.open` returns in capabilities.transports".into());
    }

    let hosts = p.list_hosts().await.or_fail("inventory.list-hosts")?;
    let stores = p.list_datastores().await.or_fail("inventory.list-datastores")?;
    let nets = p.list_networks().await.or_fail("inventory.list-networks")?;
    let vms = p.list_vms().await.or_fail("inventory.list-vms")?;
    let host_ids: Vec<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
    let ds_ids: Vec<&str> = stores.iter().map(|d| d.id.as_str()).collect();
    let net_ids: Vec<String> = nets.iter().map(|n| n.id.to_ascii_lowercase()).collect();
    for (what, ids) in [
        ("host", host_ids.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        ("datastore", ds_ids.iter().map(|s| s.to_string()).collect()),
        ("network", net_ids.clone()),
        ("VM", vms.iter().map(|v| v.id.clone()).collect()),
    ] {
        let mut sorted = ids.clone();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            problems.push(format!("two {what}s share the id `{}`: ids must be unique", w[0]));
        }
        if ids.iter().any(|i| i.is_empty()) {
            problems.push(format!("a {what} has an empty id"));
        }
    }
    for d in &stores {
        for h in &d.accessible_from {
            if !host_ids.contains(&h.as_str()) {
                problems.push(format!("datastore {} is accessible-from host `{h}`, which list-hosts does not return: every reference must resolve", d.id));
            }
        }
        if d.free_bytes > d.capacity_bytes {
            problems.push(format!("datastore {} has more free bytes ({}) than capacity ({})", d.id, d.free_bytes, d.capacity_bytes));
        }
    }
    for v in &vms {
        if let Some(h) = &v.host
            && !host_ids.contains(&h.as_str()) {
                problems.push(format!("VM {} runs on host `{h}`, which list-hosts does not return", v.id));
            }
        let mut disk_ids: Vec<&str> = Vec::new();
        for d in &v.disks {
            if let Some(ds) = &d.datastore
                && !ds_ids.contains(&ds.as_str()) {
                    problems.push(format!("disk {} of VM {} is on datastore `{ds}`, which list-datastores does not return", d.id, v.id));
                }
            if d.capacity_bytes == 0 {
                problems.push(format!("disk {} of VM {} reports capacity 0", d.id, v.id));
            }
            if disk_ids.contains(&d.id.as_str()) {
                problems.push(format!("VM {} lists two disks with id `{}`", v.id, d.id));
            }
            disk_ids.push(&d.id);
        }
        for n in &v.nics {
            if !n.network.is_empty() && !net_ids.contains(&n.network.to_ascii_lowercase()) {
                problems.push(format!("NIC {} of VM {} is on network `{}`, which list-networks does not return", n.id, v.id, n.network));
            }
        }
        let snap_ids: Vec<&str> = v.snapshots.iter().map(|s| s.id.as_str()).collect();
        for s in &v.snapshots {
            if let Some(parent) = &s.parent
                && !snap_ids.contains(&parent.as_str()) {
                    problems.push(format!("snapshot {} of VM {} names parent `{parent}`, which the VM does not list", s.id, v.id));
                }
        }
        match p.get_vm(&v.id).await {
            Ok(one) if one.id == v.id && one.name == v.name => {
                let a: Vec<&str> = v.disks.iter().map(|d| d.id.as_str()).collect();
                let b: Vec<&str> = one.disks.iter().map(|d| d.id.as_str()).collect();
                if a != b {
                    problems.push(format!("get-vm {} lists disks {b:?} but list-vms listed {a:?}: disk ids must be stable", v.id));
                }
            }
            Ok(one) => problems.push(format!("get-vm `{}` returned VM `{}` named `{}`: get-vm must return the VM list-vms gave that id", v.id, one.id, one.name)),
            Err(e) => problems.push(format!("get-vm `{}` of a listed VM failed: {e}", v.id)),
        }
    }
    let again = p.list_vms().await.or_fail("inventory.list-vms (again)")?;
    let ids = |l: &[VmInfo]| {
        let mut v: Vec<(String, String)> = l.iter().map(|x| (x.name.clone(), x.id.clone())).collect();
        v.sort();
        v
    };
    if ids(&vms) != ids(&again) {
        problems.push(format!("list-vms returned different ids on a second call ({:?} then {:?}): ids must be stable while the object exists", ids(&vms), ids(&again)));
    }

    match p.poll_operation("homeward-testkit-no-such-operation").await {
        Err(e) if is_adapter(&e, "not-found") => {}
        Err(e) => problems.push(format!("poll-operation of an unknown id must be not-found; it was {}: {e}", kind(&e))),
        Ok(op) => problems.push(format!("poll-operation of an unknown id succeeded ({:?}): it must be not-found", op.state)),
    }
    match p.check_privileges(vec![String::new()], vec!["System.Read".into()]).await {
        Ok(list) if caps.privileges && list.len() != 1 => {
            problems.push(format!("check-privileges of one entity and one privilege returned {} entries: return one per pair", list.len()))
        }
        Ok(_) if !caps.privileges => problems.push("check-privileges answered although describe says privileges = false: set the capability, or return unsupported".into()),
        Err(e) if !caps.privileges && !is_adapter(&e, "unsupported") => {
            problems.push(format!("check-privileges without the privileges capability must be unsupported; it was {}: {e}", kind(&e)))
        }
        Err(e) if caps.privileges => problems.push(format!("check-privileges failed although describe says privileges = true: {e}")),
        _ => {}
    }
    if !caps.deploy_process_server {
        let spec = ProcessServerSpec {
            name: "hw-testkit-ps".into(),
            network: nets.first().map(|n| n.id.clone()).unwrap_or_default(),
            subnet: None,
            deployment_model: info.deployment_model,
            for_vms: vec![],
        };
        match p.deploy_process_server(spec).await {
            Err(e) if is_adapter(&e, "unsupported") => {}
            Err(e) => problems.push(format!("deploy-process-server without the capability must be unsupported; it was {}: {e}", kind(&e))),
            Ok(_) => problems.push("deploy-process-server started although describe says deploy-process-server = false".into()),
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(fail(problems.join("\n"))) }
}

// ------------------------------------------------------------------ idempotency

async fn idempotency(ctx: &mut Ctx<'_>) -> Step<()> {
    let p = ctx.load()?;
    let caps = ctx.info.capabilities.clone();
    let seed = seed_vm(ctx, &p).await?;
    let vm = seed.id.clone();
    let mut problems = Vec::new();

    // Power: a repeat is a succeeded no-op.
    done(&p, p.power_on(&vm).await, "compute.power-on").await?;
    match p.power_on(&vm).await {
        Ok(op) if finished_ok(&op) => {}
        Ok(op) => problems.push(format!("power-on of VM {vm}, already on, returned an operation in state {:?}: the contract says a VM already on returns a succeeded operation and changes nothing", op.state)),
        Err(e) => problems.push(format!("power-on of VM {vm}, already on, failed: {e}. A repeat must return a succeeded operation")),
    }
    done(&p, p.power_off(&vm, PowerOffMode::Hard).await, "compute.power-off").await?;
    match p.power_off(&vm, PowerOffMode::Hard).await {
        Ok(op) if finished_ok(&op) => {}
        Ok(op) => problems.push(format!("power-off of VM {vm}, already off, returned an operation in state {:?}: a VM already off returns a succeeded operation", op.state)),
        Err(e) => problems.push(format!("power-off of VM {vm}, already off, failed: {e}. A repeat must return a succeeded operation")),
    }

    // Snapshots: a repeated name is already-exists and creates nothing.
    match p.create_snapshot(&vm, "hw-idem", false).await {
        Err(e) if is_adapter(&e, "unsupported") => ctx.notes.push(format!("snapshot repeats not checked: create-snapshot is unsupported ({e})")),
        first => {
            let op = done(&p, first, "compute.create-snapshot").await?;
            let snap_id = op.target.clone().unwrap_or_else(|| "hw-idem".into());
            match p.create_snapshot(&vm, "hw-idem", false).await {
                Err(e) if is_adapter(&e, "already-exists") => {}
                Err(e) => problems.push(format!("a second create-snapshot named hw-idem on VM {vm} must be already-exists; it was {}: {e}", kind(&e))),
                Ok(op) => {
                    let outcome = p.wait(op, "create-snapshot").await;
                    if !matches!(&outcome, Err(e) if is_adapter(e, "already-exists")) {
                        problems.push(format!("a second create-snapshot named hw-idem on VM {vm} was accepted: snapshot names are unique per VM, a repeat must return already-exists and create nothing"));
                    }
                }
            }
            let n = p.get_vm(&vm).await.or_fail("inventory.get-vm")?.snapshots.iter().filter(|s| s.name == "hw-idem").count();
            if n != 1 {
                problems.push(format!("VM {vm} lists {n} snapshots named hw-idem after two create-snapshot calls: exactly one must exist"));
            }
            done(&p, p.remove_snapshot(&vm, &snap_id).await, "compute.remove-snapshot").await?;
            match p.remove_snapshot(&vm, &snap_id).await {
                Err(e) if is_adapter(&e, "not-found") => {}
                Err(e) => problems.push(format!("a second remove-snapshot of {snap_id} must be not-found; it was {}: {e}", kind(&e))),
                Ok(op) => {
                    if !matches!(p.wait(op, "remove-snapshot").await, Err(e) if is_adapter(&e, "not-found")) {
                        problems.push(format!("a second remove-snapshot of {snap_id} succeeded: removing a snapshot that does not exist must return not-found"));
                    }
                }
            }
        }
    }

    // Create and delete: a second create is already-exists; a second delete is not-found.
    let victim = if caps.create_vm {
        let spec = new_vm_spec(&seed, "hwidem01");
        let op = done(&p, p.create_vm(spec.clone()).await, "compute.create-vm").await?;
        let id = op.target.clone().ok_or_else(|| fail("create-vm succeeded without a target: the operation's target must be the new VM's id"))?;
        match p.create_vm(spec).await {
            Err(e) if is_adapter(&e, "already-exists") => {}
            Err(e) => problems.push(format!("a second create-vm named hwidem01 must be already-exists; it was {}: {e}", kind(&e))),
            Ok(op) => {
                if !matches!(p.wait(op, "create-vm").await, Err(e) if is_adapter(&e, "already-exists")) {
                    problems.push("a second create-vm named hwidem01 was accepted: a repeat must return already-exists and create nothing".into());
                }
            }
        }
        let n = p.list_vms().await.or_fail("inventory.list-vms")?.iter().filter(|v| v.name == "hwidem01").count();
        if n != 1 {
            problems.push(format!("list-vms shows {n} VMs named hwidem01 after two create-vm calls: exactly one must exist"));
        }
        let _ = done(&p, p.power_off(&id, PowerOffMode::Hard).await, "compute.power-off").await?;
        id
    } else {
        ctx.notes.push("create-vm repeats not checked: describe says create-vm = false; delete repeats use the site's own VM".into());
        vm.clone()
    };
    done(&p, p.delete_vm(&victim).await, "compute.delete-vm").await?;
    match p.delete_vm(&victim).await {
        Err(e) if is_adapter(&e, "not-found") => {}
        Err(e) => problems.push(format!("delete-vm repeated on VM {victim}, already deleted, must be not-found; it was {}: {e}", kind(&e))),
        Ok(op) => match p.wait(op, "delete-vm").await {
            Err(e) if is_adapter(&e, "not-found") => {}
            _ => problems.push(format!(
                "delete-vm repeated on VM {victim}, already deleted, returned a succeeded operation: the contract documents a repeated delete as not-found. \
                 Look the VM up first and return adapter-error::not-found naming it, so a retrying host can tell \"already gone\" from \"deleted now\""
            )),
        },
    }
    if p.list_vms().await.or_fail("inventory.list-vms")?.iter().any(|v| v.id == victim) {
        problems.push(format!("VM {victim} is still listed after delete-vm succeeded"));
    }
    if problems.is_empty() { Ok(()) } else { Err(fail(problems.join("\n"))) }
}

// ------------------------------------------------------------------ read after write

async fn read_after_write(ctx: &mut Ctx<'_>) -> Step<()> {
    let p = ctx.load()?;
    let caps = ctx.info.capabilities.clone();
    let seed = seed_vm(ctx, &p).await?;
    let mut problems = Vec::new();

    if caps.create_vm {
        let spec = new_vm_spec(&seed, "hwraw01");
        let op = done(&p, p.create_vm(spec.clone()).await, "compute.create-vm").await?;
        let id = op.target.clone().ok_or_else(|| fail("create-vm succeeded without a target: the operation's target must be the new VM's id"))?;
        let got = p.get_vm(&id).await.or_fail(&format!("inventory.get-vm of the VM create-vm just made ({id})"))?;
        if got.name != spec.name || got.cpu_count < spec.cpu_count || got.memory_mib < spec.memory_mib {
            problems.push(format!(
                "create-vm asked for {} with {} CPU and {} MiB; get-vm lists {} with {} CPU and {} MiB",
                spec.name, spec.cpu_count, spec.memory_mib, got.name, got.cpu_count, got.memory_mib
            ));
        } else if (got.cpu_count, got.memory_mib) != (spec.cpu_count, spec.memory_mib) {
            // Clouds round up to a VM size; what is listed must still be what was created.
            ctx.warnings.push(format!(
                "create-vm asked for {} CPU and {} MiB and the site made {} CPU and {} MiB (rounded up to a size the backend offers)",
                spec.cpu_count, spec.memory_mib, got.cpu_count, got.memory_mib
            ));
        }
        for want in &spec.disks {
            if !got.disks.iter().any(|d| d.capacity_bytes == want.capacity_bytes) {
                problems.push(format!("create-vm asked for a {}-byte disk `{}`; get-vm lists disks {:?}", want.capacity_bytes, want.label, got.disks.iter().map(|d| (&d.label, d.capacity_bytes)).collect::<Vec<_>>()));
            }
        }
        if !p.list_vms().await.or_fail("inventory.list-vms")?.iter().any(|v| v.id == id && v.name == spec.name) {
            problems.push(format!("list-vms does not list the VM create-vm just made ({id})"));
        }
    } else {
        ctx.notes.push("create-vm not checked: describe says create-vm = false".into());
    }

    match p.create_snapshot(&seed.id, "hw-raw", false).await {
        Err(e) if is_adapter(&e, "unsupported") => ctx.notes.push(format!("snapshots not checked: create-snapshot is unsupported ({e})")),
        first => {
            let op = done(&p, first, "compute.create-snapshot").await?;
            let snaps = p.get_vm(&seed.id).await.or_fail("inventory.get-vm")?.snapshots;
            match snaps.iter().find(|s| s.name == "hw-raw") {
                None => problems.push(format!("get-vm {} does not list snapshot hw-raw right after create-snapshot succeeded", seed.id)),
                Some(s) if op.target.as_deref().is_some_and(|t| t != s.id) => {
                    problems.push(format!("create-snapshot's target is `{}` but get-vm lists the snapshot with id `{}`", op.target.as_deref().unwrap_or_default(), s.id))
                }
                Some(_) => {}
            }
        }
    }

    let change = vec![KeyValue { key: "homeward.testkit".into(), value: "checked".into() }];
    match p.reconfigure(&seed.id, change).await {
        Err(e) if is_adapter(&e, "unsupported") || is_adapter(&e, "conflict") => ctx.notes.push(format!("extra-config not checked: reconfigure answered {e}")),
        first => {
            done(&p, first, "compute.reconfigure").await?;
            let extra = p.get_vm(&seed.id).await.or_fail("inventory.get-vm")?.extra_config;
            if !extra.iter().any(|kv| kv.key == "homeward.testkit" && kv.value == "checked") {
                problems.push(format!("reconfigure set homeward.testkit = checked on VM {}, but get-vm's extra-config does not show it", seed.id));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(fail(problems.join("\n"))) }
}

// ------------------------------------------------------------------ change tracking

async fn change_tracking(ctx: &mut Ctx<'_>) -> Step<()> {
    if !ctx.info.capabilities.change_tracking {
        return Err(End::Skip("describe says change-tracking = false".into()));
    }
    let p = ctx.load()?;
    let seed = seed_vm(ctx, &p).await?;
    let index = ctx.site.seed().disk_index;
    let disk = seed.disks.get(index).cloned().ok_or_else(|| fail(format!("VM {} lists {} disks; the site gave it {}", seed.id, seed.disks.len(), index + 1)))?;
    let lab: LabDisk = ctx.site.lab_disk(&seed.name, index, &disk.id).map_err(|e| fail(format!("{e:#}")))?;
    done(&p, p.enable_change_tracking(&seed.id, &disk.id).await, "disks.enable-change-tracking").await?;
    let capacity = disk.capacity_bytes;
    const SLOT: u64 = 256 << 10;
    let slots = (capacity / SLOT).min(16);
    if slots < 4 {
        return Err(fail(format!("disk {} reports {capacity} bytes; the site gave it at least 1 MiB", disk.id)));
    }

    // Phase A: data in every slot but the first.
    let mut first: Vec<(u64, u64)> = Vec::new();
    for slot in 1..slots {
        let offset = slot * SLOT + (ctx.next() % 64) * 512;
        let len = 512 * (1 + ctx.next() % 16);
        let data = ctx.bytes(len as usize);
        ctx.site.write(&lab, offset, &data).map_err(|e| fail(format!("the lab could not write: {e:#}")))?;
        first.push((offset, len));
    }
    let s1 = done(&p, p.create_snapshot(&seed.id, "hw-ct-1", false).await, "compute.create-snapshot").await?;
    let s1 = s1.target.unwrap_or_else(|| "hw-ct-1".into());
    let (all, _, base) = all_changes(&p, &seed.id, &disk.id, &s1, "*", capacity).await?;
    let missed = subtract(&norm(first.clone()), &all);
    if !missed.is_empty() {
        return Err(fail(format!(
            "changed-areas since \"*\" must list every allocated extent, but it missed {} bytes the guest wrote: {}",
            total(&missed),
            show(&missed)
        )));
    }

    // Phase B: new writes in even slots, clears of phase A's data in odd slots.
    let (mut written, mut cleared_truth) = (Vec::new(), Vec::new());
    for slot in 1..slots {
        let (o, l) = first[(slot - 1) as usize];
        if slot % 2 == 0 {
            let offset = slot * SLOT + 128 * 1024 + (ctx.next() % 64) * 512;
            let len = 512 * (1 + ctx.next() % 16);
            let data = ctx.bytes(len as usize);
            ctx.site.write(&lab, offset, &data).map_err(|e| fail(format!("the lab could not write: {e:#}")))?;
            written.push((offset, len));
        } else {
            ctx.site.clear(&lab, o, l).map_err(|e| fail(format!("the lab could not clear: {e:#}")))?;
            cleared_truth.push((o, l));
        }
    }
    let s2 = done(&p, p.create_snapshot(&seed.id, "hw-ct-2", false).await, "compute.create-snapshot").await?;
    let s2 = s2.target.unwrap_or_else(|| "hw-ct-2".into());
    let (changed, cleared, next) = all_changes(&p, &seed.id, &disk.id, &s2, &base, capacity).await?;
    let overlap = subtract(&changed, &subtract(&changed, &cleared));
    let mut problems = Vec::new();
    if !overlap.is_empty() {
        problems.push(format!("changed-areas lists {} as both changed and cleared: the two lists must be disjoint", show(&overlap)));
    }
    let covered = norm(changed.iter().chain(cleared.iter()).copied().collect());
    let missed_writes = subtract(&norm(written.clone()), &covered);
    let missed_clears = subtract(&norm(cleared_truth.clone()), &covered);
    if !missed_writes.is_empty() {
        problems.push(format!(
            "changed-areas (since change id {base:?}) missed {} bytes the guest wrote between the snapshots: {}. Every written byte must be in `changed`",
            total(&missed_writes),
            show(&missed_writes)
        ));
    }
    if !missed_clears.is_empty() {
        problems.push(format!(
            "changed-areas (since change id {base:?}) missed {} bytes the guest cleared (trimmed or zeroed) between the snapshots: {}. \
             Cleared ranges are changes too: report them in `cleared` (or `changed`), or the replica keeps the stale data",
            total(&missed_clears),
            show(&missed_clears)
        ));
    }
    if !problems.is_empty() {
        return Err(fail(problems.join("\n")));
    }
    let truth = norm(written.into_iter().chain(cleared_truth).collect());
    let extra = subtract(&covered, &truth);
    if !extra.is_empty() {
        ctx.warnings.push(format!(
            "changed-areas reported {} bytes that did not change ({} changed): a superset is safe but costs transfer{}",
            total(&extra),
            total(&truth),
            if total(&extra) > 4 * total(&truth) { "; track changes at a finer grain if you can" } else { "" }
        ));
    }
    let (c, k, _) = all_changes(&p, &seed.id, &disk.id, &s2, &next, capacity).await?;
    let idle = total(&c) + total(&k);
    if idle > 0 {
        ctx.warnings.push(format!("changed-areas since the snapshot's own change id reported {idle} bytes although nothing changed"));
    }
    Ok(())
}

// ------------------------------------------------------------------ data path

async fn data_path(ctx: &mut Ctx<'_>) -> Step<()> {
    if ctx.info.capabilities.transports.is_empty() {
        return Err(End::Skip("describe lists no transports: disks.open has no locator to check".into()));
    }
    let p = ctx.load()?;
    let seed = seed_vm(ctx, &p).await?;
    let index = ctx.site.seed().disk_index;
    let disk = seed.disks.get(index).cloned().ok_or_else(|| fail(format!("VM {} lists {} disks; the site gave it {}", seed.id, seed.disks.len(), index + 1)))?;
    let lab = ctx.site.lab_disk(&seed.name, index, &disk.id).map_err(|e| fail(format!("{e:#}")))?;
    let lab_err = |e: anyhow::Error| fail(format!("the lab failed: {e:#}"));
    // Data movers work on stopped (or deallocated) VMs; a running disk may be locked.
    done(&p, p.power_off(&seed.id, PowerOffMode::Deallocate).await, "compute.power-off").await?;

    let at = (disk.capacity_bytes / 2) & !0xFFFF;
    let first = ctx.bytes(64 << 10);
    ctx.site.write(&lab, at, &first).map_err(lab_err)?;

    let access = p.open(&seed.id, &disk.id, None, AccessMode::ReadOnly).await.or_fail("disks.open (read-only)")?;
    let mut problems = Vec::new();
    if access.capacity_bytes != disk.capacity_bytes {
        problems.push(format!("disks.open says the disk has {} bytes; get-vm says {}", access.capacity_bytes, disk.capacity_bytes));
    }
    let got = locator::read(&p, &access, at, first.len() as u64).await.map_err(|e| fail(format!("reading through the {} locator: {e}", locator::kind(&access.locator))))?;
    if got != first {
        let pos = got.iter().zip(&first).position(|(a, b)| a != b).unwrap_or(0);
        problems.push(format!(
            "the {} locator read back different bytes than the site wrote at offset {at} (first difference at byte {}): check the locator's data offset and format",
            locator::kind(&access.locator),
            at + pos as u64
        ));
    }
    p.close(&access.handle).await.or_fail("disks.close")?;
    p.close(&access.handle).await.or_fail("disks.close of a closed handle (must succeed: close is idempotent)")?;

    // A snapshot's locator reads the snapshot, not what the guest wrote after it.
    match p.create_snapshot(&seed.id, "hw-dp", false).await {
        Err(e) if is_adapter(&e, "unsupported") => ctx.notes.push(format!("snapshot reads not checked: create-snapshot is unsupported ({e})")),
        first_op => {
            let snap = done(&p, first_op, "compute.create-snapshot").await?.target.unwrap_or_else(|| "hw-dp".into());
            let later = ctx.bytes(first.len());
            ctx.site.write(&lab, at, &later).map_err(lab_err)?;
            let access = p.open(&seed.id, &disk.id, Some(&snap), AccessMode::ReadOnly).await.or_fail("disks.open of a snapshot")?;
            if !access.read_only {
                problems.push("disks.open of a snapshot returned a writable handle: a snapshot's state is always read-only".into());
            }
            let got = locator::read(&p, &access, at, first.len() as u64).await.map_err(|e| fail(format!("reading a snapshot through the {} locator: {e}", locator::kind(&access.locator))))?;
            if got != first {
                problems.push(format!("the snapshot's {} locator does not read the snapshot's bytes at offset {at}: it must show the disk as it was when the snapshot was taken", locator::kind(&access.locator)));
            }
            p.close(&access.handle).await.or_fail("disks.close")?;
        }
    }

    // Writes land on the disk the guest sees.
    match p.open(&seed.id, &disk.id, None, AccessMode::ReadWrite).await {
        Err(e) if is_adapter(&e, "unsupported") || is_adapter(&e, "conflict") => {
            ctx.warnings.push(format!("writes through a locator not checked: disks.open read-write answered {e}"));
        }
        Err(e) => return Err(fail(format!("disks.open (read-write) failed ({}): {e}", kind(&e)))),
        Ok(access) if access.read_only => problems.push("disks.open asked for read-write returned a read-only handle: return unsupported or conflict instead".into()),
        Ok(access) => {
            let put_at = at + (128 << 10);
            let data = ctx.bytes(16 << 10);
            locator::write(&p, &access, put_at, &data).await.map_err(|e| fail(format!("writing through the {} locator: {e}", locator::kind(&access.locator))))?;
            let landed = ctx.site.read(&lab, put_at, data.len() as u64).map_err(lab_err)?;
            if landed != data {
                problems.push(format!("{} bytes written through the {} locator at offset {put_at} did not land on the disk", data.len(), locator::kind(&access.locator)));
            }
            p.close(&access.handle).await.or_fail("disks.close")?;
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(fail(problems.join("\n"))) }
}

// ------------------------------------------------------------------ error paths

async fn errors_auth(ctx: &mut Ctx<'_>) -> Step<()> {
    let Some(bad) = ctx.site.bad_credentials() else {
        return Err(End::Skip(format!("the {} site has no credentials to get wrong", ctx.site.profile)));
    };
    let limits = ctx.opts.limits();
    let p = ctx.load_with(&bad, limits)?;
    match p.describe().await {
        Err(e) if is_adapter(&e, "permission-denied") => Ok(()),
        Err(e) => Err(fail(format!(
            "with a wrong credential, describe must be permission-denied naming the credential to fix; it was {}: {e}. Map the backend's authentication failure (HTTP 401/403, InvalidLogin) to adapter-error::permission-denied",
            kind(&e)
        ))),
        Ok(_) => Err(fail("describe succeeded with a wrong credential: the adapter must authenticate against the site")),
    }
}

async fn errors_not_found(ctx: &mut Ctx<'_>) -> Step<()> {
    let p = ctx.load()?;
    let missing = ctx.site.missing_vm_id();
    let mut problems = Vec::new();
    let calls: Vec<(&str, Result<(), CallError>)> = vec![
        ("inventory.get-vm", p.get_vm(&missing).await.map(|_| ())),
        ("compute.power-on", p.power_on(&missing).await.map(|_| ())),
        ("compute.delete-vm", p.delete_vm(&missing).await.map(|_| ())),
        ("compute.create-snapshot", p.create_snapshot(&missing, "hw-nf", false).await.map(|_| ())),
    ];
    for (call, r) in calls {
        match r {
            Err(e) if is_adapter(&e, "not-found") => {}
            Err(e) => problems.push(format!(
                "{call} on VM `{missing}`, which does not exist, returned {}: {e}. Map the backend's \"no such object\" answer to adapter-error::not-found naming the VM",
                kind(&e)
            )),
            Ok(()) => problems.push(format!("{call} on VM `{missing}`, which does not exist, succeeded: it must return not-found")),
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(fail(problems.join("\n"))) }
}

async fn errors_conflict(ctx: &mut Ctx<'_>) -> Step<()> {
    let p = ctx.load()?;
    let seed = seed_vm(ctx, &p).await?;
    if seed.power_state != PowerState::PoweredOn {
        done(&p, p.power_on(&seed.id).await, "compute.power-on").await?;
    }
    let outcome = match p.delete_vm(&seed.id).await {
        Ok(op) => p.wait(op, "delete-vm").await.map(|_| ()),
        Err(e) => Err(e),
    };
    let still = p.get_vm(&seed.id).await.is_ok();
    match outcome {
        Err(e) if is_adapter(&e, "conflict") && still => Ok(()),
        Err(e) if is_adapter(&e, "conflict") => Err(fail(format!("delete-vm of the powered-on VM {} answered conflict but the VM is gone", seed.id))),
        Err(e) => Err(fail(format!("delete-vm of the powered-on VM {} must be conflict (power it off first); it was {}: {e}", seed.id, kind(&e)))),
        Ok(()) => Err(fail(format!("delete-vm deleted the powered-on VM {}: a running VM must be refused with conflict", seed.id))),
    }
}

async fn errors_injected(ctx: &mut Ctx<'_>, fault: Injected) -> Step<()> {
    let p = ctx.load()?;
    p.list_vms().await.or_fail("inventory.list-vms (before the fault)")?;
    ctx.site.inject(fault).map_err(End::Skip)?;
    let what = match fault {
        Injected::Throttle(_) => "a throttled answer (HTTP 429 with Retry-After: 7)",
        Injected::ServerError => "a server error (HTTP 5xx)",
        Injected::Drop => "a dropped connection",
        Injected::Latency(_) => "latency",
    };
    let result = p.list_vms().await;
    ctx.site.clear_faults();
    match result {
        Err(CallError::Adapter { error: AdapterError::Unavailable(u), .. }) => {
            if let Injected::Throttle(secs) = fault {
                let want = u64::from(secs) * 1000;
                if u.retry_after_ms != Some(want) {
                    return Err(fail(format!(
                        "list-vms after {what} is unavailable, but with retry-after-ms {:?}; the backend asked for {want} ms: pass the Retry-After header on",
                        u.retry_after_ms
                    )));
                }
            }
        }
        Err(e) => {
            return Err(fail(format!(
                "list-vms after {what} must be unavailable (a temporary failure the host retries); it was {}: {e}",
                kind(&e)
            )));
        }
        Ok(_) => return Err(fail(format!("list-vms succeeded although the site answered with {what}: the adapter must surface it as unavailable"))),
    }
    p.list_vms().await.or_fail(&format!("inventory.list-vms after {what} cleared (the adapter must recover)"))?;
    Ok(())
}

// ------------------------------------------------------------------ limits

/// The read-only calls every adapter answers without arguments, with their outcomes.
async fn site_reads(p: &Plugin) -> Vec<(&'static str, Result<(), CallError>)> {
    vec![
        ("site.describe", p.describe().await.map(|_| ())),
        ("inventory.list-hosts", p.list_hosts().await.map(|_| ())),
        ("inventory.list-datastores", p.list_datastores().await.map(|_| ())),
        ("inventory.list-networks", p.list_networks().await.map(|_| ())),
        ("inventory.list-vms", p.list_vms().await.map(|_| ())),
    ]
}

async fn limits_deadline(ctx: &mut Ctx<'_>) -> Step<()> {
    let p = ctx.load()?;
    let missing = ctx.site.missing_vm_id();
    let mut hung = Vec::new();
    let mut calls = site_reads(&p).await;
    calls.push(("inventory.get-vm", p.get_vm(&missing).await.map(|_| ())));
    calls.push(("compute.poll-operation", p.poll_operation("homeward-testkit-no-such-operation").await.map(|_| ())));
    for (call, r) in calls {
        match r {
            Err(CallError::Timeout { timeout, .. }) => hung.push(format!("{call} did not return within its {timeout:?} deadline")),
            Err(CallError::FuelExhausted { fuel, .. }) => hung.push(format!("{call} ran through its budget of {fuel} fuel units without returning")),
            _ => {}
        }
    }
    if !hung.is_empty() {
        return Err(fail(format!(
            "{}. An adapter call must never block: start long work and return an operation the host polls (compute.poll-operation), and give every backend request a timeout shorter than the host's",
            hung.join("; ")
        )));
    }

    // The stalled-backend twin: the host must cut the call at its deadline, and a fresh
    // instance must serve the next one.
    let probe = ctx.opts.deadline_probe;
    let g = ctx.site.grants();
    let limits = Limits { call_timeout: probe, ..ctx.opts.limits() };
    let impatient = ctx.load_with(&g, limits)?;
    impatient.list_vms().await.or_fail("inventory.list-vms (before the stall)")?;
    if let Err(reason) = ctx.site.inject(Injected::Latency(probe * 4)) {
        ctx.notes.push(format!("stalled-backend twin not run: {reason}"));
        return Ok(());
    }
    let t0 = Instant::now();
    let stalled = impatient.list_vms().await;
    let took = t0.elapsed();
    ctx.site.clear_faults();
    match stalled {
        Err(CallError::Timeout { .. }) if took < probe + Duration::from_secs(3) => {}
        Err(CallError::Timeout { .. }) => return Err(fail(format!("the stalled call was cut only after {took:?}, past its {probe:?} deadline"))),
        Err(CallError::Adapter { error: AdapterError::Unavailable(_), .. }) => {
            ctx.notes.push("the adapter gave up on the stalled backend itself (unavailable) before the host's deadline".into())
        }
        Err(e) => return Err(fail(format!("a call against a stalled backend must be cut at its deadline; it failed with {}: {e}", kind(&e)))),
        Ok(_) => return Err(fail(format!("list-vms returned although the backend stalled every answer for {:?} and the deadline was {probe:?}", probe * 4))),
    }
    impatient.list_vms().await.or_fail("inventory.list-vms after the stall (a fresh instance must serve it)")?;
    Ok(())
}

// ------------------------------------------------------------------ sandbox

async fn sandbox_undeclared_host(ctx: &mut Ctx<'_>) -> Step<()> {
    let p = ctx.load()?;
    let mut denied = Vec::new();
    let calls = site_reads(&p).await;
    for (call, r) in calls {
        if let Err(CallError::Denied { denial, .. }) = r {
            denied.push(format!("{call}: {denial}"));
        }
    }
    if !denied.is_empty() {
        return Err(fail(format!(
            "with the grants a production operator gives, the adapter tried to reach hosts it may not: {}. \
             Declare every origin the adapter calls in its manifest's `outbound` (templated from its config, such as https://{{{{endpoint}}}}), or stop calling it",
            denied.join("; ")
        )));
    }
    let declared = p.info().manifest.as_ref().map(|m| m.outbound.clone()).unwrap_or_default();
    if declared.is_empty() {
        ctx.notes.push("the manifest declares no outbound hosts, so every request is refused; the calls above made none the sandbox had to deny".into());
        return Ok(());
    }
    // The twin: the operator grants no network at all.
    let mut g = ctx.site.grants();
    g.allow_hosts.clear();
    let limits = ctx.opts.limits();
    let offline = ctx.load_with(&g, limits)?;
    match offline.describe().await {
        Err(CallError::Denied { .. }) => Ok(()),
        Err(e) if is_adapter(&e, "permission-denied") || is_adapter(&e, "unavailable") => {
            ctx.notes.push(format!("with no network granted, describe failed with {} (the denial was reported by the adapter, not seen by the host): {e}", kind(&e)));
            Ok(())
        }
        Err(e) => Err(fail(format!("with no network granted, describe must fail because its requests are denied; it failed with {}: {e}", kind(&e)))),
        Ok(_) => Err(fail(format!(
            "describe succeeded although the operator granted no network and the manifest declares {declared:?}: the adapter reached its site some other way"
        ))),
    }
}

async fn sandbox_outside_preopen(ctx: &mut Ctx<'_>) -> Step<()> {
    let g = ctx.site.grants();
    if g.preopens.is_empty() {
        return Err(End::Skip(format!("the {} profile preopens no directory for the adapter, so it has no file system to step out of", ctx.site.profile)));
    }
    // The twin: point the adapter's site root outside the preopen. Everything it then
    // touches is outside; the calls must fail with an error naming the path, not succeed
    // and not trap.
    let mut twin = g.clone();
    let outside = ctx.site.dir.path().join("outside");
    std::fs::create_dir_all(outside.join("web01")).map_err(|e| fail(format!("creating {}: {e}", outside.display())))?;
    for key in ["root", "path", "directory"] {
        if twin.config.contains_key(key) {
            twin.config.insert(key.to_string(), outside.display().to_string());
        }
    }
    let limits = ctx.opts.limits();
    let p = ctx.load_with(&twin, limits)?;
    match p.list_vms().await {
        Err(CallError::Adapter { .. }) => Ok(()),
        Err(e) => Err(fail(format!("pointed at {} (outside its preopen), list-vms must fail with an adapter error naming the path; it failed with {}: {e}", outside.display(), kind(&e)))),
        Ok(vms) if vms.is_empty() => Err(fail(format!(
            "pointed at {} (outside its preopen), list-vms returned an empty list: an unreachable site root must be an error naming the path and the config key, not an empty site",
            outside.display()
        ))),
        Ok(_) => Err(fail(format!("the adapter listed VMs from {}, a directory the operator did not preopen", outside.display()))),
    }
}

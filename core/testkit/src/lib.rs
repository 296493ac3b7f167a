//! The adapter test kit: a sandboxed conformance suite for WASM adapters.
//!
//! The kit loads an adapter component in the **same sandbox as production** (the plugin
//! host's [`PluginEngine`], with fuel counting switched on for deterministic budgets), starts
//! a fresh simulated site for every case ([`Profile`]: the lab's vCenter, standalone ESXi,
//! Azure Resource Manager or classic site, or a temporary directory site), gives the adapter
//! the config and grants a production operator would, and checks it against the contract in
//! `wit/adapter.wit`. See [`CASES`] for what each case checks.
//!
//! Cases that the adapter's `describe` says it cannot support (or that the site cannot
//! stage, such as throttling on vSphere) are reported as **skipped** with the reason, never
//! as passed. An [`Expectations`] file marks known failures as expected; a case that passes
//! while expected to fail is reported as an **unexpected pass** and fails the run.
//!
//! The same suite backs `homeward testkit run` ([`cli`]) and an adapter's own `cargo test`:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use homeward_testkit::{Profile, RunOptions};
//! let report = homeward_testkit::run(RunOptions::new("target/wasm32-wasip2/release/my_adapter.wasm", Some(Profile::Directory))).await?;
//! print!("{}", report.to_console());
//! assert!(report.success(), "the adapter does not conform");
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod cases;
pub mod cli;
pub mod expect;
mod locator;
pub mod report;
pub mod site;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use homeward_plugin_host::hash::sha256_file;
use homeward_plugin_host::inspect::inspect;
use homeward_plugin_host::limits::Limits;
use homeward_plugin_host::{EngineOptions, PluginEngine};

pub use cli::{TestkitCommand, run_cli};
pub use expect::Expectations;
pub use report::{CaseReport, CaseStats, Report, Status};
pub use site::Profile;

/// Every case of the suite, with what it checks. Names are what `--filter` and the
/// expectations file match.
pub const CASES: &[(&str, &str)] = &[
    ("contract", "describe and inventory return the documented shapes; every reference resolves; ids are stable across calls"),
    ("idempotency", "repeated power, snapshot, create and delete calls return the documented result and never a second object"),
    ("read-after-write", "what the adapter created or changed is what it lists next"),
    ("change-tracking", "after random simulated writes and clears, changed-areas covers every changed byte (a superset is a warning)"),
    ("data-path", "the locator reads back what the site wrote, a snapshot's locator reads the snapshot, and writes land"),
    ("errors::auth", "wrong credentials are permission-denied"),
    ("errors::not-found", "calls on a missing VM are not-found"),
    ("errors::conflict", "deleting a powered-on VM is conflict, and the VM stays"),
    ("errors::throttle", "a throttled backend is unavailable with the backend's retry-after"),
    ("errors::server-error", "a 5xx from the backend is unavailable, and the next call is served"),
    ("errors::dropped-connection", "a dropped connection is unavailable, and the next call is served"),
    ("limits::deadline", "no call hangs; a call the backend stalls is cut at its deadline and the next call is served"),
    ("sandbox::undeclared-host", "the adapter only reaches hosts it declared; with no network granted its requests are denied"),
    ("sandbox::outside-preopen", "the adapter cannot read a file outside its preopened directory"),
];

/// The names of every case.
pub fn case_names() -> Vec<&'static str> {
    CASES.iter().map(|(n, _)| *n).collect()
}

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The adapter component (`.wasm`, built for `wasm32-wasip2`).
    pub component: PathBuf,
    /// The site to run against; `None` infers it from the manifest's name
    /// (see [`Profile::infer`]).
    pub profile: Option<Profile>,
    /// The sha256 the component must have (as an operator pins it); `None` pins whatever
    /// the file is and reports the hash.
    pub sha256: Option<String>,
    /// Runs only cases whose name contains this text.
    pub filter: Option<String>,
    /// Known failures.
    pub expectations: Expectations,
    /// Extra adapter config keys, added to (and overriding) what the profile writes.
    pub extra_config: BTreeMap<String, String>,
    /// The per-call deadline the adapter runs under.
    pub call_timeout: Duration,
    /// The short deadline of `limits::deadline`'s stalled-backend twin.
    pub deadline_probe: Duration,
    /// The per-call fuel budget (instructions, roughly); `None` runs without fuel.
    pub fuel: Option<u64>,
    /// The per-instance memory cap.
    pub memory_mib: u64,
    /// Seed of the random writes and clears, so a failing run can be repeated.
    pub seed: u64,
    /// Where compiled code is cached; `None` uses a temporary directory for the run.
    pub cache_dir: Option<PathBuf>,
}

impl RunOptions {
    /// Defaults: every case, 30 s per call, 2 s deadline probe, 20 billion units of fuel
    /// per call, 256 MiB, seed 1.
    pub fn new(component: impl Into<PathBuf>, profile: Option<Profile>) -> RunOptions {
        RunOptions {
            component: component.into(),
            profile,
            sha256: None,
            filter: None,
            expectations: Expectations::default(),
            extra_config: BTreeMap::new(),
            call_timeout: Duration::from_secs(30),
            deadline_probe: Duration::from_secs(2),
            fuel: Some(20_000_000_000),
            memory_mib: 256,
            seed: 1,
            cache_dir: None,
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits { memory_mib: self.memory_mib, call_timeout: self.call_timeout, fuel: self.fuel }
    }

    fn selected(&self) -> Vec<&'static str> {
        case_names().into_iter().filter(|n| self.filter.as_deref().is_none_or(|f| n.contains(f))).collect()
    }
}

/// Runs the suite and returns its report. `Err` means the suite could not run at all (the
/// file is missing, not a component, built against another contract version, its pin does
/// not match, or the expectations name unknown cases); a non-conforming adapter is an `Ok`
/// report whose [`Report::success`] is false.
pub async fn run(opts: RunOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let bytes = std::fs::read(&opts.component).with_context(|| format!("cannot read the adapter component {}", opts.component.display()))?;
    let info = inspect(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", opts.component.display()))?;
    let actual = sha256_file(&opts.component).with_context(|| format!("hashing {}", opts.component.display()))?;
    let sha256 = opts.sha256.clone().unwrap_or_else(|| actual.clone());
    let manifest_name = info.manifest.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let profile = opts.profile.unwrap_or_else(|| Profile::infer(&manifest_name));
    let unknown = opts.expectations.unknown_cases(&case_names());
    if !unknown.is_empty() {
        anyhow::bail!("the expectations name cases that do not exist: {}. Known cases: {}", unknown.join(", "), case_names().join(", "));
    }

    let cache_tmp = tempfile::tempdir().context("creating a compiled-code cache directory")?;
    let cache = opts.cache_dir.clone().unwrap_or_else(|| cache_tmp.path().to_path_buf());
    let engine = PluginEngine::new(EngineOptions { cache_dir: Some(cache), fuel: opts.fuel.is_some(), ..EngineOptions::default() })
        .context("starting the plugin engine")?;

    // Preflight: load once (refusing a bad pin or contract version before any case runs)
    // and learn the capabilities the cases are skipped by.
    let site = site::Site::start(profile).await?;
    let mut grants = site.grants();
    grants.config.extend(opts.extra_config.clone());
    let plugin = engine
        .load(site.spec("preflight", &opts.component, &sha256, &grants, opts.limits()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let described = plugin.describe().await;
    drop(plugin);
    site.shutdown().await;
    let adapter = described.as_ref().ok().map(|i| i.adapter.clone());

    let mut cases = Vec::new();
    for name in opts.selected() {
        let case_started = Instant::now();
        let outcome = cases::run_case(name, &opts, &engine, &sha256, profile, described.as_ref().map_err(|e| e.to_string())).await;
        let mut report = CaseReport::from_outcome(name, outcome, case_started.elapsed());
        report.apply_expectation(opts.expectations.reason(name));
        cases.push(report);
    }
    Ok(Report {
        component: opts.component.display().to_string(),
        sha256: actual,
        manifest_name,
        manifest_version: info.manifest.as_ref().map(|m| m.version.clone()).unwrap_or_default(),
        wit_version: info.wit_version.clone().unwrap_or_default(),
        adapter,
        profile,
        seed: opts.seed,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        cases,
    })
}

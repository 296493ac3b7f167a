//! `homeward testkit …`: the command-line face of the suite.
//!
//! - `homeward testkit run ADAPTER.wasm [--profile P] [--filter TEXT] [--expect FILE]
//!   [--junit FILE] [--json-report FILE] [--sha256 HEX] [--seed N] [--call-timeout-secs N]
//!   [--fuel N] [--config KEY=VALUE]…`: runs the cases and prints the report (console, or
//!   JSON with the global `--json`). Exits 0 when every case passed, was skipped or failed
//!   as expected; 1 when any case failed or passed unexpectedly; 2 when the suite could not
//!   run (unreadable or incompatible component, bad pin, bad expectations file).
//! - `homeward testkit check ADAPTER.wasm [--profile P] [--expect FILE] [--sha256 HEX]`: the
//!   quick check for a vendor's CI, in a few seconds. Without running a case, it reads the
//!   component's contract version, exports, manifest (name, version, declared outbound
//!   hosts) and hash; validates the expectations file against the case names; then loads
//!   the adapter in the sandbox on a fresh site of the profile and calls `describe`,
//!   listing the capabilities (and so which cases will be skipped). Exits 0 when all of
//!   that is in order, 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use homeward_plugin_host::hash::{normalise_pin, sha256_file};
use homeward_plugin_host::inspect::{SUPPORTED_WIT_VERSION, inspect};
use homeward_plugin_host::limits::Limits;
use homeward_plugin_host::{EngineOptions, PluginEngine};
use serde_json::json;

use crate::site::{Profile, Site};
use crate::{Expectations, RunOptions, case_names};

/// `homeward testkit` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TestkitCommand {
    /// Run the conformance suite against an adapter component in the production sandbox.
    Run {
        /// The adapter component (`.wasm`, built for wasm32-wasip2).
        component: PathBuf,
        /// The simulated site; default: inferred from the manifest's name (else directory).
        #[arg(long, value_enum)]
        profile: Option<Profile>,
        /// Run only cases whose name contains this text (such as `errors::` or `change`).
        #[arg(long)]
        filter: Option<String>,
        /// Expectations file (TOML) marking known failures as expected, with reasons.
        #[arg(long = "expect", value_name = "FILE")]
        expect: Option<PathBuf>,
        /// Also write the report as JUnit XML to FILE.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Also write the report as JSON to FILE.
        #[arg(long = "json-report", value_name = "FILE")]
        json_report: Option<PathBuf>,
        /// The sha256 the component must have; the run refuses a different file.
        #[arg(long)]
        sha256: Option<String>,
        /// Seed of the random writes and clears (printed in every report).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The per-call deadline, in seconds.
        #[arg(long = "call-timeout-secs", default_value_t = 30)]
        call_timeout_secs: u64,
        /// Per-call fuel budget; 0 runs without fuel counting.
        #[arg(long, default_value_t = 20_000_000_000)]
        fuel: u64,
        /// Extra adapter config, KEY=VALUE (repeatable), over what the profile writes.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Quick check without running the cases: contract version, exports, manifest, hash,
    /// the expectations file, and `describe` on a fresh site.
    Check {
        /// The adapter component (`.wasm`).
        component: PathBuf,
        /// The simulated site for `describe`; default: inferred from the manifest's name.
        #[arg(long, value_enum)]
        profile: Option<Profile>,
        /// Expectations file to validate.
        #[arg(long = "expect", value_name = "FILE")]
        expect: Option<PathBuf>,
        /// The sha256 the component must have.
        #[arg(long)]
        sha256: Option<String>,
    },
}

/// Runs a `homeward testkit` subcommand; prints human output, or JSON when `json` is set.
pub async fn run_cli(cmd: TestkitCommand, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        TestkitCommand::Run { component, profile, filter, expect, junit, json_report, sha256, seed, call_timeout_secs, fuel, config } => {
            let mut opts = RunOptions::new(component, profile);
            opts.filter = filter;
            opts.sha256 = sha256;
            opts.seed = seed;
            opts.call_timeout = Duration::from_secs(call_timeout_secs.max(1));
            opts.fuel = (fuel > 0).then_some(fuel);
            for kv in config {
                let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--config {kv}: write it as KEY=VALUE"))?;
                opts.extra_config.insert(k.trim().to_string(), v.to_string());
            }
            if let Some(path) = &expect {
                opts.expectations = Expectations::load(path)?;
            }
            let report = match crate::run(opts).await {
                Ok(r) => r,
                Err(e) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&json!({ "success": false, "error": format!("{e:#}") }))?);
                    } else {
                        eprintln!("error: {e:#}");
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            if let Some(path) = junit {
                write(&path, &report.to_junit())?;
            }
            if let Some(path) = json_report {
                write(&path, &report.to_json())?;
            }
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_console());
            }
            Ok(if report.success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        TestkitCommand::Check { component, profile, expect, sha256 } => {
            let (ok, lines, value) = check(&component, profile, expect.as_deref(), sha256.as_deref()).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                for l in lines {
                    println!("{l}");
                }
                println!("{}", if ok { "check: ok" } else { "check: FAILED" });
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write the report to {}: {e}", path.display()))
}

/// The `check` subcommand: (ok, human lines, JSON).
pub async fn check(component: &Path, profile: Option<Profile>, expect: Option<&Path>, pin: Option<&str>) -> (bool, Vec<String>, serde_json::Value) {
    let mut ok = true;
    let mut lines = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut value = json!({ "component": component.display().to_string() });
    let bytes = match std::fs::read(component) {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("cannot read {}: {e}", component.display());
            return (false, vec![format!("error: {msg}")], json!({ "success": false, "problems": [msg] }));
        }
    };
    let sha = sha256_file(component).unwrap_or_default();
    lines.push(format!("component: {} (sha256 {sha})", component.display()));
    value["sha256"] = json!(sha);
    if let Some(pin) = pin
        && normalise_pin(pin) != sha {
            problems.push(format!("the component's sha256 is {sha}, not the expected {pin}: rebuild from the reviewed source or update the pin"));
        }
    let info = match inspect(&bytes) {
        Ok(i) => i,
        Err(e) => {
            let msg = format!("{}: {e}", component.display());
            return (false, vec![format!("error: {msg}")], json!({ "success": false, "problems": [msg] }));
        }
    };
    let version = info.wit_version.clone().unwrap_or_default();
    lines.push(format!("contract: homeward:adapter@{} (this host serves {SUPPORTED_WIT_VERSION})", if version.is_empty() { "?" } else { &version }));
    if version != SUPPORTED_WIT_VERSION {
        problems.push(format!("built against homeward:adapter@{version}, but this host serves {SUPPORTED_WIT_VERSION}: rebuild against wit/adapter.wit {SUPPORTED_WIT_VERSION}"));
    }
    let missing = info.missing_exports(SUPPORTED_WIT_VERSION);
    if !missing.is_empty() {
        problems.push(format!("the component does not export {}", missing.join(", ")));
    }
    lines.push(format!("exports: {}", info.exports.join(", ")));
    value["wit_version"] = json!(version);
    value["exports"] = json!(info.exports);
    let manifest_name = match &info.manifest {
        Some(m) => {
            lines.push(format!("manifest: {} {} — outbound {:?}", m.name, m.version, m.outbound));
            value["manifest"] = serde_json::to_value(m).unwrap_or_default();
            m.name.clone()
        }
        None => {
            problems.push("the component carries no manifest: embed homeward-adapter.toml with homeward_sdk::manifest!".into());
            String::new()
        }
    };
    if let Some(path) = expect {
        match Expectations::load(path) {
            Ok(e) => {
                let unknown = e.unknown_cases(&case_names());
                if unknown.is_empty() {
                    lines.push(format!("expectations: {} ({} expected failures)", path.display(), e.expected_failures.len()));
                } else {
                    problems.push(format!("{} names cases that do not exist: {}. Known cases: {}", path.display(), unknown.join(", "), case_names().join(", ")));
                }
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    let profile = profile.unwrap_or_else(|| Profile::infer(&manifest_name));
    value["profile"] = json!(profile);
    lines.push(format!("profile: {profile} (config keys: {})", profile.config_keys().join(", ")));
    if problems.is_empty() {
        match describe_on(component, profile, &sha).await {
            Ok(d) => {
                lines.push(format!("describe: {d}"));
                value["describe"] = json!(d);
            }
            Err(e) => problems.push(format!("describe on a fresh {profile} site failed: {e}")),
        }
    }
    for p in &problems {
        ok = false;
        lines.push(format!("problem: {p}"));
    }
    value["problems"] = json!(problems);
    value["success"] = json!(ok);
    (ok, lines, value)
}

async fn describe_on(component: &Path, profile: Profile, sha: &str) -> anyhow::Result<String> {
    let site = Site::start(profile).await?;
    let engine = PluginEngine::new(EngineOptions::default())?;
    let limits = Limits { memory_mib: 256, call_timeout: Duration::from_secs(30), fuel: None };
    let plugin = engine.load(site.spec("check", component, sha, &site.grants(), limits)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = plugin.describe().await;
    drop(plugin);
    site.shutdown().await;
    let i = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    let c = &i.capabilities;
    Ok(format!(
        "{} — {} {} (API {}); change-tracking {}, create-vm {}, quiesced-snapshots {}, privileges {}, process-servers {}, transports {:?}",
        i.adapter, i.product, i.product_version, i.api_version, c.change_tracking, c.create_vm, c.quiesced_snapshots, c.privileges, c.deploy_process_server, c.transports
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// How the `homeward` binary embeds the subcommands: `homeward testkit …`.
    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        #[command(subcommand)]
        Testkit(TestkitCommand),
    }

    #[test]
    fn parses_the_documented_command_lines() {
        let cli = Cli::try_parse_from([
            "homeward", "testkit", "run", "a.wasm", "--profile", "azure-rm", "--expect", "e.toml", "--junit", "j.xml", "--filter", "errors::",
            "--config", "k=v", "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Top::Testkit(TestkitCommand::Run { component, profile, expect, junit, filter, config, fuel, seed, .. }) = cli.command else { panic!("run") };
        assert_eq!(component, PathBuf::from("a.wasm"));
        assert_eq!(profile, Some(Profile::AzureRm));
        assert_eq!((expect, junit), (Some(PathBuf::from("e.toml")), Some(PathBuf::from("j.xml"))));
        assert_eq!((filter.as_deref(), config, fuel, seed), (Some("errors::"), vec!["k=v".to_string()], 20_000_000_000, 1));
        for p in Profile::ALL {
            let cli = Cli::try_parse_from(["homeward", "testkit", "check", "a.wasm", "--profile", p.name()]).unwrap();
            assert!(matches!(cli.command, Top::Testkit(TestkitCommand::Check { profile: Some(q), .. }) if q == p));
        }
        assert!(Cli::try_parse_from(["homeward", "testkit", "run", "a.wasm", "--profile", "hyper-v"]).is_err());
    }
}

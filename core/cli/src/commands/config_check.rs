//! `homeward config check`: validates everything that can be checked without running an
//! adapter, and reports every problem at once.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use homeward_plugin_host::native::NativeTransport;
use homeward_plugin_host::verify::{policy, verify};

use crate::config::{self, LoadedConfig};
use crate::output::Output;

/// The verdict on one configured item.
#[derive(Debug, Serialize)]
pub struct ItemReport {
    pub name: String,
    pub kind: &'static str,
    pub ok: bool,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    config: String,
    ok: bool,
    plugins: Vec<ItemReport>,
    transports: Vec<ItemReport>,
}

/// Checks one plugin statically: pin, component, version, exports, manifest, grants,
/// preopens and secrets.
pub fn check_plugin(config: &LoadedConfig, name: &str) -> ItemReport {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    match config.plugin_spec(name) {
        Err(e) => problems.push(format!("{e:#}")),
        Ok(spec) => {
            match verify(&spec) {
                Err(e) => problems.push(e.to_string()),
                Ok(verified) => {
                    if verified.info.manifest.is_none() {
                        warnings.push("the component embeds no manifest, so it declares no outbound hosts and gets no network".into());
                    }
                    match policy(&spec, &verified.info) {
                        Err(e) => problems.push(e.to_string()),
                        Ok(p) => {
                            warnings.extend(p.unresolved.iter().map(|u| format!("manifest entry unusable: {u}")));
                            for grant in &p.granted {
                                if !p.declared.iter().any(|d| d.scheme == grant.scheme && d.host == grant.host) {
                                    warnings.push(format!(
                                        "allow_hosts grants {grant}, which the adapter does not declare; it has no effect"
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            for p in &spec.preopens {
                if !p.host.is_dir() {
                    problems.push(format!("preopen {} (seen by the adapter as {}) is not a directory", p.host.display(), p.guest));
                }
            }
            for (secret, var) in &spec.secrets {
                if std::env::var_os(var).is_none() {
                    warnings.push(format!("secret `{secret}` reads environment variable {var}, which is not set here"));
                }
            }
        }
    }
    ItemReport { name: name.to_string(), kind: "adapter", ok: problems.is_empty(), problems, warnings }
}

/// Checks one native transport: trust, pin and ABI (this loads the library, which is why
/// the operator must have marked it trusted first).
pub fn check_transport(spec: &homeward_plugin_host::native::NativeTransportSpec) -> ItemReport {
    let (ok, problems) = match NativeTransport::load(spec) {
        Ok(_) => (true, vec![]),
        Err(e) => (false, vec![e.to_string()]),
    };
    ItemReport { name: spec.name.clone(), kind: "native-transport", ok, problems, warnings: vec![] }
}

/// Runs the command.
pub fn run(flag: Option<&Path>, out: Output) -> anyhow::Result<ExitCode> {
    let loaded = config::load(flag)?;
    let plugins: Vec<ItemReport> = loaded.plugin_names().iter().map(|n| check_plugin(&loaded, n)).collect();
    let transports: Vec<ItemReport> = loaded.transport_specs().iter().map(check_transport).collect();
    let ok = plugins.iter().chain(&transports).all(|r| r.ok);
    let report = Report { config: loaded.source_name(), ok, plugins, transports };
    out.emit(&report, || {
        let mut s = format!("config {}\n", report.config);
        for item in report.plugins.iter().chain(&report.transports) {
            s.push_str(&format!("  {} {} ({})\n", if item.ok { "ok  " } else { "FAIL" }, item.name, item.kind));
            for p in &item.problems {
                s.push_str(&format!("       error: {p}\n"));
            }
            for w in &item.warnings {
                s.push_str(&format!("       warning: {w}\n"));
            }
        }
        let count = report.plugins.len() + report.transports.len();
        s.push_str(&if ok { format!("config is valid ({count} item(s))\n") } else { "config has errors\n".to_string() });
        s
    })?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

//! `homeward plugins list | inspect NAME | check`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;

use homeward_plugin_host::SUPPORTED_WIT_VERSION;
use homeward_plugin_host::bindings::types::SiteKind;
use homeward_plugin_host::hash::{normalise_pin, sha256_file};
use homeward_plugin_host::inspect::inspect as inspect_bytes;
use homeward_plugin_host::verify::{policy, verify};

use crate::commands::engine;
use crate::config;
use crate::output::{Output, short_hash, table};

#[derive(Debug, Serialize)]
struct ListRow {
    name: String,
    path: String,
    sha256_pinned: String,
    sha256_actual: Option<String>,
    pin: &'static str,
    wit_version: Option<String>,
}

/// Lists configured plugins and whether each file matches its pin.
pub fn list(flag: Option<&Path>, out: Output) -> anyhow::Result<ExitCode> {
    let loaded = config::load(flag)?;
    let mut rows = Vec::new();
    for name in loaded.plugin_names() {
        let spec = loaded.plugin_spec(&name)?;
        let actual = sha256_file(&spec.path).ok();
        let pin = match &actual {
            None => "missing-file",
            Some(a) if *a == normalise_pin(&spec.sha256) => "ok",
            Some(_) => "mismatch",
        };
        let wit_version = std::fs::read(&spec.path).ok().and_then(|b| inspect_bytes(&b).ok()).and_then(|i| i.wit_version);
        rows.push(ListRow {
            name,
            path: spec.path.display().to_string(),
            sha256_pinned: normalise_pin(&spec.sha256),
            sha256_actual: actual,
            pin,
            wit_version,
        });
    }
    out.emit(&rows, || {
        if rows.is_empty() {
            return format!("no plugins configured in {}\n", loaded.source_name());
        }
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![r.name.clone(), r.wit_version.clone().unwrap_or_else(|| "-".into()), short_hash(&r.sha256_pinned), r.pin.to_string(), r.path.clone()]
            })
            .collect();
        table(&["PLUGIN", "WIT", "SHA256", "PIN", "PATH"], &table_rows)
    })?;
    Ok(if rows.iter().all(|r| r.pin == "ok") { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[derive(Debug, Serialize)]
struct InspectReport {
    name: String,
    path: String,
    sha256: String,
    wit_version: Option<String>,
    supported_wit_version: &'static str,
    manifest: Option<homeward_plugin_host::Manifest>,
    exports: Vec<String>,
    imports: Vec<String>,
    declared_hosts: Vec<String>,
    unresolved_declarations: Vec<String>,
    granted_hosts: Vec<String>,
    effective_hosts: Vec<String>,
    preopens: Vec<homeward_plugin_host::Preopen>,
    limits: homeward_plugin_host::limits::Limits,
    secrets: Vec<String>,
}

/// Shows what a plugin is and what it may do, without running it.
pub fn inspect(flag: Option<&Path>, name: &str, out: Output) -> anyhow::Result<ExitCode> {
    let loaded = config::load(flag)?;
    let spec = loaded.plugin_spec(name)?;
    let verified = verify(&spec)?;
    let p = policy(&spec, &verified.info)?;
    let report = InspectReport {
        name: name.to_string(),
        path: spec.path.display().to_string(),
        sha256: verified.sha256.clone(),
        wit_version: verified.info.wit_version.clone(),
        supported_wit_version: SUPPORTED_WIT_VERSION,
        manifest: verified.info.manifest.clone(),
        exports: verified.info.exports.clone(),
        imports: verified.info.imports.clone(),
        declared_hosts: p.declared.iter().map(ToString::to_string).collect(),
        unresolved_declarations: p.unresolved.clone(),
        granted_hosts: p.granted.iter().map(ToString::to_string).collect(),
        effective_hosts: p.effective(),
        preopens: spec.preopens.clone(),
        limits: spec.limits.clone(),
        secrets: spec.secrets.iter().map(|(k, v)| format!("{k} <- ${v}")).collect(),
    };
    out.emit(&report, || {
        let list = |v: &[String]| if v.is_empty() { "(none)".to_string() } else { v.join(", ") };
        let mut s = String::new();
        s.push_str(&format!("plugin        {}\n", report.name));
        if let Some(m) = &report.manifest {
            s.push_str(&format!("adapter       {} {}  {}\n", m.name, m.version, m.description));
        }
        s.push_str(&format!("path          {}\n", report.path));
        s.push_str(&format!("sha256        {}\n", report.sha256));
        s.push_str(&format!(
            "wit           homeward:adapter@{} (host serves {})\n",
            report.wit_version.as_deref().unwrap_or("?"),
            report.supported_wit_version
        ));
        s.push_str(&format!("exports       {}\n", list(&report.exports)));
        s.push_str(&format!("imports       {}\n", list(&report.imports)));
        s.push_str(&format!("declared      {}\n", list(&report.declared_hosts)));
        if !report.unresolved_declarations.is_empty() {
            s.push_str(&format!("unresolved    {}\n", list(&report.unresolved_declarations)));
        }
        s.push_str(&format!("granted       {}\n", list(&report.granted_hosts)));
        s.push_str(&format!("effective     {}\n", list(&report.effective_hosts)));
        let pre: Vec<String> = report
            .preopens
            .iter()
            .map(|p| format!("{} -> {}{}", p.host.display(), p.guest, if p.writable { " (rw)" } else { " (ro)" }))
            .collect();
        s.push_str(&format!("preopens      {}\n", list(&pre)));
        s.push_str(&format!("secrets       {}\n", list(&report.secrets)));
        s.push_str(&format!(
            "limits        memory {} MiB, call timeout {:?}\n",
            report.limits.memory_mib, report.limits.call_timeout
        ));
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct CheckRow {
    name: String,
    sha256: Option<String>,
    wit_version: Option<String>,
    kind: Option<String>,
    product: Option<String>,
    status: String,
    /// `hit` when compiled code came from the cache, `compiled` otherwise.
    cache: Option<String>,
    load_ms: Option<f64>,
    describe_ms: Option<f64>,
}

fn kind_name(kind: &SiteKind) -> String {
    match kind {
        SiteKind::Vcenter => "vcenter".into(),
        SiteKind::Esxi => "esxi".into(),
        SiteKind::AzureClassic => "azure-classic".into(),
        SiteKind::AzureResourceManager => "azure-resource-manager".into(),
        SiteKind::Directory => "directory".into(),
        SiteKind::Other(name) => name.clone(),
    }
}

/// Loads and instantiates every plugin, calls `describe`, and reports each.
pub async fn check(flag: Option<&Path>, out: Output) -> anyhow::Result<ExitCode> {
    let loaded = config::load(flag)?;
    let engine = engine(&loaded)?;
    let mut rows = Vec::new();
    for name in loaded.plugin_names() {
        let mut row = CheckRow {
            name: name.clone(),
            sha256: None,
            wit_version: None,
            kind: None,
            product: None,
            status: String::new(),
            cache: None,
            load_ms: None,
            describe_ms: None,
        };
        let spec = loaded.plugin_spec(&name)?;
        match engine.load(spec) {
            Err(e) => row.status = e.to_string(),
            Ok(plugin) => {
                row.sha256 = Some(plugin.sha256().to_string());
                row.wit_version = plugin.info().wit_version.clone();
                row.cache = Some(format!("{:?}", plugin.load_stats().cache).to_lowercase());
                row.load_ms = Some(plugin.load_stats().total_time.as_secs_f64() * 1000.0);
                let started = Instant::now();
                match plugin.describe().await {
                    Ok(info) => {
                        row.kind = Some(kind_name(&info.kind));
                        row.product = Some(format!("{} {}", info.product, info.product_version));
                        row.status = "ok".into();
                    }
                    Err(e) => row.status = e.to_string(),
                }
                row.describe_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        rows.push(row);
    }
    let ok = rows.iter().all(|r| r.status == "ok");
    out.emit(&rows, || {
        if rows.is_empty() {
            return format!("no plugins configured in {}\n", loaded.source_name());
        }
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.kind.clone().unwrap_or_else(|| "-".into()),
                    r.wit_version.clone().unwrap_or_else(|| "-".into()),
                    r.sha256.as_deref().map(short_hash).unwrap_or_else(|| "-".into()),
                    match (&r.cache, r.load_ms) {
                        (Some(c), Some(ms)) => format!("{ms:.0} ms ({c})"),
                        _ => "-".into(),
                    },
                    r.status.clone(),
                ]
            })
            .collect();
        table(&["PLUGIN", "KIND", "WIT", "SHA256", "LOAD", "STATUS"], &table_rows)
    })?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

//! `homeward plugins pin NAME`: records the sha256 of a plugin's current file in the config
//! file, keeping every comment and the rest of the layout.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;

use homeward_plugin_host::hash::{normalise_pin, sha256_file};

use crate::config;
use crate::output::Output;

#[derive(Debug, Serialize)]
struct PinReport {
    plugin: String,
    config: String,
    old: String,
    new: String,
    changed: bool,
}

/// Pins each named plugin to the hash of its file as it is now.
pub fn run(flag: Option<&Path>, names: &[String], out: Output) -> anyhow::Result<ExitCode> {
    let loaded = config::load(flag)?;
    let Some(source) = loaded.source.clone() else {
        bail!("no config file to update: pass --config FILE (pins live in the file, not in the environment)");
    };
    let text = std::fs::read_to_string(&source).with_context(|| format!("cannot read {}", source.display()))?;
    let mut doc: toml_edit::DocumentMut = text.parse().with_context(|| format!("{} is not valid TOML", source.display()))?;
    let mut reports = Vec::new();
    for name in names {
        let spec = loaded.plugin_spec(name)?;
        let new = sha256_file(&spec.path).with_context(|| format!("cannot hash {} (plugins.{name}.path)", spec.path.display()))?;
        let old = normalise_pin(&spec.sha256);
        let entry = doc
            .get_mut("plugins")
            .and_then(|p| p.get_mut(name))
            .and_then(|p| p.as_table_like_mut())
            .with_context(|| format!("plugins.{name} is not a table in {}; it may come from the environment", source.display()))?;
        entry.insert("sha256", toml_edit::value(new.clone()));
        reports.push(PinReport { plugin: name.clone(), config: source.display().to_string(), changed: old != new, old, new });
    }
    let tmp = source.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &source).with_context(|| format!("cannot replace {}", source.display()))?;
    out.emit(&reports, || {
        reports
            .iter()
            .map(|r| {
                if r.changed {
                    format!("pinned {} to {} (was {}) in {}\n", r.plugin, r.new, r.old, r.config)
                } else {
                    format!("{} already pinned to {}\n", r.plugin, r.new)
                }
            })
            .collect()
    })?;
    Ok(ExitCode::SUCCESS)
}

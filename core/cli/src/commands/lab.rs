//! `homeward lab up`: starts the simulated vSphere sites (a vCenter and a standalone ESXi
//! host) on loopback in the foreground, prints their endpoints and credentials, and writes
//! a ready operator config that loads the VMware adapters against them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use homeward_lab::vsphere::VsphereLab;
use homeward_plugin_host::hash::sha256_file;

use crate::output::Output;

const BUILTIN_VCENTER: &str = include_str!("../../../../examples/lab/vcenter.toml");
const BUILTIN_ESXI: &str = include_str!("../../../../examples/lab/esxi.toml");

/// Where `lab up` puts things and which inventories it serves.
#[derive(Debug, Clone)]
pub struct LabUpArgs {
    pub dir: PathBuf,
    pub config_out: PathBuf,
    pub vcenter: Option<PathBuf>,
    pub esxi: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct SiteReport {
    name: &'static str,
    mode: &'static str,
    sdk_url: String,
    username: String,
    password: String,
    password_env: &'static str,
}

#[derive(Debug, Serialize)]
struct LabReport {
    config: String,
    sites: Vec<SiteReport>,
}

fn read_spec(path: &Option<PathBuf>, builtin: &str) -> anyhow::Result<String> {
    match path {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read lab inventory {}", p.display())),
        None => Ok(builtin.to_string()),
    }
}

fn plugin_section(name: &str, wasm: &Path, lab: &VsphereLab, password_env: &str) -> anyhow::Result<String> {
    let sha = sha256_file(wasm).with_context(|| format!("cannot hash {}", wasm.display()))?;
    let endpoint = lab.base_url().trim_start_matches("http://").to_string();
    let user = lab.credentials().user;
    Ok(format!(
        "[plugins.{name}]\npath = \"{}\"\nsha256 = \"{sha}\"\nallow_hosts = [\"http://{endpoint}\"]\n\n\
         [plugins.{name}.config]\nendpoint = \"{endpoint}\"\nscheme = \"http\"\nusername = \"{user}\"\n\n\
         [plugins.{name}.secrets]\npassword = \"{password_env}\"\n\n",
        wasm.display()
    ))
}

/// Runs the lab until Ctrl-C or SIGTERM.
pub async fn up(args: LabUpArgs, out: Output) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    // Absolute, so the written config is valid wherever it is put.
    let lab_dir = args.dir.canonicalize().with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let args = LabUpArgs { dir: lab_dir, ..args };
    let vcenter = VsphereLab::from_toml(&read_spec(&args.vcenter, BUILTIN_VCENTER)?, args.dir.join("vcenter"))
        .await
        .context("cannot start the vCenter lab site")?;
    let esxi = VsphereLab::from_toml(&read_spec(&args.esxi, BUILTIN_ESXI)?, args.dir.join("esxi"))
        .await
        .context("cannot start the ESXi lab site")?;

    let data_dir = args.dir.join("state");
    let mut config = format!(
        "# Written by `homeward lab up` for the lab it started; valid while that lab runs.\n\
         # Export the password variables it printed before using this file.\n\
         data_dir = \"{}\"\n\n",
        data_dir.display()
    );
    config.push_str(&plugin_section("vcenter", homeward_plugin_artifacts::vmware_vcenter(), &vcenter, "LAB_VCENTER_PASSWORD")?);
    config.push_str(&plugin_section("esxi", homeward_plugin_artifacts::vmware_esxi(), &esxi, "LAB_ESXI_PASSWORD")?);
    std::fs::write(&args.config_out, config).with_context(|| format!("cannot write {}", args.config_out.display()))?;

    let report = LabReport {
        config: args.config_out.display().to_string(),
        sites: vec![
            SiteReport {
                name: "vcenter",
                mode: "vCenter (VirtualCenter)",
                sdk_url: vcenter.sdk_url(),
                username: vcenter.credentials().user,
                password: vcenter.credentials().password,
                password_env: "LAB_VCENTER_PASSWORD",
            },
            SiteReport {
                name: "esxi",
                mode: "standalone ESXi (HostAgent)",
                sdk_url: esxi.sdk_url(),
                username: esxi.credentials().user,
                password: esxi.credentials().password,
                password_env: "LAB_ESXI_PASSWORD",
            },
        ],
    };
    if out.json {
        // One line, so scripts can read it while the lab keeps running.
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("lab sites running (Ctrl-C stops them):");
        for s in &report.sites {
            println!("  {:<8} {:<28} {}  user {}", s.name, s.mode, s.sdk_url, s.username);
        }
        println!("operator config written to {}; export the passwords first:", report.config);
        for s in &report.sites {
            println!("  export {}='{}'", s.password_env, s.password);
        }
        println!("then: homeward --config {} plugins check", report.config);
    }
    use std::io::Write;
    std::io::stdout().flush()?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    vcenter.shutdown().await;
    esxi.shutdown().await;
    eprintln!("lab stopped");
    Ok(ExitCode::SUCCESS)
}

//! `homeward lab up` as an operator drives it: start the lab, use the config it writes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Stops the lab process even when an assertion fails.
struct Lab(Child);

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn lab_up_serves_both_sites_and_writes_a_config_that_loads_the_vmware_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lab.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_homeward"))
        .args(["--json", "lab", "up", "--dir"])
        .arg(dir.path().join("lab"))
        .arg("--config-out")
        .arg(&config)
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lab = Lab(child);
    let mut line = String::new();
    BufReader::new(lab.0.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let report: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let sites = report["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2);
    assert!(sites.iter().all(|s| s["sdk_url"].as_str().unwrap().starts_with("http://127.0.0.1:")));

    // Before any session exists, and without the password, describe fails with
    // permission-denied naming the variable to export.
    let out = Command::new(env!("CARGO_BIN_EXE_homeward"))
        .args(["--json", "--config"])
        .arg(&config)
        .args(["plugins", "check"])
        .env_remove("HOMEWARD_CONFIG")
        .env_remove("LAB_VCENTER_PASSWORD")
        .env_remove("LAB_ESXI_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows[0]["status"].as_str().unwrap().contains("LAB_ESXI_PASSWORD"), "{rows}");

    let mut check = Command::new(env!("CARGO_BIN_EXE_homeward"));
    check.args(["--json", "--config"]).arg(&config).args(["plugins", "check"]).env_remove("HOMEWARD_CONFIG");
    for s in sites {
        check.env(s["password_env"].as_str().unwrap(), s["password"].as_str().unwrap());
    }
    let out = check.output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["esxi", "vcenter"]);

}

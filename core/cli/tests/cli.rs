//! The `homeward` binary as an operator drives it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn homeward(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homeward"));
    cmd.args(args).current_dir(workspace()).env_remove("HOMEWARD_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config in a temp dir that loads the built template against a copy of the demo site.
fn template_config(dir: &Path, extra: &str) -> PathBuf {
    let wasm = homeward_plugin_artifacts::adapter_template();
    let sha = homeward_plugin_host::hash::sha256_file(wasm).unwrap();
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    for entry in walk(&workspace().join("examples/sites/demo")) {
        let rel = entry.strip_prefix(workspace().join("examples/sites/demo")).unwrap();
        let to = site.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let path = dir.join("homeward.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"state\"\n[plugins.template]\npath = \"{}\"\nsha256 = \"{sha}\"\npreopens = [{{ host = \"site\", guest = \"/site\", writable = true }}]\n[plugins.template.config]\nroot = \"/site\"\n{extra}",
            wasm.display()
        ),
    )
    .unwrap();
    path
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn the_example_config_is_valid_and_pins_the_template_as_built() {
    let out = homeward(&["--config", "examples/homeward.toml", "config", "check"], &[]);
    assert!(
        out.status.success(),
        "examples/homeward.toml must pass `config check`. If the template changed, review it and run \
         `cargo run -p homeward-cli -- --config examples/homeward.toml plugins pin template`.\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("config is valid"));
}

#[test]
fn plugins_check_json_reports_each_plugin_with_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = template_config(dir.path(), "");
    let out = homeward(&["--config", config.to_str().unwrap(), "--json", "plugins", "check"], &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["name"], "template");
    assert_eq!(row["status"], "ok");
    assert_eq!(row["kind"], "directory");
    assert_eq!(row["wit_version"], "0.1.0");
    assert_eq!(row["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn a_wrong_pin_fails_plugins_check_and_names_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let config = template_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    let actual = homeward_plugin_host::hash::sha256_file(homeward_plugin_artifacts::adapter_template()).unwrap();
    std::fs::write(&config, text.replace(&actual, &"1".repeat(64))).unwrap();
    let out = homeward(&["--config", config.to_str().unwrap(), "--json", "plugins", "check"], &[]);
    assert!(!out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = rows[0]["status"].as_str().unwrap();
    assert!(status.contains(&actual) && status.contains(&"1".repeat(64)), "{status}");

    // `plugins pin` records the real hash and keeps the file's other content.
    let out = homeward(&["--config", config.to_str().unwrap(), "plugins", "pin", "template"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pinned = std::fs::read_to_string(&config).unwrap();
    assert!(pinned.contains(&actual) && pinned.contains("root = \"/site\""));
    assert!(homeward(&["--config", config.to_str().unwrap(), "plugins", "check"], &[]).status.success());
}

#[test]
fn unknown_keys_are_errors_naming_the_key_path_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = template_config(dir.path(), "[plugins.template.limits]\nmemory_mb = 64\n");
    let out = homeward(&["--config", config.to_str().unwrap(), "config", "check"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("plugins.template.limits.memory_mb"), "{}", stderr(&out));

    let config = template_config(dir.path(), "");
    let out = homeward(&["--config", config.to_str().unwrap(), "config", "check"], &[("HOMEWARD_ENGINE__POOLNG", "true")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("engine.poolng"), "{}", stderr(&out));
}

#[test]
fn an_unknown_wire_codec_is_refused_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let config = template_config(dir.path(), "[replication]\ncodec = \"gzip\"\nbandwidth_mbps = 100\n");
    let out = homeward(&["--config", config.to_str().unwrap(), "config", "check"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("replication.codec: unknown codec \"gzip\": use auto, none, lz4, zstd or zstd-N"), "{}", stderr(&out));
    let config = template_config(dir.path(), "[replication]\ncodec = \"lz4\"\nbandwidth_mbps = 100\n");
    let out = homeward(&["--config", config.to_str().unwrap(), "config", "check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn environment_variables_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = template_config(dir.path(), "");
    let out = homeward(
        &["--config", config.to_str().unwrap(), "--json", "plugins", "inspect", "template"],
        &[("HOMEWARD_PLUGINS__TEMPLATE__LIMITS__MEMORY_MIB", "77")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["limits"]["memory_mib"], 77);
    assert_eq!(report["wit_version"], "0.1.0");
    assert_eq!(report["declared_hosts"], serde_json::json!([]));
}

#[test]
fn secrets_in_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = template_config(dir.path(), "password = \"hunter2\"\n");
    let out = homeward(&["--config", config.to_str().unwrap(), "config", "check"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("[plugins.template.secrets]"), "{}", stderr(&out));
}

#[test]
fn the_config_file_comes_from_homeward_config_when_no_flag_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let config = template_config(dir.path(), "");
    let out = homeward(&["plugins", "list"], &[("HOMEWARD_CONFIG", config.to_str().unwrap())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("template") && stdout(&out).contains(" ok "), "{}", stdout(&out));
}

#[test]
fn an_untrusted_native_transport_is_refused_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let lib = homeward_plugin_artifacts::native_transport_example();
    let config = template_config(dir.path(), &format!("[transports.local]\npath = \"{}\"\n", lib.display()));
    let out = homeward(&["--config", config.to_str().unwrap(), "--json", "config", "check"], &[]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["transports"][0]["problems"][0].as_str().unwrap().contains("trusted = true"));

    let sha = homeward_plugin_host::hash::sha256_file(lib).unwrap();
    let config = template_config(dir.path(), &format!("[transports.local]\npath = \"{}\"\nsha256 = \"{sha}\"\ntrusted = true\n", lib.display()));
    let out = homeward(&["--config", config.to_str().unwrap(), "transports", "check"], &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

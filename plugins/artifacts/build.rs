//! Builds every WASM adapter of the workspace for `wasm32-wasip2`, and the example native
//! transport for the host, with a nested cargo in a target directory of its own (so it
//! never waits on the outer build's lock). Installs the wasm target with rustup where it
//! is missing. The resulting paths are exported to the crate as environment variables.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, env var suffix) of each WASM component to build.
const WASM_PACKAGES: &[(&str, &str)] = &[
    ("homeward-adapter-template", "ADAPTER_TEMPLATE"),
    ("homeward-fixture-misbehave", "FIXTURE_MISBEHAVE"),
    ("homeward-fixture-broken", "FIXTURE_BROKEN"),
    // vmware adapters (add below)
    ("homeward-vmware-vcenter", "VMWARE_VCENTER"),
    ("homeward-vmware-esxi", "VMWARE_ESXI"),
    // azure adapters (add below)
    ("homeward-azure-rm", "AZURE_RM"),
    ("homeward-azure-classic", "AZURE_CLASSIC"),
];

/// (package, env var suffix) of each native library to build.
const NATIVE_PACKAGES: &[(&str, &str)] = &[("homeward-native-transport-example", "NATIVE_TRANSPORT_EXAMPLE")];

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().and_then(Path::parent).unwrap().to_path_buf();
    let target_root = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    let target_root = if target_root.is_absolute() { target_root } else { workspace.join(target_root) };
    let plugin_target = target_root.join("plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    for dir in ["wit", "plugins", "examples", "tests/fixtures"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    ensure_wasm_target();

    let mut wasm = nested_cargo(&cargo, &workspace, &plugin_target);
    wasm.args(["build", "--release", "--target", WASM_TARGET]);
    for (package, _) in WASM_PACKAGES {
        wasm.args(["-p", package]);
    }
    run(wasm, "the WASM adapters");
    for (package, var) in WASM_PACKAGES {
        let file = plugin_target.join(WASM_TARGET).join("release").join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.exists(), "{} was not produced", file.display());
        println!("cargo:rustc-env=HOMEWARD_WASM_{var}={}", file.display());
    }

    let mut native = nested_cargo(&cargo, &workspace, &plugin_target);
    native.args(["build", "--release"]);
    for (package, _) in NATIVE_PACKAGES {
        native.args(["-p", package]);
    }
    run(native, "the native transport example");
    for (package, var) in NATIVE_PACKAGES {
        let file = plugin_target.join("release").join(format!("lib{}.so", package.replace('-', "_")));
        assert!(file.exists(), "{} was not produced", file.display());
        println!("cargo:rustc-env=HOMEWARD_NATIVE_{var}={}", file.display());
    }
}

fn nested_cargo(cargo: &str, workspace: &Path, target_dir: &Path) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).arg("--quiet");
    cmd.env("CARGO_TARGET_DIR", target_dir);
    // The outer build's flags are for the host crate being built, not for these.
    for var in ["RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER", "CARGO_PRIMARY_PACKAGE", "CARGO_BUILD_TARGET"] {
        cmd.env_remove(var);
    }
    // Operators pin components by sha256, so the same source must give the same bytes on
    // every machine: strip the checkout and cargo-home paths that panic messages embed.
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
    let flags = [format!("--remap-path-prefix={}=/homeward", workspace.display()), format!("--remap-path-prefix={cargo_home}=/cargo")];
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    cmd
}

fn run(mut cmd: Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(status.success(), "building {what} failed (see the output above)");
}

fn ensure_wasm_target() {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == WASM_TARGET) => {}
        Ok(_) => {
            println!("cargo:warning=installing the {WASM_TARGET} target with rustup");
            let ok = Command::new("rustup").args(["target", "add", WASM_TARGET]).status().map(|s| s.success()).unwrap_or(false);
            assert!(ok, "`rustup target add {WASM_TARGET}` failed; run it by hand");
        }
        // Without rustup the toolchain may still have the target (a distro rust); let
        // the nested build say so if not.
        Err(_) => {}
    }
}

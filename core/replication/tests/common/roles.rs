//! Running the two roles as separate OS processes.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

/// A running master-target process; killed (SIGKILL) when dropped, so a failing test
/// never leaves it behind.
pub struct MasterTargetProcess {
    pub child: Child,
    pub addr: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for MasterTargetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn role_binary() -> &'static str {
    env!("CARGO_BIN_EXE_homeward-replication-role")
}

impl MasterTargetProcess {
    /// Starts a master target on an ephemeral loopback port; `fault` sets
    /// `HOMEWARD_REPLICATION_FAULT`.
    pub fn start(journal: &Path, disks: &[(u32, &Path)], fault: Option<&str>) -> Self {
        let mut cmd = Command::new(role_binary());
        cmd.arg("master-target").arg("--listen").arg("127.0.0.1:0").arg("--journal").arg(journal);
        cmd.args(["--segment-bytes", "1048576"]);
        for (id, p) in disks {
            cmd.arg("--disk").arg(format!("{id}={}", p.display()));
        }
        match fault {
            Some(f) => cmd.env("HOMEWARD_REPLICATION_FAULT", f),
            None => cmd.env_remove("HOMEWARD_REPLICATION_FAULT"),
        };
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn master target");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv().expect("master target printed nothing");
        let addr = first.strip_prefix("LISTENING ").unwrap_or_else(|| panic!("unexpected first line {first}")).to_string();
        Self { child, addr, lines }
    }

    /// Blocks until the process prints a line starting with `prefix`.
    pub fn wait_for(&self, prefix: &str) -> String {
        loop {
            let line = self.lines.recv().unwrap_or_else(|_| panic!("master target exited before printing {prefix}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Starts a process server (does not wait).
pub fn spawn_process_server(addr: &str, disks: &[(u32, &Path)], args: &[&str]) -> Child {
    let mut cmd = Command::new(role_binary());
    cmd.arg("process-server").arg("--connect").arg(addr).args(["--group", "g1"]);
    for (id, p) in disks {
        cmd.arg("--disk").arg(format!("{id}={}", p.display()));
    }
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn process server")
}

/// Runs a process server to completion; returns its JSON report, panicking on failure.
pub fn run_process_server(addr: &str, disks: &[(u32, &Path)], args: &[&str]) -> serde_json::Value {
    let out = spawn_process_server(addr, disks, args).wait_with_output().unwrap();
    assert!(out.status.success(), "process server failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("a report line")).unwrap()
}

//! `homeward demo`, the README's main command, as a user runs it: the whole failback
//! drill on the built-in lab, with Resource Manager (original VMs and an alternate
//! location) and classic Azure, ending in a verified report.

#[test]
fn the_drill_verifies_every_round_and_moves_only_deltas_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_homeward"))
        .args(["--json", "demo", "--dir"])
        .arg(dir.path())
        .env_remove("HOMEWARD_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["verified"], true, "{report}");
    for field in ["rpo_seconds", "rto_seconds", "bytes_sent", "bytes_changed", "disk_bytes"] {
        assert!(report[field].is_number(), "the report has {field}: {report}");
    }
    let rounds = report["rounds"].as_array().unwrap();
    let kinds: Vec<(String, String)> = rounds.iter().map(|r| (r["azure"].as_str().unwrap().to_string(), r["failback_to"].as_str().unwrap().to_string())).collect();
    assert_eq!(
        kinds,
        [("resource-manager", "original-vm"), ("resource-manager", "alternate-location"), ("classic", "original-vm")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    for r in rounds {
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["consistency"], "app", "failback used the latest app-consistent point: {r}");
        assert!(r["disks"].as_array().unwrap().len() == 4 && r["disks"].as_array().unwrap().iter().all(|d| d["expected"] == d["actual"]), "{r}");
        assert!(r["jobs"].as_array().unwrap().iter().all(|j| j["seconds"].as_f64().unwrap() > 0.0), "{r}");
        let (sent, disk) = (r["bytes_sent"].as_u64().unwrap(), r["disk_bytes"].as_u64().unwrap());
        if r["failback_to"] == "original-vm" {
            assert!(sent > 0 && sent * 20 < disk, "only deltas go back to the original VMs: {sent} of {disk}");
        } else {
            assert!(sent > 0 && sent < disk, "a new VM gets the allocated extents only: {sent} of {disk}");
        }
    }
}

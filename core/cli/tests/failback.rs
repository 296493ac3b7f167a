//! The failback pipeline end to end, driven through the `homeward` binary against the
//! lab: every stage, crash-resume in every step of reprotect and failback, a restored
//! configuration database, and the prerequisite rules.

mod env;

use env::{DEMO_VCENTER, Env, attempts};

/// Runs a job killed at `step` and resumed; checks that only the step it died in ran
/// twice (not at all twice when it died after the step was recorded done).
async fn crashed_and_resumed(env: &Env, args: &[&str], step: &str) -> serde_json::Value {
    let job = env.crash_and_resume(args, step).await;
    let step_name = step.split(':').next().unwrap();
    let a = attempts(&job);
    let expect_crashed = if step.ends_with(":after") { 1 } else { 2 };
    assert_eq!(a[step_name], expect_crashed, "the step killed in reruns, once: {a:?}");
    assert!(a.iter().filter(|(n, _)| *n != step_name).all(|(_, &n)| n == 1), "finished steps never rerun: {a:?}");
    job
}

/// Fails over (planned), writes in Azure, reprotects to on-premises and records the Azure
/// disks at the resync point; returns those hashes.
async fn fail_over_and_reprotect(env: &Env, seed: u64, crash: Option<&str>, alternate: bool) -> std::collections::BTreeMap<String, String> {
    let job = env.ok(&["failover", "app-plan", "--planned"]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    env.write_azure(seed);
    if seed == 1 {
        env.failback_infrastructure().await;
    }
    let mut args = vec!["reprotect", "app-plan", "--master-target", "mt01", "--process-server", "ps-failback"];
    if alternate {
        args.push("--alternate-location");
    }
    let job = match crash {
        Some(step) => crashed_and_resumed(env, &args, step).await,
        None => env.ok(&args).await,
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    env.azure_hashes()
}

/// Writes more in Azure, cycles, fails back at latest-app-consistent and checks every
/// on-premises disk against the hashes at the app-consistent point.
async fn fail_back_and_verify(env: &Env, seed: u64, at_point: &std::collections::BTreeMap<String, String>, crash: Option<&str>) {
    env.write_azure(seed + 1000);
    let c = env.ok(&["replicate", "app-plan"]).await;
    assert_eq!(c[0]["consistency"], "crash", "a point inside the app-consistent interval is crash-consistent");
    let args = ["failover", "app-plan", "--point", "latest-app-consistent"];
    let job = match crash {
        Some(step) => crashed_and_resumed(env, &args, step).await,
        None => env.ok(&args).await,
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(env.onprem_hashes(), *at_point, "every on-premises disk equals the Azure disk at the chosen point");
    for (name, item) in env.items().await {
        assert_eq!(item["state"], "failed-back(on-prem, uncommitted)", "{name}");
    }
}

async fn commit_and_protect_forward(env: &Env) {
    let job = env.ok(&["commit", "app-plan"]).await;
    assert_eq!(job["state"], "succeeded");
    for vm in ["db01", "web01"] {
        assert!(!env.az().vm_exists(homeward_lab::operator::DEMO_SUBSCRIPTION, homeward_lab::operator::DEMO_RESOURCE_GROUP, vm), "commit deletes Azure VM {vm}");
    }
    let job = env.ok(&["reprotect", "app-plan"]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    for (name, item) in env.items().await {
        assert_eq!(item["state"], "protected(on-prem→azure)", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_through_the_cli_moves_only_deltas_and_verifies() {
    let env = Env::start(DEMO_VCENTER, None, None).await;
    env.write_onprem(1);
    let protect = env.protect(&[]).await;
    let disk_bytes: u64 = env.db_items().iter().flat_map(|i| i["disks"].as_array().unwrap().clone()).map(|d| d["capacity_bytes"].as_u64().unwrap()).sum();
    assert!(protect["bytes_sent"].as_u64().unwrap() > 0);
    for (name, item) in env.items().await {
        assert_eq!(item["state"], "protected(on-prem→azure)", "{name}");
    }
    env.write_onprem(2);
    let cycle = env.ok(&["replicate", "app-plan"]).await;
    assert_eq!(cycle[0]["seq"], 1);
    let points = env.ok(&["recovery-points", "db01"]).await;
    assert_eq!(points.as_array().unwrap().len(), 2, "the initial point and the cycle's: {points}");

    let at_point = fail_over_and_reprotect(&env, 1, None, false).await;
    for vm in ["db01", "web01"] {
        assert_eq!(env.az().vm_power_state(homeward_lab::operator::DEMO_SUBSCRIPTION, homeward_lab::operator::DEMO_RESOURCE_GROUP, vm).unwrap(), "running");
        assert!(!env.vc().is_powered_on(vm).unwrap(), "the on-premises VM {vm} is off while Azure runs");
    }
    let jobs = env.ok(&["jobs"]).await;
    let reprotect = jobs.as_array().unwrap().iter().rev().find(|j| j["kind"] == "reprotect").unwrap().clone();
    let sent = reprotect["bytes_sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < disk_bytes / 10, "the reprotect resync sends only the deltas: {sent} of {disk_bytes} bytes");
    let detail = env.ok(&["jobs", &reprotect["id"].to_string()]).await;
    let resync = &detail["steps"].as_array().unwrap().iter().find(|s| s["name"] == "initial-resync").unwrap()["output"]["disks"];
    assert!(resync.as_array().unwrap().iter().all(|d| d["mode"] == "delta-resync" && d["verified"] == "identical"), "{resync}");

    fail_back_and_verify(&env, 1, &at_point, None).await;
    for vm in ["db01", "web01"] {
        assert!(env.vc().is_powered_on(vm).unwrap(), "failback powers {vm} on");
    }
    commit_and_protect_forward(&env).await;
    let events = env.ok(&["events"]).await;
    assert!(events.as_array().unwrap().iter().any(|e| e["kind"] == "commit-succeeded"), "{events}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_any_step_of_reprotect_or_failback_resumes_without_repeating_a_step() {
    let env = Env::start(DEMO_VCENTER, None, None).await;
    env.write_onprem(1);
    env.protect(&[]).await;
    let rounds: [(Option<&str>, &str); 6] = [
        (Some("prerequisites"), "prerequisites"),
        (Some("prepare-targets"), "choose-point"),
        (Some("initial-resync:mid"), "shut-down-azure"),
        (Some("finish"), "apply-point"),
        (Some("initial-resync:after"), "power-on:mid"),
        (Some("begin"), "finish"),
    ];
    for (round, (reprotect_step, failback_step)) in rounds.into_iter().enumerate() {
        let seed = round as u64 + 1;
        let at_point = fail_over_and_reprotect(&env, seed, reprotect_step, false).await;
        fail_back_and_verify(&env, seed, &at_point, Some(failback_step)).await;
        commit_and_protect_forward(&env).await;
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_works_from_a_restored_configuration_database() {
    let env = Env::start(DEMO_VCENTER, None, None).await;
    env.write_onprem(1);
    env.protect(&[]).await;
    let at_point = fail_over_and_reprotect(&env, 1, None, false).await;
    let backup = env.path("backups/config.db");
    env.ok(&["backup", &backup]).await;
    // The configuration server is lost and rebuilt: its database comes from the backup.
    for f in ["homeward.db", "homeward.db-wal", "homeward.db-shm"] {
        let _ = std::fs::remove_file(env.dir.path().join("state").join(f));
    }
    let lost = env.run(&["items"]).await;
    assert!(lost.ok() && lost.json().as_array().unwrap().is_empty(), "without its database the configuration server knows no VM");
    let refused = env.run(&["failover", "app-plan", "--point", "latest-app-consistent"]).await;
    assert!(!refused.ok() && refused.text().contains("configuration database"), "{refused:?}");
    env.ok(&["restore", &backup]).await;
    fail_back_and_verify(&env, 1, &at_point, None).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_to_an_alternate_location_creates_vms_on_the_master_targets_host() {
    let env = Env::start(DEMO_VCENTER, None, None).await;
    env.write_onprem(1);
    env.protect(&[]).await;
    let at_point = fail_over_and_reprotect(&env, 1, None, true).await;
    let names = env.vc().vm_names();
    for vm in ["db01-failback-g1", "web01-failback-g1"] {
        assert!(names.contains(&vm.to_string()), "reprotect created {vm}: {names:?}");
    }
    fail_back_and_verify(&env, 1, &at_point, None).await;
    assert!(env.vc().is_powered_on("db01-failback-g1").unwrap());
    assert!(!env.vc().is_powered_on("db01").unwrap(), "the original VM stays off");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_failover_runs_beside_replication_and_cleanup_discards_it() {
    let env = Env::start(DEMO_VCENTER, None, None).await;
    env.write_onprem(1);
    env.protect(&[]).await;
    let before = env.onprem_hashes();
    let job = env.ok(&["failover", "app-plan", "--test", "--test-network", "vnet-test"]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let (sub, rg) = (homeward_lab::operator::DEMO_SUBSCRIPTION, homeward_lab::operator::DEMO_RESOURCE_GROUP);
    for vm in ["db01-test", "web01-test"] {
        assert_eq!(env.az().vm_power_state(sub, rg, vm).unwrap(), "running", "{vm} runs in the isolated network");
    }
    // The test VMs boot from copies of the point: byte for byte the protected disks.
    for item in env.db_items() {
        let name = item["name"].as_str().unwrap();
        for d in item["disks"].as_array().unwrap() {
            let label = d["label"].as_str().unwrap();
            let test_disk = format!("{name}-{}-test", label.to_lowercase().replace(' ', "-"));
            let bytes = env.az().read_disk(&env.azure_disk(&test_disk), 0, d["capacity_bytes"].as_u64().unwrap()).unwrap();
            assert_eq!(blake3::hash(&bytes).to_hex().to_string(), before[&format!("{name}/{label}")], "{test_disk}");
        }
    }
    // Production goes on: the items stay protected and keep cutting points.
    for (name, item) in env.items().await {
        assert_eq!(item["state"], "protected(on-prem→azure)", "{name}");
    }
    env.write_onprem(2);
    assert_eq!(env.ok(&["replicate", "app-plan"]).await[0]["seq"], 1);
    assert_eq!(env.ok(&["test-cleanup", "app-plan"]).await["state"], "succeeded");
    for vm in ["db01-test", "web01-test"] {
        assert!(!env.az().vm_exists(sub, rg, vm), "cleanup deletes {vm}");
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpo_breaches_raise_events_and_the_failback_policy_cannot_be_edited() {
    let env = Env::start(DEMO_VCENTER, None, None).await;
    env.protect(&[]).await;
    let policies = env.ok(&["policies"]).await;
    let failback = policies.as_array().unwrap().iter().find(|p| p["name"] == "failback").unwrap().clone();
    assert_eq!((failback["rpo_threshold_secs"].as_u64(), failback["retention_hours"].as_u64(), failback["app_consistent_minutes"].as_u64(), failback["editable"].as_bool()), (Some(900), Some(24), Some(60), Some(false)));
    let refused = env.run(&["policies", "set", "failback", "--rpo-threshold-secs", "60"]).await;
    assert!(!refused.ok() && refused.text().contains("cannot be edited"), "{refused:?}");

    env.ok(&["policies", "set", "forward", "--rpo-threshold-secs", "1"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let items = env.items().await;
    assert!(items.values().all(|i| i["rpo_breached"] == true && i["rpo_seconds"].as_f64().unwrap() >= 2.0), "{items:?}");
    env.ok(&["replicate", "app-plan"]).await;
    let events = env.ok(&["events"]).await;
    let breach = events.as_array().unwrap().iter().find(|e| e["kind"] == "rpo-breach").unwrap_or_else(|| panic!("{events}"));
    assert_eq!(breach["severity"], "warning");
    assert!(breach["message"].as_str().unwrap().contains("threshold"));
    env.shutdown().await;
}

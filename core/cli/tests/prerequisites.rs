//! The prerequisite rules of the reference article, end to end: a reprotect with every
//! problem at once is refused before it changes anything, with each failure naming its
//! object and fix; with the problems fixed, the same group reprotects.

mod env;

use env::{DEMO_VCENTER, Env};

/// The demo inventory with db01 carrying a snapshot, web01 a physical Windows Server 2008
/// R2 server's replica, and a master target VM without `disk.EnableUUID`.
fn troubled_inventory() -> String {
    let mut inv = DEMO_VCENTER.replacen("change_tracking = true\n", "change_tracking = true\nsnapshots = [\"before-upgrade\"]\n", 1);
    inv = inv.replace("guest_id = \"ubuntu64Guest\"", "guest_id = \"windows7Server64Guest\"");
    inv.push_str(
        "\n[[vms]]\nname = \"mt-bad\"\nhost = \"esx2.lab.local\"\ndatastore = \"datastore1\"\nguest_id = \"centos6_64Guest\"\npower = \"poweredOn\"\ndisks = [{ capacity_mib = 16 }]\n",
    );
    inv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprotect_lists_every_failed_rule_with_its_fix_and_changes_nothing() {
    let env = Env::start(&troubled_inventory(), None, None).await;
    env.protect(&["--physical", "web01"]).await;
    assert_eq!(env.ok(&["failover", "app-plan", "--planned"]).await["state"], "succeeded");
    // The retention volume is the configuration server's own data directory.
    let state_dir = env.path("state");
    env.ok(&["master-targets", "register", "mt-bad", "--vm", "mt-bad", "--retention", &state_dir]).await;

    // Through the group instead of its plan, without a process server.
    let r = env.run(&["reprotect", "app", "--master-target", "mt-bad"]).await;
    assert!(!r.ok(), "{r:?}");
    let expected = [
        ("process-server-missing", ""),
        ("master-target-enable-uuid", "disk.EnableUUID"),
        ("retention-volume-cache-volume", "/mnt/retention"),
        ("vm-has-snapshots", "before-upgrade"),
        ("physical-to-original-vm", "new VM"),
        ("group-outside-recovery-plan", "app-plan"),
    ];
    for (rule, hint) in expected {
        assert!(r.text().contains(rule), "rule {rule} is reported: {}", r.text());
        let _ = hint;
    }
    for object in ["db01", "web01", "mt-bad", &state_dir] {
        assert!(r.text().contains(object), "the failures name {object}: {}", r.text());
    }
    assert!(r.text().contains("fix:"), "{}", r.text());

    // Nothing changed: the items are still failed over, the job stopped at its first step.
    for (name, item) in env.items().await {
        assert_eq!(item["state"], "failed-over(azure)", "{name}");
    }
    let jobs = env.ok(&["jobs"]).await;
    let job = env.ok(&["jobs", &jobs.as_array().unwrap().last().unwrap()["id"].to_string()]).await;
    assert_eq!(job["state"], "failed");
    let steps = job["steps"].as_array().unwrap();
    assert_eq!((steps[0]["name"].as_str(), steps[0]["state"].as_str()), (Some("prerequisites"), Some("failed")));
    assert!(steps[1..].iter().all(|s| s["attempts"] == 0), "{job}");
    assert!(!env.dir.path().join("retention").exists());

    // Fixed: a good master target, a process server, through the plan, and to new VMs
    // (a physical source never fails back onto its original). The snapshot rule does not
    // apply to an alternate location.
    env.failback_infrastructure().await;
    let job = env.ok(&["reprotect", "app-plan", "--master-target", "mt01", "--process-server", "ps-failback", "--alternate-location"]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_vcenter_user_is_told_to_update_the_credential() {
    let env = Env::start(DEMO_VCENTER, None, None).await;
    env.protect(&[]).await;
    assert_eq!(env.ok(&["failover", "app-plan", "--planned"]).await["state"], "succeeded");
    env.failback_infrastructure().await;
    // The same configuration server, now with a read-only vCenter account.
    let read_only = env.dir.path().join("read-only.toml");
    let text = std::fs::read_to_string(&env.config).unwrap().replace("administrator@vsphere.local", "auditor@vsphere.local");
    std::fs::write(&read_only, text).unwrap();
    let auditor = env.vc().user("auditor@vsphere.local").unwrap().password;
    let mut secrets = env.secrets.clone();
    secrets[0].1 = auditor;
    let env_ro = Env { config: read_only.clone(), secrets, ..env };
    let discover = env_ro.run_with(&read_only, &["sites", "discover"], None).await;
    assert!(!discover.ok() && discover.text().contains("update the credential"), "{discover:?}");
    let r = env_ro.run_with(&read_only, &["reprotect", "app-plan", "--master-target", "mt01", "--process-server", "ps-failback"], None).await;
    assert!(!r.ok());
    assert!(r.text().contains("vcenter-read-only-credential") && r.text().contains("credential"), "{}", r.text());
    env_ro.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_missing_from_the_configuration_database_cannot_fail_back() {
    let env = Env::start(DEMO_VCENTER, None, None).await;
    env.ok(&["sites", "discover"]).await;
    let r = env.run(&["failover", "db01", "--point", "latest"]).await;
    assert!(!r.ok());
    assert!(r.text().contains("db01") && r.text().contains("configuration database"), "{}", r.text());
    env.shutdown().await;
}

/// web01 lives on a datastore only esx2 mounts; the master target mt-far runs on esx1.
fn split_inventory() -> String {
    let mut inv = DEMO_VCENTER.replace(
        "[[networks]]",
        "[[datastores]]\nname = \"local-esx2\"\ncapacity_gib = 20\nhosts = [\"esx2.lab.local\"]\n\n[[networks]]",
    );
    inv = inv.replacen("name = \"web01\"\nhost = \"esx1.lab.local\"\ndatastore = \"datastore1\"", "name = \"web01\"\nhost = \"esx2.lab.local\"\ndatastore = \"local-esx2\"", 1);
    inv.push_str(
        "\n[[vms]]\nname = \"mt-far\"\nhost = \"esx1.lab.local\"\ndatastore = \"datastore1\"\nguest_id = \"centos6_64Guest\"\npower = \"poweredOn\"\nextra_config = { \"disk.EnableUUID\" = \"TRUE\" }\ndisks = [{ capacity_mib = 16 }]\n",
    );
    inv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_datastore_and_retention_rules_are_checked_against_the_live_sites() {
    let env = Env::start(&split_inventory(), None, None).await;
    env.protect(&[]).await;
    assert_eq!(env.ok(&["failover", "app-plan", "--planned"]).await["state"], "succeeded");
    let retention = env.path("shared-retention");
    env.ok(&["master-targets", "register", "mt-far", "--vm", "mt-far", "--retention", &retention]).await;
    env.ok(&["master-targets", "register", "mt01", "--vm", "mt01", "--retention", &retention]).await;
    // Another live process holds the volume.
    std::fs::write(env.dir.path().join("shared-retention/.homeward-lock"), "1").unwrap();
    // A process server in a network the failed-over VMs are not in.
    env.ok(&["process-servers", "deploy", "ps-elsewhere", "--network", "vnet-test"]).await;

    let r = env.run(&["reprotect", "app-plan", "--master-target", "mt-far", "--process-server", "ps-elsewhere"]).await;
    assert!(!r.ok());
    for rule in ["process-server-network", "datastore-unreachable", "retention-volume-in-use", "retention-volume-locked"] {
        assert!(r.text().contains(rule), "rule {rule} is reported: {}", r.text());
    }
    assert!(r.text().contains("local-esx2") && r.text().contains("mt01"), "{}", r.text());

    let r = env.run(&["reprotect", "app-plan", "--master-target", "ghost", "--process-server", "ps-elsewhere"]).await;
    assert!(r.text().contains("master-target-missing") && r.text().contains("ghost"), "{}", r.text());
    for (name, item) in env.items().await {
        assert_eq!(item["state"], "failed-over(azure)", "{name}");
    }
    env.shutdown().await;
}

/// The demo inventory served by one standalone ESXi host.
fn esxi_inventory() -> String {
    DEMO_VCENTER
        .replace("mode = \"vcenter\"", "mode = \"esxi\"")
        .replace("license = \"vc.standard\"", "license = \"esxEnterprisePlus\"")
        .replace("[[hosts]]\nname = \"esx2.lab.local\"\n", "")
        .replace("host = \"esx2.lab.local\"", "host = \"esx1.lab.local\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_esxi_host_fails_over_but_cannot_fail_back() {
    let env = Env::start(&esxi_inventory(), None, Some(homeward_plugin_artifacts::vmware_esxi())).await;
    env.protect(&[]).await;
    // As the reference says: failover succeeds...
    assert_eq!(env.ok(&["failover", "app-plan", "--planned"]).await["state"], "succeeded");
    // (the host now runs the free vSphere Hypervisor licence)
    env.vc().set_license("esxBasic");
    env.failback_infrastructure().await;
    // ...but failback does not.
    let r = env.run(&["reprotect", "app-plan", "--master-target", "mt01", "--process-server", "ps-failback"]).await;
    assert!(!r.ok());
    assert!(r.text().contains("free-esxi-edition") && r.text().contains("evaluation"), "{}", r.text());
    for (name, item) in env.items().await {
        assert_eq!(item["state"], "failed-over(azure)", "{name}");
    }
    env.shutdown().await;
}

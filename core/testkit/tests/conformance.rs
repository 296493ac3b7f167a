//! The test kit against real components: the shipped adapters and the template pass their
//! profiles; each deliberately broken fixture is caught by the case meant for it, with a
//! message that tells the vendor what to fix; expectations turn failures into expected
//! ones and catch unexpected passes; the JUnit and JSON reports parse; the CLI glue runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use homeward_testkit::{Expectations, Profile, Report, RunOptions, Status, TestkitCommand, run_cli};

fn opts(component: &Path, profile: Profile) -> RunOptions {
    let mut o = RunOptions::new(component, Some(profile));
    o.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("testkit-compile-cache"));
    o
}

async fn run(o: RunOptions) -> Report {
    let report = homeward_testkit::run(o).await.expect("the suite runs");
    println!("{}", report.to_console());
    report
}

fn status(r: &Report, case: &str) -> Status {
    r.case(case).unwrap_or_else(|| panic!("case {case} ran")).status
}

fn message(r: &Report, case: &str) -> String {
    r.case(case).and_then(|c| c.message.clone()).unwrap_or_default()
}

/// A shipped adapter passes every case of its profile, and the cases its capabilities
/// support really ran.
async fn passes(component: &Path, profile: Profile, must_run: &[&str]) -> Report {
    passes_with(component, profile, must_run, Expectations::default()).await
}

async fn passes_with(component: &Path, profile: Profile, must_run: &[&str], expectations: Expectations) -> Report {
    let mut o = opts(component, profile);
    o.expectations = expectations;
    let r = run(o).await;
    assert!(r.success(), "{} fails its {profile} profile:\n{}", component.display(), r.to_console());
    assert_eq!(r.cases.len(), homeward_testkit::CASES.len());
    for case in must_run {
        assert_eq!(status(&r, case), Status::Passed, "{case} must run and pass on {profile}");
    }
    for c in &r.cases {
        assert!(c.stats.calls > 0 || c.status == Status::Skipped, "{} made no calls", c.name);
        if c.status == Status::Passed {
            assert!(c.stats.fuel_used > 0 && c.stats.peak_memory_bytes > 0, "{}: fuel and memory are reported: {:?}", c.name, c.stats);
        }
    }
    r
}

const CORE: &[&str] = &["contract", "idempotency", "read-after-write", "change-tracking", "data-path", "errors::not-found", "errors::conflict", "limits::deadline", "sandbox::undeclared-host"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_passes_the_directory_profile() {
    let r = passes(homeward_plugin_artifacts::adapter_template(), Profile::Directory, CORE).await;
    assert_eq!(status(&r, "sandbox::outside-preopen"), Status::Passed);
    for case in ["errors::auth", "errors::throttle", "errors::server-error", "errors::dropped-connection"] {
        assert_eq!(status(&r, case), Status::Skipped, "a directory site cannot stage {case}");
        assert!(!message(&r, case).is_empty(), "a skip says why");
    }
    let ct = r.case("change-tracking").unwrap();
    assert!(ct.warnings.iter().any(|w| w.contains("bytes that did not change")), "64 KiB block hashes report a superset, as a warning with its size: {:?}", ct.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vcenter_adapter_passes_its_profile() {
    let r = passes(homeward_plugin_artifacts::vmware_vcenter(), Profile::Vcenter, CORE).await;
    for case in ["errors::auth", "errors::throttle", "errors::server-error", "errors::dropped-connection"] {
        assert_eq!(status(&r, case), Status::Passed, "{case}");
    }
    assert_eq!(status(&r, "sandbox::outside-preopen"), Status::Skipped, "no preopen is granted on vSphere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_esxi_adapter_passes_its_profile() {
    passes(homeward_plugin_artifacts::vmware_esxi(), Profile::Esxi, CORE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_rm_adapter_passes_its_profile() {
    let r = passes(homeward_plugin_artifacts::azure_rm(), Profile::AzureRm, CORE).await;
    for case in ["errors::auth", "errors::throttle", "errors::server-error", "errors::dropped-connection"] {
        assert_eq!(status(&r, case), Status::Passed, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_classic_adapter_passes_its_profile() {
    // The kit once found that classic disks named the storage account as a datastore
    // list-datastores never returned; the adapter now reports no datastore for VHDs.
    let r = passes(homeward_plugin_artifacts::azure_classic(), Profile::AzureClassic, CORE).await;
    for case in ["errors::auth", "errors::throttle", "errors::server-error", "errors::dropped-connection"] {
        assert_eq!(status(&r, case), Status::Passed, "{case}");
    }
}

/// Runs the broken fixture with one defect, only the cases matching `filter`.
async fn broken(defect: &str, filter: &str) -> Report {
    let mut o = opts(homeward_plugin_artifacts::fixture_broken(), Profile::Directory);
    o.extra_config.insert("defect".into(), defect.into());
    o.filter = Some(filter.into());
    run(o).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_idempotent_delete_is_caught() {
    let r = broken("non-idempotent-delete", "idempotency").await;
    assert_eq!(status(&r, "idempotency"), Status::Failed);
    let m = message(&r, "idempotency");
    assert!(m.contains("delete-vm repeated") && m.contains("not-found"), "{m}");
    assert!(!r.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_tracking_that_misses_cleared_ranges_is_caught() {
    let r = broken("misses-cleared", "change-tracking").await;
    assert_eq!(status(&r, "change-tracking"), Status::Failed);
    let m = message(&r, "change-tracking");
    assert!(m.contains("cleared") && m.contains("report them in `cleared`"), "{m}");
    assert!(!m.contains("the guest wrote"), "only the clears are missed: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_error_mapping_is_caught() {
    let r = broken("wrong-error", "errors::").await;
    assert_eq!(status(&r, "errors::not-found"), Status::Failed);
    let m = message(&r, "errors::not-found");
    assert!(m.contains("inventory.get-vm") && m.contains("returned internal") && m.contains("adapter-error::not-found"), "{m}");
    assert_eq!(status(&r, "errors::conflict"), Status::Passed, "only get-vm is broken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_is_caught_at_its_deadline() {
    let mut o = opts(homeward_plugin_artifacts::fixture_broken(), Profile::Directory);
    o.extra_config.insert("defect".into(), "hang".into());
    o.filter = Some("limits::".into());
    o.call_timeout = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    let r = run(o).await;
    assert_eq!(status(&r, "limits::deadline"), Status::Failed);
    let m = message(&r, "limits::deadline");
    assert!(m.contains("inventory.list-hosts") && m.contains("must never block"), "{m}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "the hang was cut, not waited out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_undeclared_host_is_caught() {
    let r = broken("undeclared-host", "sandbox::").await;
    assert_eq!(status(&r, "sandbox::undeclared-host"), Status::Failed);
    let m = message(&r, "sandbox::undeclared-host");
    assert!(m.contains("inventory.list-networks") && m.contains("telemetry.vendor.example") && m.contains("outbound"), "{m}");
    assert_eq!(status(&r, "sandbox::outside-preopen"), Status::Passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expectations_mark_failures_and_catch_unexpected_passes() {
    let mut o = opts(homeward_plugin_artifacts::fixture_broken(), Profile::Directory);
    o.extra_config.insert("defect".into(), "wrong-error".into());
    o.filter = Some("errors::".into());
    o.expectations = Expectations::parse(
        "[expected-failures]\n\"errors::not-found\" = \"get-vm maps every failure to internal (VENDOR-1)\"\n\"errors::conflict\" = \"thought broken, fixed since\"\n",
        "expect.toml",
    )
    .unwrap();
    let r = run(o).await;
    assert_eq!(status(&r, "errors::not-found"), Status::ExpectedFailure);
    assert_eq!(r.case("errors::not-found").unwrap().expected_reason.as_deref(), Some("get-vm maps every failure to internal (VENDOR-1)"));
    assert_eq!(status(&r, "errors::conflict"), Status::UnexpectedPass);
    assert!(message(&r, "errors::conflict").contains("remove its entry"), "{}", message(&r, "errors::conflict"));
    assert!(!r.success(), "an unexpected pass fails the run");

    // With only the true expectation, the run is green.
    let mut o = opts(homeward_plugin_artifacts::fixture_broken(), Profile::Directory);
    o.extra_config.insert("defect".into(), "wrong-error".into());
    o.filter = Some("errors::not-found".into());
    o.expectations = Expectations::parse("[expected-failures]\n\"errors::not-found\" = \"VENDOR-1\"\n", "expect.toml").unwrap();
    assert!(run(o).await.success());

    // A typo in the expectations cannot hide a failure: the run refuses it.
    let mut o = opts(homeward_plugin_artifacts::adapter_template(), Profile::Directory);
    o.expectations = Expectations::parse("[expected-failures]\n\"errors::notfound\" = \"typo\"\n", "expect.toml").unwrap();
    let err = homeward_testkit::run(o).await.expect_err("unknown case names are refused");
    assert!(err.to_string().contains("errors::notfound"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_and_json_reports_parse() {
    let mut o = opts(homeward_plugin_artifacts::fixture_broken(), Profile::Directory);
    o.extra_config.insert("defect".into(), "wrong-error".into());
    o.filter = Some("errors::".into());
    let r = run(o).await;

    let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("the JSON report parses");
    assert_eq!(json["success"], false);
    assert_eq!(json["profile"], "directory");
    assert_eq!(json["counts"]["failed"], 1);
    let back: Report = serde_json::from_value(json).expect("the JSON report reads back as a Report");
    assert_eq!(back.cases.len(), r.cases.len());
    assert_eq!(back.case("errors::not-found").unwrap().status, Status::Failed);

    let xml = r.to_junit();
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut cases, mut failures, mut skipped, mut depth) = (0, 0, 0, 0i32);
    loop {
        match reader.read_event().expect("the JUnit report is well-formed XML") {
            quick_xml::events::Event::Start(e) => {
                depth += 1;
                match e.name().as_ref() {
                    b"testcase" => cases += 1,
                    b"failure" => failures += 1,
                    _ => {}
                }
            }
            quick_xml::events::Event::Empty(e) if e.name().as_ref() == b"skipped" => skipped += 1,
            quick_xml::events::Event::End(_) => depth -= 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "every element is closed");
    assert_eq!(cases, r.cases.len());
    assert_eq!(failures, 1);
    assert_eq!(skipped, r.cases.iter().filter(|c| c.status == Status::Skipped).count());
    assert!(skipped >= 4, "the directory site skips the injected faults");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let json = dir.path().join("report.json");
    let cmd = TestkitCommand::Run {
        component: homeward_plugin_artifacts::adapter_template().to_path_buf(),
        profile: Some(Profile::Directory),
        filter: Some("contract".into()),
        expect: None,
        junit: Some(junit.clone()),
        json_report: Some(json.clone()),
        sha256: None,
        seed: 7,
        call_timeout_secs: 30,
        fuel: 20_000_000_000,
        config: vec![],
    };
    assert_eq!(run_cli(cmd, false).await.unwrap(), ExitCode::SUCCESS);
    assert!(std::fs::read_to_string(&junit).unwrap().contains("<testcase classname=\"homeward-testkit.directory\" name=\"contract\""));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!((v["success"].as_bool(), v["seed"].as_u64()), (Some(true), Some(7)));

    // A wrong pin refuses to run (exit 2), and a broken adapter fails the run (exit 1).
    let cmd = TestkitCommand::Run {
        component: homeward_plugin_artifacts::adapter_template().to_path_buf(),
        profile: Some(Profile::Directory),
        filter: Some("contract".into()),
        expect: None,
        junit: None,
        json_report: None,
        sha256: Some("0".repeat(64)),
        seed: 1,
        call_timeout_secs: 30,
        fuel: 0,
        config: vec![],
    };
    assert_eq!(run_cli(cmd, true).await.unwrap(), ExitCode::from(2));
    let cmd = TestkitCommand::Run {
        component: homeward_plugin_artifacts::fixture_broken().to_path_buf(),
        profile: Some(Profile::Directory),
        filter: Some("errors::not-found".into()),
        expect: None,
        junit: None,
        json_report: None,
        sha256: None,
        seed: 1,
        call_timeout_secs: 30,
        fuel: 0,
        config: vec!["defect=wrong-error".into()],
    };
    assert_eq!(run_cli(cmd, false).await.unwrap(), ExitCode::from(1));

    // check: manifest, version, expectations, describe; a typo in the expectations fails it.
    let good = dir.path().join("expect.toml");
    std::fs::write(&good, "[expected-failures]\n\"errors::throttle\" = \"no 429 yet\"\n").unwrap();
    let (ok, lines, value) = homeward_testkit::cli::check(homeward_plugin_artifacts::vmware_esxi(), None, Some(&good), None).await;
    assert!(ok, "{lines:#?}");
    assert_eq!(value["profile"], "esxi", "the profile is inferred from the manifest");
    assert_eq!(value["wit_version"], "0.1.0");
    assert!(value["describe"].as_str().unwrap().contains("change-tracking true"), "{value}");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[expected-failures]\n\"errors::throttled\" = \"typo\"\n").unwrap();
    let (ok, lines, _) = homeward_testkit::cli::check(homeward_plugin_artifacts::adapter_template(), None, Some(&typo), None).await;
    assert!(!ok && lines.iter().any(|l| l.contains("errors::throttled")), "{lines:#?}");
    let check = TestkitCommand::Check { component: homeward_plugin_artifacts::adapter_template().to_path_buf(), profile: None, expect: None, sha256: None };
    assert_eq!(run_cli(check, true).await.unwrap(), ExitCode::SUCCESS);
}

//! Runs libiscsi's conformance suite (`iscsi-test-cu`, Debian package
//! libiscsi-bin) against an in-process engine serving a sparse 1 GiB file
//! LUN, and fails on any failed test in the families issue 3 requires.
//! Skipped (with a message) when `iscsi-test-cu` is not installed.
//!
//! CUnit's own summary is used rather than a text scorer: libiscsi logs
//! "[FAILED]" for commands a test *expects* to fail (iSCSIDataSnInvalid), and
//! that text is not a test failure.

use std::process::Command;

use target_engine::{Engine, EngineConfig};

const FAMILIES: &[&str] = &[
    "Inquiry",
    "Mandatory",
    "ModeSense6",
    "Prefetch10",
    "Prefetch16",
    "Read6",
    "Read10",
    "Read12",
    "Read16",
    "ReadCapacity10",
    "ReadCapacity16",
    "ReportSupportedOpcodes",
    "StartStopUnit",
    "TestUnitReady",
    "Verify10",
    "Verify12",
    "Verify16",
    "Write10",
    "Write12",
    "Write16",
    "WriteVerify10",
    "WriteVerify12",
    "WriteVerify16",
    "iSCSIcmdsn",
    "iSCSIdatasn",
    "iSCSIResiduals",
    "iSCSITMF",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libiscsi_conformance_families() {
    // Never skipped silently: the README's test command installs libiscsi-bin.
    assert!(
        Command::new("iscsi-test-cu").arg("--help").output().is_ok(),
        "iscsi-test-cu is not installed: apt-get install libiscsi-bin (./scripts/test.sh does)"
    );
    let dir = std::env::temp_dir().join(format!("portico-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("lun0.img");
    let iqn = "iqn.2026-11.test.portico:conformance";
    let toml = format!(
        r#"
[[volume]]
name = "c"
backend = "file"
path = "{}"
size = "1GiB"
block_size = 512
[[target]]
iqn = "{iqn}"
portals = ["127.0.0.1:0"]
luns = {{ 0 = "c" }}
"#,
        img.display()
    );
    let engine = Engine::new();
    engine.apply(EngineConfig::from_toml(&toml).unwrap()).await.unwrap();
    let addr = *engine.portals().await.values().next().unwrap();
    let tests: Vec<String> = FAMILIES.iter().map(|f| format!("ALL.{f}")).collect();
    let url = format!("iscsi://{addr}/{iqn}/0");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("iscsi-test-cu").args(["-d", "-t", &tests.join(","), &url]).output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    // "               tests     93     93     93      0        0"
    let summary = text
        .lines()
        .find(|l| l.trim_start().starts_with("tests "))
        .unwrap_or_else(|| panic!("no CUnit summary in:\n{text}"));
    let n: Vec<u64> = summary.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let (total, ran, failed) = (n[0], n[1], n[3]);
    println!("libiscsi families: {} of {total} tests passed, {failed} failed", n[2]);
    assert!(total > 50, "families missing from the run:\n{text}");
    assert_eq!(ran, total, "not every test ran:\n{text}");
    assert_eq!(failed, 0, "conformance failures:\n{text}");
}

//! Every spec in `examples/` applies to a real daemon and runs: containers on the
//! private containerd, VMs on KVM, the real-time ones on a daemon started with
//! `examples/host-profile-realtime.toml` and real cgroups. Each is removed again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::container::ContainerDaemon;
use roost_tests::daemon::write_file;
use roost_tests::sched::{containerd, skip_reason, Cleanup};
use roost_tests::vmm::{guest, kvm_available};
use roost_tests::{wait_until, workspace_root};
use std::time::Duration;

const IMG: &str = "docker.io/library/busybox:latest";
const T: Duration = Duration::from_secs(30);
const KERNEL: &str = "/var/lib/roost/guests/spin";

/// Apply `file` (with the example kernel path pointed at the test guest), wait for
/// it to run, run `check`, remove it. Returns false when it was skipped.
fn run_example(s: &ContainerDaemon, file: &str, check: impl FnOnce(&ContainerDaemon)) -> bool {
    let path = workspace_root().join("examples").join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    if text.contains(KERNEL) {
        if !kvm_available() {
            eprintln!("SKIPPED example {file}: needs /dev/kvm");
            return false;
        }
        text = text.replace(KERNEL, guest("spin").to_str().unwrap());
    }
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let name = doc["metadata"]["name"].as_str().unwrap().to_string();
    let f = write_file(s.d.dir.path(), file, &text);
    let out = s.d.cli(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.status.success(), "{file}: {out:?}");
    s.d.wait_phase(&name, "running", T);
    check(s);
    assert!(s.d.cli(&["rm", &name]).status.success(), "rm {name}");
    wait_until(
        &format!("{name} removed"),
        T,
        Duration::from_millis(100),
        || match s.d.api("GET", &format!("/v1/workloads/{name}"), None).0 {
            404 => Ok(()),
            c => Err(c.to_string()),
        },
    );
    true
}

#[test]
fn every_example_applies_and_runs() {
    // Every file in examples/ is covered below.
    let mut listed: Vec<String> = std::fs::read_dir(workspace_root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    listed.sort();
    let shared = [
        "container-bridge-ports.yaml",
        "container-dedicated.yaml",
        "container-shared.yaml",
        "vm-shared.yaml",
    ];
    let realtime = ["container-realtime.yaml", "vm-realtime.yaml"];
    let mut covered: Vec<String> = shared
        .iter()
        .chain(&realtime)
        .map(|s| s.to_string())
        .collect();
    covered.sort();
    assert_eq!(listed, covered, "a new example needs a line in this test");

    let pid = std::process::id();
    let bridge = format!("rtx{}", pid % 100_000);
    let subnet = format!("10.{}.{}.0/24", 150 + pid % 50, pid % 250);
    let Some(s) = ContainerDaemon::start(
        "examples",
        IMG,
        &["--bridge", &bridge, "--bridge-subnet", &subnet],
    ) else {
        return;
    };
    for f in shared {
        run_example(&s, f, |s| {
            if f == "container-bridge-ports.yaml" {
                let text = wait_until(
                    "the published port 8080 answers",
                    T,
                    Duration::from_millis(200),
                    || {
                        use std::io::Read;
                        let mut c = std::net::TcpStream::connect(("127.0.0.1", 8080))
                            .map_err(|e| e.to_string())?;
                        let mut t = String::new();
                        c.read_to_string(&mut t).map_err(|e| e.to_string())?;
                        if t.contains("hello") {
                            Ok(t)
                        } else {
                            Err(t)
                        }
                    },
                );
                assert!(text.contains("hello"));
                let _ = s;
            }
        });
    }
    s.finish(&[]);
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &bridge])
        .status();

    if let Some(why) = skip_reason(true) {
        eprintln!("SKIPPED the real-time examples: {why}");
        return;
    }
    let prefix = format!("roost-test-{pid}-ex");
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        containerd: containerd().map(|c| c.1),
    };
    let profile = workspace_root().join("examples/host-profile-realtime.toml");
    let Some(s) = ContainerDaemon::start(
        "examplesrt",
        IMG,
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--cgroup-prefix",
            &prefix,
        ],
    ) else {
        return;
    };
    for f in realtime {
        run_example(&s, f, |_| {});
    }
    s.finish(&[]);
}

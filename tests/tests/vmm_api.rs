//! `roost vmm --api-sock`: configure, start, pause/resume, stop, state and metrics, and
//! every kind of refused request, on real KVM. Each test checks the process exits and
//! removes its socket.
#![allow(clippy::unwrap_used)]

use roost_tests::vmm::{eventually, guest, kvm_available, ApiVmm};
use serde_json::Value;
use std::time::Duration;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn boot(v: &ApiVmm, kernel: &std::path::Path, vcpus: u32) {
    let body = format!(
        r#"{{"kernel_image_path": "{}", "boot_args": "console=ttyS0"}}"#,
        kernel.display()
    );
    assert_eq!(v.req("PUT", "/boot-source", Some(&body)).0, 204);
    let mc = format!(r#"{{"vcpu_count": {vcpus}, "mem_size_mib": 64}}"#);
    assert_eq!(v.req("PUT", "/machine-config", Some(&mc)).0, 204);
}

/// Wait for the process to exit by itself; returns its exit code.
fn exits(v: &mut ApiVmm) -> Option<i32> {
    let mut code = None;
    eventually(Duration::from_secs(20), || {
        code = v.child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some()
    });
    code
}

fn ticks(console: &str) -> usize {
    console.matches("spin: tick").count()
}

#[test]
fn spin_pauses_resumes_and_stops() {
    if !kvm_available() {
        return;
    }
    let mut v = ApiVmm::spawn();
    boot(&v, &guest("spin"), 2);
    assert_eq!(json(&v.req("GET", "/vm", None).1)["state"], "configured");
    assert_eq!(
        v.req("PUT", "/actions", Some(r#"{"action_type": "start"}"#))
            .0,
        204
    );
    assert_eq!(json(&v.req("GET", "/vm", None).1)["state"], "running");
    assert!(
        eventually(Duration::from_secs(30), || ticks(&v.console()) >= 1),
        "no tick from the spinning guest: {}",
        v.console()
    );

    assert_eq!(
        v.req("PUT", "/actions", Some(r#"{"action_type": "pause"}"#))
            .0,
        204
    );
    assert_eq!(json(&v.req("GET", "/vm", None).1)["state"], "paused");
    let paused_at = ticks(&v.console());
    // A hold, not a wait: a running guest ticks every 2^20 loop iterations (about
    // every 2 s here), so four seconds without a tick is what "paused" means.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(ticks(&v.console()), paused_at, "the guest ran while paused");

    assert_eq!(
        v.req("PUT", "/actions", Some(r#"{"action_type": "resume"}"#))
            .0,
        204
    );
    assert_eq!(json(&v.req("GET", "/vm", None).1)["state"], "running");
    assert!(
        eventually(Duration::from_secs(30), || ticks(&v.console()) > paused_at),
        "no tick after resume"
    );

    let m = json(&v.req("GET", "/metrics", None).1);
    assert!(m["uptime_ms"].as_u64().unwrap() > 1000, "{m}");
    assert!(m["exits"]["io_out"].as_u64().unwrap() > 10, "{m}");
    assert!(
        m["exits"]["interrupted"].as_u64().unwrap() >= 1,
        "pause kicked the vCPUs: {m}"
    );

    assert_eq!(
        v.req(
            "PUT",
            "/actions",
            Some(r#"{"action_type": "stop", "grace_ms": 5000}"#)
        )
        .0,
        204
    );
    assert_eq!(exits(&mut v), Some(4), "exit code 4 = stopped");
    let st = json(&std::fs::read_to_string(&v.state_file).unwrap());
    assert_eq!(st["status"], "stopped");
    assert!(!v.sock.exists(), "socket removed on exit");
}

#[test]
fn hello_and_fault_end_on_their_own_with_the_final_state_on_disk() {
    if !kvm_available() {
        return;
    }
    for (name, code, status) in [("hello", 0, "shutdown"), ("fault", 3, "crashed")] {
        let mut v = ApiVmm::spawn();
        boot(&v, &guest(name), 1);
        assert_eq!(
            v.req("PUT", "/actions", Some(r#"{"action_type": "start"}"#))
                .0,
            204
        );
        assert_eq!(exits(&mut v), Some(code), "{name}");
        let st = json(&std::fs::read_to_string(&v.state_file).unwrap());
        assert_eq!(st["status"], status, "{name}: {st}");
        if status == "crashed" {
            assert!(st["reason"].as_str().unwrap().contains("vCPU 0"), "{st}");
        } else {
            assert_eq!(v.console(), "Hello from a Roost guest\n");
        }
        assert!(
            st["metrics"]["exits"]["io_out"].as_u64().unwrap() > 0,
            "{st}"
        );
        assert!(!v.sock.exists(), "{name}: socket removed");
    }
}

#[test]
fn refused_requests_are_clear_and_create_no_vm() {
    if !kvm_available() {
        return;
    }
    let mut v = ApiVmm::spawn();
    let fault = |r: (u16, String)| {
        (
            r.0,
            json(&r.1)["fault_message"].as_str().unwrap().to_string(),
        )
    };

    let (s, m) = fault(v.req("GET", "/nope", None));
    assert_eq!(s, 404, "{m}");
    let (s, m) = fault(v.req("DELETE", "/vm", None));
    assert_eq!(s, 405, "{m}");
    let (s, m) = fault(v.req("PUT", "/machine-config", Some("{not json")));
    assert_eq!(s, 400, "{m}");
    let (s, m) = fault(v.req("PUT", "/machine-config", Some(r#"{"vcpus": 2}"#)));
    assert!(s == 400 && m.contains("vcpus"), "unknown field named: {m}");
    let (s, m) = fault(v.req("PUT", "/actions", Some(r#"{"action_type": "start"}"#)));
    assert!(s == 400 && m.contains("boot-source"), "{m}");
    let (s, m) = fault(v.req("PUT", "/actions", Some(r#"{"action_type": "pause"}"#)));
    assert!(s == 409 && m.contains("not started"), "{m}");
    let (s, m) = fault(v.req("PUT", "/actions", Some(r#"{"action_type": "reboot"}"#)));
    assert!(s == 400 && m.contains("reboot"), "{m}");
    let (s, m) = fault(v.req(
        "PUT",
        "/boot-source",
        Some(r#"{"kernel_image_path": "/nonexistent/vmlinux"}"#),
    ));
    assert!(s == 400 && m.contains("/nonexistent/vmlinux"), "{m}");
    let (s, m) = fault(v.req("PUT", "/machine-config", Some(r#"{"vcpu_count": 65}"#)));
    assert!(s == 400 && m.contains("vcpus 65"), "{m}");
    let (s, m) = fault(v.req("PUT", "/machine-config", Some(r#"{"vcpu_count": 0}"#)));
    assert!(s == 400 && m.contains("vcpus 0"), "{m}");
    let (s, m) = fault(v.req(
        "PUT",
        "/machine-config",
        Some(r#"{"mem_size_mib": 100000000}"#),
    ));
    assert!(s == 400 && m.contains("100000000 MiB"), "{m}");
    let (s, m) = fault(v.req("PUT", "/cpu-config", Some(r#"{"cpus": [4000]}"#)));
    assert!(s == 400 && m.contains("CPU 4000"), "{m}");
    let (s, m) = fault(v.req("PUT", "/cpu-config", Some(r#"{"rt_priority": 0}"#)));
    assert!(s == 400 && m.contains("rt priority 0"), "{m}");
    let notkernel = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(notkernel.path(), b"plain text").unwrap();
    let body = format!(
        r#"{{"kernel_image_path": "{}"}}"#,
        notkernel.path().display()
    );
    let (s, m) = fault(v.req("PUT", "/boot-source", Some(&body)));
    assert!(s == 400 && m.contains("not an ELF"), "{m}");

    // Nothing above created a VM: no vCPU thread exists, state is still unconfigured.
    assert_eq!(
        json(&v.req("GET", "/vm", None).1)["state"],
        "not-configured"
    );
    let tasks = std::fs::read_dir(format!("/proc/{}/task", v.child.id())).unwrap();
    for t in tasks {
        let comm = std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap();
        assert!(!comm.starts_with("vcpu"), "a vCPU thread exists");
    }

    // A configured VM refuses reconfiguration after start.
    boot(&v, &guest("spin"), 1);
    assert_eq!(
        v.req("PUT", "/actions", Some(r#"{"action_type": "start"}"#))
            .0,
        204
    );
    let (s, m) = fault(v.req("PUT", "/machine-config", Some(r#"{"vcpu_count": 2}"#)));
    assert!(s == 409 && m.contains("started"), "{m}");
    let (s, _) = fault(v.req("PUT", "/actions", Some(r#"{"action_type": "start"}"#)));
    assert_eq!(s, 409);

    // SIGTERM stops it cleanly: state written, socket gone, process gone.
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(v.child.id() as i32, libc::SIGTERM) };
    assert_eq!(exits(&mut v), Some(4));
    assert!(!v.sock.exists(), "socket removed");
    assert_eq!(
        json(&std::fs::read_to_string(&v.state_file).unwrap())["status"],
        "stopped"
    );
}

#[test]
fn a_second_monitor_on_a_live_socket_is_refused() {
    let v = ApiVmm::spawn();
    let out = std::process::Command::new(roost_tests::roost_bin())
        .arg("vmm")
        .arg("--api-sock")
        .arg(&v.sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("another monitor is serving"), "{e}");
    assert!(v.sock.exists(), "the first monitor's socket stays");
}

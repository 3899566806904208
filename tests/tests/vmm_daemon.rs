//! VM workloads through the real `roost host` daemon and CLI, on real KVM: `roost apply`
//! of a `vm` workload runs the hello guest, its line is in `roost logs`, `roost ps`
//! shows it ended with status `shutdown`; a faulting guest ends `crashed`; bad specs
//! fail `roost apply` with the field to fix; a VM survives a daemon SIGKILL and is
//! re-adopted through its API socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::roost_bin;
use roost_tests::vmm::{alive, eventually, guest, kvm_available};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

struct Host {
    dir: tempfile::TempDir,
    child: Option<Child>,
    env: Vec<(&'static str, &'static str)>,
}

impl Host {
    fn start() -> Self {
        Self::start_with_env(Vec::new())
    }

    /// A daemon whose monitors get `env` too (they inherit the daemon's).
    fn start_with_env(env: Vec<(&'static str, &'static str)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("roost-vm")
            .tempdir_in("/tmp")
            .unwrap();
        let mut h = Self {
            dir,
            child: None,
            env,
        };
        h.spawn();
        h
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(roost_bin())
            .arg("host")
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--socket")
            .arg(self.sock())
            .args([
                "--restart-backoff-ms",
                "100",
                "--restart-backoff-max-ms",
                "2000",
            ])
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let up = eventually(Duration::from_secs(30), || {
            self.cli(&["ps"]).status.success()
        });
        assert!(up, "roost host did not come up; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(roost_bin())
            .args(args)
            .env("ROOST_SOCKET", self.sock())
            .output()
            .unwrap()
    }

    fn apply(&self, name: &str, vm: Value) -> Output {
        let doc = json!({
            "apiVersion": "roost.dev/v1",
            "kind": "Workload",
            "metadata": {"name": name},
            "spec": {"driver": "vm", "vm": vm, "restartPolicy": "never"}
        });
        let f = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&f, doc.to_string()).unwrap();
        self.cli(&["apply", "-f", f.to_str().unwrap()])
    }

    fn record(&self, name: &str) -> Value {
        let out = self.cli(&["ps", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .find(|w| w.pointer("/workload/metadata/name") == Some(&json!(name)))
                    .cloned()
            })
            .unwrap_or(Value::Null)
    }

    fn wait_exit(&self, name: &str) -> Value {
        let mut last = Value::Null;
        let ok = eventually(T, || {
            last = self.record(name);
            last.pointer("/status/lastExit/reason").is_some()
        });
        assert!(
            ok,
            "{name} never ended; last record {last}\nlog:\n{}",
            self.log()
        );
        last
    }

    /// `roost vmm` processes started by this daemon (their cwd is under our dir).
    fn monitors(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cwd.starts_with(self.dir.path()) && cmd.windows(5).any(|w| w == b"\0vmm\0") {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        for pid in self.monitors() {
            // SAFETY: killing a monitor this test's daemon started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

fn sockets_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "vmm.sock") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn apply_hello_runs_logs_its_line_and_ps_shows_shutdown() {
    if !kvm_available() {
        return;
    }
    let h = Host::start();
    let g = guest("hello");
    let out = h.apply("hello", json!({"kernel": g, "memoryMiB": 64}));
    assert!(out.status.success(), "apply: {out:?}\nlog:\n{}", h.log());
    let rec = h.wait_exit("hello");
    assert_eq!(rec["status"]["lastExit"]["reason"], "shutdown", "{rec}");
    let ps = String::from_utf8_lossy(&h.cli(&["ps"]).stdout).into_owned();
    let row = ps.lines().find(|l| l.starts_with("hello ")).unwrap_or("");
    assert!(row.contains("shutdown"), "roost ps:\n{ps}");
    let logs = h.cli(&["logs", "hello"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        text.contains("Hello from a Roost guest"),
        "roost logs: {text:?}"
    );
    assert!(
        eventually(Duration::from_secs(10), || h.monitors().is_empty()),
        "the monitor process is gone"
    );
    assert!(sockets_under(h.dir.path()).is_empty(), "no API socket left");
}

#[test]
fn a_vm_with_disks_reads_and_writes_them_through_the_daemon() {
    if !kvm_available() {
        return;
    }
    let h = Host::start();
    let img = h.dir.path().join("disk.img");
    let data: Vec<u8> = (0..32 * 512u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&img, &data).unwrap();
    let ro = h.dir.path().join("ro.img");
    std::fs::write(&ro, &data).unwrap();
    // The root disk is first on the bus, so the guest (which drives the first
    // virtio-blk device) gets the read-only one.
    let out = h.apply(
        "disks",
        json!({"kernel": guest("blk"), "memoryMiB": 64, "disks": [
            {"path": img, "rateLimit": {"opsPerSec": 1000}},
            {"path": ro, "readOnly": true, "root": true},
        ]}),
    );
    assert!(out.status.success(), "apply: {out:?}\nlog:\n{}", h.log());
    let rec = h.wait_exit("disks");
    assert_eq!(rec["status"]["lastExit"]["reason"], "shutdown", "{rec}");
    let text = String::from_utf8_lossy(&h.cli(&["logs", "disks"]).stdout).into_owned();
    assert!(text.contains("blk: id disk1\n"), "{text}");
    assert!(text.contains("blk: write 1\n"), "read-only: {text}");
    assert_eq!(
        std::fs::read(&ro).unwrap(),
        data,
        "the read-only image is untouched"
    );
}

#[test]
fn a_monitor_killed_by_its_seccomp_filter_is_reported_as_such() {
    if !kvm_available() {
        return;
    }
    // Test builds of the monitor make a forbidden call on the vCPU thread when told to.
    let h = Host::start_with_env(vec![("ROOST_VMM_SECCOMP_TRIP", "vcpu")]);
    let out = h.apply("trip", json!({"kernel": guest("hello"), "memoryMiB": 64}));
    assert!(out.status.success(), "apply: {out:?}\nlog:\n{}", h.log());
    let rec = h.wait_exit("trip");
    let exit = &rec["status"]["lastExit"];
    // The vCPU thread trips as the VM starts: the monitor dies during (or right after)
    // the daemon's `start` request, so the instance ends `start-failed` or `killed`.
    assert!(
        exit["reason"] == "killed" || exit["reason"] == "start-failed",
        "{rec}"
    );
    let msg = exit["message"].as_str().unwrap_or("");
    assert!(msg.contains("seccomp") && msg.contains("SIGSYS"), "{rec}");
    let events = String::from_utf8_lossy(&h.cli(&["events", "-o", "json"]).stdout).into_owned();
    assert!(
        events.contains("seccomp"),
        "an event names the seccomp kill: {events}"
    );
}

#[test]
fn a_faulting_guest_ends_crashed_with_the_reason() {
    if !kvm_available() {
        return;
    }
    let h = Host::start();
    let out = h.apply("boom", json!({"kernel": guest("fault")}));
    assert!(out.status.success(), "apply: {out:?}");
    let rec = h.wait_exit("boom");
    assert_eq!(rec["status"]["lastExit"]["reason"], "crashed", "{rec}");
    let msg = rec["status"]["lastExit"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("vCPU 0"), "{rec}");
}

#[test]
fn bad_vm_specs_fail_apply_with_the_field_to_fix() {
    let h = Host::start();
    let text = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(text.path(), "not a kernel").unwrap();
    let hello = guest("hello");
    let cases = [
        (json!({"kernel": "/nonexistent/vmlinux"}), "spec.vm.kernel"),
        (json!({"kernel": text.path()}), "spec.vm.kernel"),
        (json!({"kernel": hello, "vcpus": 65}), "vcpus"),
        (json!({"kernel": hello, "vcpus": 0}), "vcpus"),
        (
            json!({"kernel": hello, "memoryMiB": 100_000_000u64}),
            "memory",
        ),
        (
            json!({"kernel": hello, "disks": [{"path": "/nonexistent/disk.img"}]}),
            "spec.vm.disks[0].path",
        ),
        (
            json!({"kernel": hello, "disks": [{"path": "rel.img", "root": true}, {"path": "/x", "root": true}]}),
            "spec.vm.disks[1].root",
        ),
    ];
    for (i, (vm, field)) in cases.into_iter().enumerate() {
        let name = format!("bad{i}");
        let out = h.apply(&name, vm.clone());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{vm}: apply should fail");
        assert!(
            err.contains(field),
            "{vm}: the error should name {field}: {err}"
        );
        assert!(h.monitors().is_empty(), "{vm}: no monitor started");
    }
    if !kvm_available() {
        eprintln!(
            "note: without KVM the driver reports it unavailable, which the checks above accept"
        );
    }
}

#[test]
fn a_running_vm_survives_a_daemon_sigkill_and_is_readopted() {
    if !kvm_available() {
        return;
    }
    let mut h = Host::start();
    let out = h.apply(
        "spinner",
        json!({"kernel": guest("spin"), "vcpus": 1, "memoryMiB": 32}),
    );
    assert!(out.status.success(), "apply: {out:?}");
    let mut pids = Vec::new();
    assert!(
        eventually(T, || {
            pids = h.monitors();
            pids.len() == 1
        }),
        "one monitor runs; log:\n{}",
        h.log()
    );
    assert!(eventually(T, || {
        String::from_utf8_lossy(&h.cli(&["logs", "spinner"]).stdout).contains("spin: tick")
    }));
    h.kill9();
    assert!(alive(pids[0]), "the VM outlives the daemon");
    h.spawn();
    let rec = {
        let mut r = Value::Null;
        eventually(T, || {
            r = h.record("spinner");
            r["status"]["phase"] == "running"
        });
        r
    };
    assert_eq!(
        rec["status"]["phase"],
        "running",
        "{rec}\nlog:\n{}",
        h.log()
    );
    assert_eq!(
        h.monitors(),
        pids,
        "the same monitor was re-adopted, no second one"
    );
    let out = h.cli(&["rm", "spinner"]);
    assert!(out.status.success(), "rm: {out:?}");
    assert!(eventually(T, || !alive(pids[0])), "rm ends the monitor");
    assert!(sockets_under(h.dir.path()).is_empty(), "no API socket left");
}

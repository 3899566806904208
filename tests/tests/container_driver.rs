//! The daemon's container driver against containerd: recovery after containerd is
//! SIGKILLed and restarted (the container keeps running and its exit is still seen),
//! OOM reported, cpuset read back from the cgroup, real-time policy applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_container::cgroup::{policy_of, CgroupV1};
use roost_host::driver::{Driver, InstanceId, Placement, StartRequest, TaskState};
use roost_host::drivers::container::ContainerDriver;
use roost_host::spec::{ContainerSpec, DriverKind, Realtime, RtPolicy, WorkloadSpec};
use roost_tests::container::{import_busybox, socket, Ns, OwnContainerd};
use std::path::Path;
use std::time::Duration;

const IMG: &str = "roost.test/busybox:1";

fn workload(cmd: &[&str]) -> WorkloadSpec {
    WorkloadSpec {
        driver: DriverKind::Container,
        container: Some(ContainerSpec {
            image: IMG.into(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        vm: None,
        mock: None,
        resources: Default::default(),
        restart_policy: Default::default(),
        stop_grace_seconds: None,
    }
}

fn start_req(
    name: &str,
    n: u64,
    spec: WorkloadSpec,
    placement: Placement,
    dir: &Path,
) -> StartRequest {
    StartRequest {
        id: InstanceId {
            workload: name.into(),
            instance: n,
        },
        spec,
        placement,
        log_path: dir.join(format!("{name}-{n}.log")),
        run_dir: dir.to_path_buf(),
    }
}

fn cgroup(name: &str) -> Placement {
    Placement {
        cgroup_path: Some(format!("/roost-test/{name}")),
        ..Default::default()
    }
}

#[tokio::test]
async fn containerd_sigkill_and_restart_keeps_the_container_and_its_exit() {
    if socket().is_none() {
        return;
    }
    let Some(ctd) = OwnContainerd::start() else {
        return;
    };
    let ns = Ns::new(&ctd.socket, "recover").await;
    import_busybox(&ns.client, IMG).await;
    let t = tempfile::tempdir().unwrap();
    let d1 = ContainerDriver::with_client(ns.client.clone(), CgroupV1::default());
    let spec = workload(&["sh", "-c", "echo up; sleep 3; echo down; exit 7"]);
    let h = d1
        .start(&start_req("rec", 1, spec, cgroup("rec-1"), t.path()))
        .await
        .unwrap();
    drop(d1);
    ctd.kill9();
    ctd.restart();
    // A new client (as a restarted Roost daemon would have) finds and re-adopts it.
    let client = roost_container::Client::connect_in(&ctd.socket, &ns.name)
        .await
        .unwrap();
    let d2 = ContainerDriver::with_client(client.clone(), CgroupV1::default());
    let found = d2.recover("rec", Some(&h)).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, h.id);
    assert_eq!(d2.inspect(&found[0]).await.unwrap(), TaskState::Running);
    let exit = d2.wait(&found[0]).await.unwrap();
    assert_eq!((exit.code, exit.reason.as_str()), (Some(7), "exited"));
    let log = std::fs::read_to_string(t.path().join("rec-1.log")).unwrap();
    assert_eq!(log, "up\ndown\n");
    d2.destroy(&found[0]).await.unwrap();
    assert!(d2.recover("rec", None).await.unwrap().is_empty());
    let ns = Ns { client, ..ns };
    ns.finish().await;
}

#[tokio::test]
async fn memory_limit_overrun_is_reported_as_oom() {
    let Some(sock) = socket() else { return };
    let ns = Ns::new(&sock, "oom").await;
    import_busybox(&ns.client, IMG).await;
    let t = tempfile::tempdir().unwrap();
    let d = ContainerDriver::with_client(ns.client.clone(), CgroupV1::default());
    let mut spec = workload(&["sh", "-c", "x=$(yes | head -c 200000000); echo survived"]);
    spec.resources.memory_mib = Some(16);
    let h = d
        .start(&start_req("oom", 1, spec, cgroup("oom-1"), t.path()))
        .await
        .unwrap();
    let exit = d.wait(&h).await.unwrap();
    assert_eq!(exit.reason, "oom-killed", "{exit:?}");
    assert!(!exit.success());
    d.destroy(&h).await.unwrap();
    ns.finish().await;
}

#[tokio::test]
async fn cpuset_is_read_back_and_realtime_applied() {
    let Some(sock) = socket() else { return };
    let ns = Ns::new(&sock, "cpuset").await;
    import_busybox(&ns.client, IMG).await;
    let t = tempfile::tempdir().unwrap();
    let cg = CgroupV1::default();
    let d = ContainerDriver::with_client(ns.client.clone(), cg.clone());
    let last_cpu = std::thread::available_parallelism()
        .map(|n| n.get() as u32 - 1)
        .unwrap_or(0);
    let placement = Placement {
        cpus: vec![last_cpu],
        mems: vec![0],
        ..cgroup("pin-1")
    };
    let h = d
        .start(&start_req(
            "pin",
            1,
            workload(&["sleep", "30"]),
            placement,
            t.path(),
        ))
        .await
        .unwrap();
    let path = h.data["cgroup"].as_str().unwrap().to_string();
    assert_eq!(path, "/roost-test/pin-1/pin-1");
    assert_eq!(cg.cpuset_cpus(&path).unwrap(), last_cpu.to_string());
    d.destroy(&h).await.unwrap();

    // Real-time: FIFO 50 on the granted core with an rt budget.
    let mut spec = workload(&["sleep", "30"]);
    spec.resources.realtime = Some(Realtime {
        policy: RtPolicy::Fifo,
        priority: 50,
    });
    let placement = Placement {
        cpus: vec![last_cpu],
        realtime: Some(Realtime {
            policy: RtPolicy::Fifo,
            priority: 50,
        }),
        rt_runtime_us: Some(20_000),
        ..cgroup("rt-1")
    };
    let h = d
        .start(&start_req("rt", 1, spec, placement, t.path()))
        .await
        .unwrap();
    let pids = ns.client.pids("rt-1").await.unwrap();
    assert!(!pids.is_empty());
    for p in pids {
        assert_eq!(policy_of(p), Some(libc::SCHED_FIFO), "pid {p}");
    }
    let rt = std::fs::read_to_string("/sys/fs/cgroup/cpu/roost-test/rt-1/rt-1/cpu.rt_runtime_us")
        .unwrap();
    assert_eq!(rt.trim(), "20000");
    d.stop(&h, Duration::from_secs(1)).await.unwrap();
    d.destroy(&h).await.unwrap();
    ns.finish().await;
}

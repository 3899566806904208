//! The scheduler and the container driver together on real containerd and cgroups:
//! the daemon's admission (`SchedAdmission`, enforcing in a private cgroup tree) places
//! a dedicated and a real-time container, and cgroupfs and /proc show exactly what was
//! granted. Skipped without a containerd socket (`make test` starts one) or without
//! root and cgroup v1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_container::cgroup::CgroupV1;
use roost_host::admission::Admission;
use roost_host::driver::{Driver, InstanceId, StartRequest};
use roost_host::drivers::container::ContainerDriver;
use roost_host::sched::SchedAdmission;
use roost_host::spec::{ContainerSpec, CpuPolicy, DriverKind, Realtime, RtPolicy, WorkloadSpec};
use roost_host_config::{HostPlan, Profile, Topology};
use roost_scheduler::cgroup::v1::V1;
use roost_scheduler::cgroup::CgroupBackend;
use roost_scheduler::rt;
use roost_tests::container::{import_busybox, socket, Ns};
use roost_tests::sched::{cgroup_exists, skip_reason};
use std::path::Path;
use std::time::Duration;

const IMG: &str = "roost.test/busybox:1";

fn spec(resources: roost_host::spec::Resources) -> WorkloadSpec {
    WorkloadSpec {
        driver: DriverKind::Container,
        container: Some(ContainerSpec {
            image: IMG.into(),
            command: vec!["sleep".into(), "30".into()],
            ..Default::default()
        }),
        vm: None,
        mock: None,
        resources,
        restart_policy: Default::default(),
        stop_grace_seconds: None,
    }
}

fn req(
    name: &str,
    spec: WorkloadSpec,
    p: roost_host::driver::Placement,
    dir: &Path,
) -> StartRequest {
    StartRequest {
        id: InstanceId {
            workload: name.into(),
            instance: 1,
        },
        spec,
        placement: p,
        log_path: dir.join(format!("{name}.log")),
        run_dir: dir.to_path_buf(),
    }
}

#[tokio::test]
async fn dedicated_realtime_and_shared_containers_get_what_was_granted() {
    let Some(sock) = socket() else {
        eprintln!("SKIPPED: needs a containerd socket (ROOST_TEST_CONTAINERD_SOCKET; make test starts one)");
        return;
    };
    if let Some(why) = skip_reason(true) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let ns = Ns::new(&sock, "sched").await;
    import_busybox(&ns.client, IMG).await;
    let t = tempfile::tempdir().unwrap();
    let d = ContainerDriver::with_client(ns.client.clone(), CgroupV1::default());

    // Dedicated: core 0 platform, core 1 shared; the container gets core 1 to itself.
    let dprefix = format!("roost-test-{}-ctrded", std::process::id());
    let dv1 = V1::discover(Path::new("/proc"), &dprefix).unwrap();
    let _dguard = Teardown(dv1.clone());
    let dplan = HostPlan::resolve(
        &Profile::parse("[cpu]\nplatform = \"0\"\n", "test").unwrap(),
        Topology::this_host().unwrap(),
        "test",
    )
    .unwrap();
    let mut dadm = SchedAdmission::with_cgroups(dplan, Box::new(dv1.clone()), &dprefix).unwrap();
    let ded_spec = spec(roost_host::spec::Resources {
        cores: Some(1),
        cpu_policy: CpuPolicy::Dedicated,
        ..Default::default()
    });
    let p = dadm.admit("db", &ded_spec).unwrap();
    assert!(p.exclusive);
    assert_eq!(p.cpus.len(), 1);
    let h = d
        .start(&req("db", ded_spec, p.clone(), t.path()))
        .await
        .unwrap();
    let cg = h.data["cgroup"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    assert!(cg.starts_with(&format!("{dprefix}/dedicated/db/")), "{cg}");
    assert_eq!(
        dv1.read(&cg).unwrap().cpus.to_vec(),
        p.cpus,
        "container cpuset"
    );
    for pid in ns.client.pids("db-1").await.unwrap() {
        let s = rt::read_thread(Path::new("/proc"), pid, pid).unwrap();
        assert_eq!(s.cpus_allowed.to_vec(), p.cpus, "pid {pid}");
    }
    // The dedicated core left the shared pool.
    let shared = dv1.read(&format!("{dprefix}/shared")).unwrap().cpus;
    assert!(
        p.cpus.iter().all(|c| !shared.contains(*c)),
        "shared {shared}"
    );
    d.stop(&h, Duration::from_secs(1)).await.unwrap();
    d.destroy(&h).await.unwrap();
    dadm.release("db");
    assert!(!cgroup_exists(&format!("{dprefix}/dedicated/db")));

    let prefix = format!("roost-test-{}-ctr", std::process::id());
    let profile = Profile::parse(
        "[cpu]\nplatform = \"0\"\nisolated = \"1\"\nshare_platform = true\n\
         [realtime]\nbudget_us = 100000\nworkload_budget_us = 40000\n",
        "test",
    )
    .unwrap();
    let plan = HostPlan::resolve(&profile, Topology::this_host().unwrap(), "test").unwrap();
    let v1 = V1::discover(Path::new("/proc"), &prefix).unwrap();
    let _guard = Teardown(v1.clone());
    let mut adm = SchedAdmission::with_cgroups(plan, Box::new(v1.clone()), &prefix).unwrap();

    // Real-time: isolated core 1, SCHED_FIFO 60, a 40 ms budget in roost/rt/<w>.
    let rt_spec = spec(roost_host::spec::Resources {
        realtime: Some(Realtime {
            policy: RtPolicy::Fifo,
            priority: 60,
        }),
        memory_mib: Some(64),
        ..Default::default()
    });
    let p = adm.admit("ctl", &rt_spec).unwrap();
    assert_eq!(p.cpus, vec![1]);
    assert_eq!(p.rt_runtime_us, Some(40_000));
    let h = d
        .start(&req("ctl", rt_spec, p.clone(), t.path()))
        .await
        .unwrap();
    let cg = h.data["cgroup"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    assert!(cg.starts_with(&format!("{prefix}/rt/ctl/")), "{cg}");
    let st = v1.read(&cg).unwrap();
    assert_eq!(st.cpus.to_vec(), p.cpus, "container cpuset");
    let pids = ns.client.pids("ctl-1").await.unwrap();
    assert!(!pids.is_empty());
    for pid in pids {
        let s = rt::read_thread(Path::new("/proc"), pid, pid).unwrap();
        assert_eq!(s.policy_name(), "SCHED_FIFO", "pid {pid}");
        assert_eq!(s.rt_priority, 60, "pid {pid}");
        assert_eq!(s.cpus_allowed.to_vec(), p.cpus, "pid {pid}");
    }
    let wl = format!("{prefix}/rt/ctl");
    assert_eq!(v1.read(&wl).unwrap().rt_runtime_us, Some(40_000));
    d.destroy(&h).await.unwrap();
    adm.release("ctl");
    assert!(!cgroup_exists(&wl), "{wl} left behind");
    assert_eq!(
        v1.read(&format!("{prefix}/rt")).unwrap().rt_runtime_us,
        Some(0),
        "budget torn down"
    );

    // Shared: 250 millicores of the shared pool (core 0 here).
    let sh_spec = spec(roost_host::spec::Resources {
        cpu: Some("250m".into()),
        cpu_policy: CpuPolicy::Shared,
        ..Default::default()
    });
    let p = adm.admit("web", &sh_spec).unwrap();
    let h = d
        .start(&req("web", sh_spec, p.clone(), t.path()))
        .await
        .unwrap();
    let cg = h.data["cgroup"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let st = v1.read(&cg).unwrap();
    assert_eq!(st.cpus.to_vec(), p.cpus, "shared container cpuset");
    assert_eq!(
        v1.read(&format!("{prefix}/shared/web"))
            .unwrap()
            .cpu_quota_us,
        Some(25_000)
    );
    d.stop(&h, Duration::from_secs(1)).await.unwrap();
    d.destroy(&h).await.unwrap();
    adm.release("web");
    ns.finish().await;
}

/// Removes a private tree however the test ends.
struct Teardown(V1);
impl Drop for Teardown {
    fn drop(&mut self) {
        if let Err(e) = self.0.teardown() {
            eprintln!("cleanup of {} failed: {e}", self.0.prefix());
        }
    }
}

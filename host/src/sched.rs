//! The daemon's admission backed by Roost's real scheduler: a spec's `resources` become
//! a scheduler request, the allocation becomes the [`Placement`] drivers enforce, and
//! (when enforcement is on) the workload's cgroup in Roost's tree is created before
//! the driver starts it and removed when it is released.

use crate::admission::{parse_millicores, Admission, HostCapacity, Refusal, Setup};
use crate::driver::Placement;
use crate::drivers::process::{CgroupAttach, SpawnError};
use crate::pmqos::PmQos;
use crate::spec::{self, CpuPolicy, WorkloadSpec};
use roost_host_config::{CpuSet, HostPlan, Profile, ProfileError, Topology, TopologyError};
use roost_scheduler::cgroup::{CgroupBackend, CgroupError, Cgroups, Tree, WorkloadGroup};
use roost_scheduler::{Allocation, Class, CpuRequest, Request, RtGrant, RtPolicy, Scheduler};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Memory a VM's monitor needs beside its guest's (text, page tables, vCPU stacks,
/// device buffers): a VM's request and its cgroup's limit are guest memory plus this.
/// Measured overhead is ~2 MiB (`make bench-vmm`); the rest is headroom.
pub const VM_OVERHEAD_MIB: u64 = 32;

/// Setting the scheduler up failed (a config error: the daemon exits 64).
#[derive(Debug, thiserror::Error)]
pub enum SchedSetupError {
    /// The machine could not be read.
    #[error("cannot discover the host's topology")]
    Topology(#[from] TopologyError),
    /// The host profile is unreadable or unusable.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Roost's cgroup tree could not be created.
    #[error("cannot set up Roost's cgroup tree")]
    Cgroup(#[from] CgroupError),
}

/// Whether to enforce placements in cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// Bookkeeping only (tests, unprivileged runs).
    Off,
    /// Roost's tree under `prefix` in each controller; fail if cgroups are unusable.
    Cgroups {
        /// Directory name, `roost` in production.
        prefix: String,
    },
    /// Like `Cgroups`, but fall back to `Off` with a warning when not root or when the
    /// controllers are missing.
    Auto {
        /// Directory name.
        prefix: String,
    },
}

/// [`Admission`] through [`Scheduler`].
#[derive(Debug)]
pub struct SchedAdmission {
    sched: Scheduler,
    cgroups: Option<Arc<dyn CgroupBackend>>,
    /// Roost's cgroup directory name, for `Placement::cgroup_path`.
    prefix: String,
    /// Held while real-time workloads are admitted (when enforcing).
    pm_qos: Option<PmQos>,
    /// The shared pool's CPUs as last written to cgroupfs. Its lock orders a shared
    /// workload's deferred cgroup setup against resizes of the pool.
    shared_pool: Arc<Mutex<CpuSet>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SchedAdmission {
    /// Bookkeeping only.
    pub fn new(plan: HostPlan) -> Self {
        let sched = Scheduler::new(plan);
        let shared_pool = Arc::new(Mutex::new(sched.shared_cpus()));
        Self {
            sched,
            cgroups: None,
            prefix: "roost".to_string(),
            pm_qos: None,
            shared_pool,
        }
    }

    /// Enforcing through `backend`, whose tree is named `prefix`; creates Roost's
    /// top-level tree now.
    pub fn with_cgroups(
        plan: HostPlan,
        backend: Box<dyn CgroupBackend>,
        prefix: &str,
    ) -> Result<Self, CgroupError> {
        let sched = Scheduler::new(plan);
        backend.ensure_tree(&Tree::from_plan(sched.plan(), &sched.shared_cpus()))?;
        let shared_pool = Arc::new(Mutex::new(sched.shared_cpus()));
        Ok(Self {
            sched,
            cgroups: Some(Arc::from(backend)),
            prefix: prefix.to_string(),
            pm_qos: Some(PmQos::new("/dev/cpu_dma_latency")),
            shared_pool,
        })
    }

    /// This machine with the profile at `profile` (or the built-in default: core 0
    /// platform, the rest shared).
    pub fn for_this_host(
        profile: Option<&Path>,
        enforcement: Enforcement,
    ) -> Result<Self, SchedSetupError> {
        let plan = load_plan(profile)?;
        match enforcement {
            Enforcement::Off => Ok(Self::new(plan)),
            Enforcement::Cgroups { prefix } => {
                let cg = Cgroups::detect(Path::new("/proc"), &prefix)?;
                Ok(Self::with_cgroups(plan, Box::new(cg), &prefix)?)
            }
            Enforcement::Auto { prefix } => {
                // SAFETY: geteuid has no preconditions and cannot fail.
                let root = unsafe { libc::geteuid() } == 0;
                let cg = if root {
                    Cgroups::detect(Path::new("/proc"), &prefix)
                        .and_then(|cg| Self::with_cgroups(plan.clone(), Box::new(cg), &prefix))
                } else {
                    Err(CgroupError::NoController {
                        controller: "cpu",
                        mountinfo: "(not root: cgroups need root)".into(),
                    })
                };
                match cg {
                    Ok(s) => Ok(s),
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            "placements are not enforced in cgroups; run as root on a host \
                             with cpu, cpuset and memory controllers"
                        );
                        Ok(Self::new(plan))
                    }
                }
            }
        }
    }

    /// Move process `pid` (the daemon itself, containerd, shims) onto the platform
    /// cores: `roost/platform`. A no-op when not enforcing.
    pub fn join_platform(&self, pid: u32) -> Result<(), CgroupError> {
        match &self.cgroups {
            Some(cg) => cg.attach(&format!("{}/platform", self.prefix), pid, false),
            None => Ok(()),
        }
    }

    /// What drivers use to move the processes they start into their workloads'
    /// cgroups; `None` when not enforcing.
    pub fn attacher(&self) -> Option<Arc<dyn CgroupAttach>> {
        self.cgroups.as_ref().map(|cg| {
            Arc::new(Attacher {
                backend: Arc::clone(cg),
                home: format!("{}/platform", self.prefix),
                spawner: std::sync::OnceLock::new(),
            }) as Arc<dyn CgroupAttach>
        })
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// Whether placements are enforced in cgroups.
    pub fn enforcing(&self) -> bool {
        self.cgroups.is_some()
    }

    /// Hold the CPU wake-up latency request exactly while a real-time workload is
    /// admitted.
    fn sync_pm_qos(&mut self) {
        let want = self
            .sched
            .allocations()
            .iter()
            .any(|(_, a)| a.class == Class::Rt);
        if let Some(q) = &mut self.pm_qos {
            if let Err(e) = q.set(want) {
                tracing::warn!(error = %e, "cannot hold /dev/cpu_dma_latency; real-time wake-ups may suffer from deep CPU idle states");
                // Do not retry on every admission.
                self.pm_qos = None;
            }
        }
    }

    fn shared_names(&self) -> Vec<String> {
        self.sched
            .allocations()
            .iter()
            .filter(|(_, a)| a.class == Class::Shared)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Create the workload's cgroup and resize the shared pool after a dedicated
    /// change.
    fn enforce(&self, name: &str, a: &Allocation) -> Result<(), CgroupError> {
        let Some(cg) = &self.cgroups else {
            return Ok(());
        };
        let mut pool = lock(&self.shared_pool);
        let shared_now = self.sched.shared_cpus();
        if a.class == Class::Dedicated {
            *pool = shared_now.clone();
            cg.set_shared_cpus(&shared_now, &self.shared_names())?;
        }
        cg.apply(&WorkloadGroup::new(name, a, &shared_now))?;
        Ok(())
    }

    fn placement(&self, name: &str, a: &Allocation) -> Placement {
        placement_of(name, a, &self.sched.shared_cpus().to_vec(), self.prefix())
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// [`CgroupAttach`] over the scheduler's cgroup backend.
///
/// Processes are started by one spawner thread that enters the workload's cgroup
/// itself, starts the process (born there), and goes back to the platform cgroup
/// (`home`). Moving the calling thread skips the process-wide lock a whole-process move
/// takes, whose RCU wait cost 13-90 ms now and then on this host (`make bench-api`).
#[derive(Debug)]
struct Attacher {
    backend: Arc<dyn CgroupBackend>,
    home: String,
    spawner: std::sync::OnceLock<Option<std::sync::mpsc::Sender<SpawnJob>>>,
}

type SpawnJob = (
    String,
    std::process::Command,
    std::sync::mpsc::SyncSender<Result<std::process::Child, SpawnError>>,
);

impl Attacher {
    fn spawner(&self) -> Option<&std::sync::mpsc::Sender<SpawnJob>> {
        self.spawner
            .get_or_init(|| {
                let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
                let backend = Arc::clone(&self.backend);
                let home = self.home.clone();
                let started = std::thread::Builder::new()
                    .name("roost-spawner".into())
                    .spawn(move || {
                        for (path, cmd, reply) in rx {
                            let (r, moved) = spawn_from_inside(&*backend, &path, cmd);
                            let _ = reply.send(r);
                            if moved {
                                if let Err(e) = backend.enter_self(&home) {
                                    tracing::warn!(cgroup = %home, error = %chain(&e), "the spawner thread cannot go back to the platform cgroup");
                                }
                            }
                        }
                    });
                match started {
                    Ok(_) => Some(tx),
                    Err(e) => {
                        tracing::warn!(error = %e, "no spawner thread; processes are moved after they start");
                        None
                    }
                }
            })
            .as_ref()
    }
}

/// On the spawner thread: enter `path` and start `cmd` there. The second value says
/// whether the thread must go back home (done after the caller has its answer).
fn spawn_from_inside(
    backend: &dyn CgroupBackend,
    path: &str,
    mut cmd: std::process::Command,
) -> (Result<std::process::Child, SpawnError>, bool) {
    match backend.enter_self(path) {
        Ok(true) => (cmd.spawn().map_err(SpawnError::Spawn), true),
        // This backend cannot move a lone thread: start, then move the process.
        Ok(false) => (spawn_then_attach(backend, path, cmd), false),
        Err(e) => (Err(SpawnError::Cgroup(None, chain(&e))), true),
    }
}

/// Start `cmd` where the caller is, then move the process into `path`.
fn spawn_then_attach(
    backend: &dyn CgroupBackend,
    path: &str,
    cmd: std::process::Command,
) -> Result<std::process::Child, SpawnError> {
    crate::drivers::process::spawn_then_attach(cmd, |pid| {
        backend.attach(path, pid, false).map_err(|e| chain(&e))
    })
}

impl CgroupAttach for Attacher {
    fn attach(&self, cgroup_path: &str, pid: u32) -> Result<(), String> {
        self.backend
            .attach(cgroup_path, pid, false)
            .map_err(|e| chain(&e))
    }

    fn to_platform(&self, id: u32, thread: bool) -> Result<(), String> {
        self.backend
            .attach(&self.home, id, thread)
            .map_err(|e| chain(&e))
    }

    fn spawn_in(
        &self,
        cgroup_path: &str,
        cmd: std::process::Command,
    ) -> Result<std::process::Child, SpawnError> {
        // Without the spawner thread, the calling (runtime) thread must not wander
        // into workload cgroups: start, then move.
        let Some(tx) = self.spawner() else {
            return spawn_then_attach(&*self.backend, cgroup_path, cmd);
        };
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        if let Err(std::sync::mpsc::SendError((_, cmd, _))) =
            tx.send((cgroup_path.to_string(), cmd, reply))
        {
            // The spawner thread is gone (it does not panic; belt and braces).
            return spawn_then_attach(&*self.backend, cgroup_path, cmd);
        }
        rx.recv().unwrap_or_else(|_| {
            Err(SpawnError::Spawn(std::io::Error::other(
                "the spawner thread ended without an answer",
            )))
        })
    }
}

/// Load the host plan: a profile file, or the built-in default.
pub fn load_plan(profile: Option<&Path>) -> Result<HostPlan, SchedSetupError> {
    let topo = Topology::this_host()?;
    Ok(match profile {
        Some(p) => HostPlan::resolve(&Profile::load(p)?, topo, &p.display().to_string())?,
        None => HostPlan::default_for(topo)?,
    })
}

fn rt_policy(p: spec::RtPolicy) -> RtPolicy {
    match p {
        spec::RtPolicy::Fifo => RtPolicy::Fifo,
        spec::RtPolicy::Rr => RtPolicy::Rr,
    }
}

fn spec_policy(p: RtPolicy) -> spec::RtPolicy {
    match p {
        RtPolicy::Fifo => spec::RtPolicy::Fifo,
        RtPolicy::Rr => spec::RtPolicy::Rr,
    }
}

/// The scheduler request for a spec: real-time and dedicated workloads ask for
/// `resources.cores` (default: a VM's vCPUs, else 1); shared ones for
/// `resources.cpu` millicores (absent = best effort). Memory is `resources.memoryMiB`,
/// else a VM's guest memory plus [`VM_OVERHEAD_MIB`] for its monitor.
pub fn request_for(spec: &WorkloadSpec) -> Result<Request, Refusal> {
    let r = &spec.resources;
    let cores = r.cores.or(spec.vm.as_ref().map(|v| v.vcpus)).unwrap_or(1);
    let cpu = if let Some(rt) = r.realtime {
        CpuRequest::Realtime {
            cpus: cores,
            policy: rt_policy(rt.policy),
            priority: rt.priority,
            budget_us: None,
        }
    } else if r.cpu_policy == CpuPolicy::Dedicated {
        CpuRequest::Dedicated { cpus: cores }
    } else {
        let millicores = match r.cpu.as_deref() {
            None => 0,
            Some(s) => parse_millicores(s)
                .and_then(|m| u32::try_from(m).ok())
                .ok_or_else(|| Refusal {
                    reason: format!(
                        "resources.cpu: `{s}` is not a CPU amount; write millicores (\"500m\") \
                         or cores (\"2\", \"0.5\")"
                    ),
                })?,
        };
        CpuRequest::Shared { millicores }
    };
    let memory_mib = r
        .memory_mib
        .or(spec
            .vm
            .as_ref()
            .map(|v| v.memory_mib.saturating_add(VM_OVERHEAD_MIB)))
        .unwrap_or(0);
    Ok(Request { cpu, memory_mib })
}

/// The placement drivers enforce for an allocation. Shared workloads get the shared
/// pool as it is now (`shared_now`); their cgroup follows it as dedicated workloads
/// come and go.
pub fn placement_of(name: &str, a: &Allocation, shared_now: &[u32], prefix: &str) -> Placement {
    Placement {
        cpus: if a.class == Class::Shared {
            shared_now.to_vec()
        } else {
            a.cpus.to_vec()
        },
        mems: a.mems.to_vec(),
        millicores: (a.class == Class::Shared && a.millicores > 0).then_some(a.millicores),
        exclusive: a.class != Class::Shared,
        memory_mib: (a.memory_mib > 0).then_some(a.memory_mib),
        realtime: a.rt.map(|r| spec::Realtime {
            policy: spec_policy(r.policy),
            priority: r.priority,
        }),
        rt_runtime_us: a.rt.map(|r| r.budget_us),
        cgroup_path: Some(format!("{prefix}/{}/{name}", a.class.dir())),
    }
}

/// The allocation a stored placement stands for (for [`Admission::restore`]).
pub fn allocation_of(p: &Placement, rt_period_us: u64) -> Result<Allocation, Refusal> {
    let class = if p.realtime.is_some() {
        Class::Rt
    } else if p.exclusive {
        Class::Dedicated
    } else {
        Class::Shared
    };
    let rt = match (p.realtime, p.rt_runtime_us) {
        (Some(r), Some(budget)) => Some(RtGrant {
            policy: rt_policy(r.policy),
            priority: r.priority,
            budget_us: budget,
            period_us: rt_period_us,
        }),
        (Some(_), None) => {
            return Err(Refusal {
                reason: "stored real-time placement has no rtRuntimeUs".to_string(),
            })
        }
        _ => None,
    };
    Ok(Allocation {
        class,
        cpus: if class == Class::Shared {
            Default::default()
        } else {
            p.cpus.iter().copied().collect()
        },
        mems: p.mems.iter().copied().collect(),
        millicores: p.millicores.unwrap_or(0),
        memory_mib: p.memory_mib.unwrap_or(0),
        rt,
    })
}

impl Admission for SchedAdmission {
    fn admit(&mut self, name: &str, spec: &WorkloadSpec) -> Result<Placement, Refusal> {
        let (placement, setup) = self.admit_deferred(name, spec)?;
        if let Some(setup) = setup {
            if let Err(reason) = setup() {
                self.release(name);
                return Err(Refusal { reason });
            }
        }
        Ok(placement)
    }

    /// A shared workload's cgroup is made by the returned setup (it touches nothing
    /// another admission changes but the pool's CPUs, read under their lock); a
    /// dedicated or real-time one resizes the pool or the rt budgets, so it is set up
    /// here, under the admission lock.
    fn admit_deferred(
        &mut self,
        name: &str,
        spec: &WorkloadSpec,
    ) -> Result<(Placement, Option<Setup>), Refusal> {
        let req = request_for(spec)?;
        let a = self.sched.admit(name, &req).map_err(|e| Refusal {
            reason: e.to_string(),
        })?;
        let placement = self.placement(name, &a);
        match &self.cgroups {
            Some(cg) if a.class == Class::Shared => {
                let (cg, pool) = (Arc::clone(cg), Arc::clone(&self.shared_pool));
                let (name, a) = (name.to_string(), a.clone());
                let setup: Setup = Box::new(move || {
                    let cpus = lock(&pool);
                    cg.apply(&WorkloadGroup::new(&name, &a, &cpus))
                        .map(drop)
                        .map_err(|e| format!("cannot set up the workload's cgroup: {}", chain(&e)))
                });
                Ok((placement, Some(setup)))
            }
            _ => {
                if let Err(e) = self.enforce(name, &a) {
                    self.release(name);
                    return Err(Refusal {
                        reason: format!("cannot set up the workload's cgroup: {}", chain(&e)),
                    });
                }
                self.sync_pm_qos();
                Ok((placement, None))
            }
        }
    }

    fn release(&mut self, name: &str) {
        let Some(a) = self.sched.release(name) else {
            return;
        };
        if let Some(cg) = &self.cgroups {
            if let Err(e) = cg.remove(a.class, name) {
                tracing::warn!(workload = %name, error = %chain(&e), "cgroup not removed");
            }
            if a.class == Class::Dedicated {
                let mut pool = lock(&self.shared_pool);
                let shared_now = self.sched.shared_cpus();
                *pool = shared_now.clone();
                if let Err(e) = cg.set_shared_cpus(&shared_now, &self.shared_names()) {
                    tracing::warn!(error = %chain(&e), "shared pool not grown back");
                }
            }
        }
        self.sync_pm_qos();
    }

    fn holds(&self, name: &str) -> bool {
        self.sched.get(name).is_some()
    }

    fn restore(&mut self, name: &str, placement: &Placement) -> Result<(), Refusal> {
        let a = allocation_of(placement, self.sched.plan().rt_period_us)?;
        self.sched.restore(name, &a).map_err(|e| Refusal {
            reason: e.to_string(),
        })?;
        if let Err(e) = self.enforce(name, &a) {
            tracing::warn!(workload = %name, error = %chain(&e), "restored without its cgroup");
        }
        self.sync_pm_qos();
        Ok(())
    }

    fn capacity(&self) -> HostCapacity {
        let plan = self.sched.plan();
        let u = self.sched.usage();
        let allocations = self
            .sched
            .allocations()
            .iter()
            .map(|(n, a)| (n.clone(), self.placement(n, a)))
            .collect();
        HostCapacity {
            cpus: plan.topology.online().len() as u32,
            shared_millicores: u.shared_capacity_millicores,
            allocated_millicores: u.shared_held_millicores,
            memory_mib: plan.memory_allocatable_mib,
            allocated_memory_mib: u.memory_held_mib,
            allocations,
            topology: serde_json::json!({
                "backend": "roost-scheduler",
                "enforcing": self.enforcing(),
                "profile": plan.origin,
                "platform": plan.platform,
                "shared": plan.shared_pool(),
                "isolated": plan.isolated,
                "online": plan.topology.online(),
                "cores": plan.topology.core_count(),
                "threadsPerCore": plan.topology.threads_per_core(),
                "numaNodes": plan.topology.nodes.len(),
                "usage": u,
                "rtBudgetUs": plan.rt_budget_us,
                "rtPeriodUs": plan.rt_period_us,
                "warnings": plan.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_host_config::fake::FakeHost;
    use roost_scheduler::cgroup::v1::V1;

    fn plan(toml: &str) -> HostPlan {
        let p = Profile::parse(toml, "t").unwrap();
        HostPlan::resolve(&p, FakeHost::edge_4core().topology(), "t").unwrap()
    }

    fn spec(yaml: &str) -> WorkloadSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const EDGE: &str = "[cpu]\nplatform = \"0\"\nshared = \"1\"\nisolated = \"2-3\"\n";

    #[test]
    fn realtime_spec_gets_isolated_cores_and_a_budget() {
        let mut a = SchedAdmission::new(plan(EDGE));
        let s = spec(
            "driver: mock\nmock: {}\nresources:\n  cores: 1\n  memoryMiB: 64\n  realtime: {policy: fifo, priority: 80}\n",
        );
        let p = a.admit("ctl", &s).unwrap();
        assert!(p.exclusive);
        assert_eq!(p.cpus.len(), 1);
        assert!(p.cpus[0] == 2 || p.cpus[0] == 3, "{:?}", p.cpus);
        assert_eq!(p.mems, vec![0]);
        assert_eq!(p.rt_runtime_us, Some(450_000));
        assert_eq!(p.memory_mib, Some(64));
        assert_eq!(p.cgroup_path.as_deref(), Some("roost/rt/ctl"));
        assert_eq!(
            p.realtime,
            Some(spec::Realtime {
                policy: spec::RtPolicy::Fifo,
                priority: 80
            })
        );
        // Same name again: the same placement.
        assert_eq!(a.admit("ctl", &s).unwrap(), p);
        let e = a
            .admit(
                "big",
                &spec("driver: mock\nmock: {}\nresources:\n  cores: 2\n  realtime: {policy: rr, priority: 10}\n"),
            )
            .unwrap_err();
        assert_eq!(e.reason, "needs 2 isolated cores, 1 free");
    }

    #[test]
    fn shared_and_dedicated_specs() {
        let mut a = SchedAdmission::new(plan("[cpu]\nplatform = \"0\"\n"));
        let p = a
            .admit(
                "web",
                &spec("driver: mock\nmock: {}\nresources: {cpu: 500m}\n"),
            )
            .unwrap();
        assert_eq!(p.millicores, Some(500));
        assert!(!p.exclusive);
        assert_eq!(p.cpus, vec![1, 2, 3]);
        assert_eq!(p.cgroup_path.as_deref(), Some("roost/shared/web"));
        let d = a
            .admit(
                "db",
                &spec("driver: mock\nmock: {}\nresources: {cpuPolicy: dedicated, cores: 2}\n"),
            )
            .unwrap();
        assert!(d.exclusive);
        assert_eq!(d.cpus.len(), 2);
        let cap = a.capacity();
        assert_eq!(cap.shared_millicores, 1000);
        assert_eq!(cap.allocated_millicores, 500);
        assert_eq!(cap.allocations["web"].cpus.len(), 1);
        let e = a
            .admit(
                "bad",
                &spec("driver: mock\nmock: {}\nresources: {cpu: lots}\n"),
            )
            .unwrap_err();
        assert!(
            e.reason.starts_with("resources.cpu: `lots`"),
            "{}",
            e.reason
        );
        a.release("db");
        assert_eq!(a.capacity().shared_millicores, 3000);
    }

    #[test]
    fn vm_defaults_to_its_vcpus_and_memory() {
        let s = spec(
            "driver: vm\nvm: {kernel: /k, vcpus: 2, memoryMiB: 256}\nresources: {cpuPolicy: dedicated}\n",
        );
        let r = request_for(&s).unwrap();
        assert_eq!(r.cpu, CpuRequest::Dedicated { cpus: 2 });
        assert_eq!(r.memory_mib, 256 + VM_OVERHEAD_MIB);
    }

    #[test]
    fn restore_takes_back_stored_placements() {
        let mut a = SchedAdmission::new(plan(EDGE));
        let rt =
            spec("driver: mock\nmock: {}\nresources:\n  realtime: {policy: fifo, priority: 50}\n");
        let sh = spec("driver: mock\nmock: {}\nresources: {cpu: 300m, memoryMiB: 100}\n");
        let p1 = a.admit("a", &rt).unwrap();
        let p2 = a.admit("b", &sh).unwrap();
        let mut b = SchedAdmission::new(plan(EDGE));
        b.restore("a", &p1).unwrap();
        b.restore("b", &p2).unwrap();
        assert_eq!(b.capacity().allocations, a.capacity().allocations);
        // The restored CPU is taken: a second real-time workload gets the other one.
        let p3 = b.admit("c", &rt).unwrap();
        assert_ne!(p3.cpus, p1.cpus);
        let e = b.restore("d", &p1).unwrap_err();
        assert!(
            e.reason.contains("is held by another workload"),
            "{}",
            e.reason
        );
    }

    /// A v1 hierarchy (cpu, cpuset, memory) in a temp dir, as root sees it.
    fn fake_v1() -> (tempfile::TempDir, V1) {
        let dir = tempfile::tempdir().unwrap();
        for c in ["cpu", "cpuset", "memory"] {
            std::fs::create_dir_all(dir.path().join(c)).unwrap();
        }
        std::fs::write(dir.path().join("cpu/cpu.rt_runtime_us"), "950000").unwrap();
        let v1 = V1::new(
            dir.path().join("cpu"),
            dir.path().join("cpuset"),
            dir.path().join("memory"),
            "roost",
        );
        (dir, v1)
    }

    #[test]
    fn enforcement_creates_and_removes_the_workload_cgroup() {
        let (dir, v1) = fake_v1();
        let mut a = SchedAdmission::with_cgroups(plan(EDGE), Box::new(v1), "roost").unwrap();
        let rt =
            spec("driver: mock\nmock: {}\nresources:\n  realtime: {policy: fifo, priority: 50}\n");
        let p = a.admit("ctl", &rt).unwrap();
        let rd = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(rd("cpu/roost/rt/cpu.rt_runtime_us"), "450000");
        assert_eq!(rd("cpu/roost/rt/ctl/cpu.rt_runtime_us"), "450000");
        assert_eq!(rd("cpuset/roost/rt/ctl/cpuset.cpus"), p.cpus[0].to_string());
        a.join_platform(4242).unwrap();
        assert_eq!(rd("cpuset/roost/platform/cgroup.procs"), "4242");
        a.release("ctl");
        assert!(!dir.path().join("cpu/roost/rt/ctl").exists());
        assert_eq!(rd("cpu/roost/rt/cpu.rt_runtime_us"), "0");
    }

    #[test]
    fn a_shared_cgroup_made_later_gets_the_pool_as_it_is_then() {
        let (dir, v1) = fake_v1();
        let p = plan("[cpu]\nplatform = \"0\"\nshared = \"1-2\"\nisolated = \"3\"\n");
        let mut a = SchedAdmission::with_cgroups(p, Box::new(v1), "roost").unwrap();
        let web = spec("driver: mock\nmock: {}\nresources:\n  cpu: 500m\n");
        let (p, setup) = a.admit_deferred("web", &web).unwrap();
        assert_eq!(p.cgroup_path.as_deref(), Some("roost/shared/web"));
        let setup = setup.expect("a shared workload's cgroup is set up outside the lock");
        assert!(!dir.path().join("cpuset/roost/shared/web").exists());
        // Meanwhile a dedicated workload takes a core out of the pool.
        let db = spec("driver: mock\nmock: {}\nresources:\n  cores: 1\n  cpuPolicy: dedicated\n");
        a.admit("db", &db).unwrap();
        setup().unwrap();
        let rd = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        let pool = rd("cpuset/roost/shared/cpuset.cpus");
        assert_eq!(pool.trim().len(), 1, "one shared core left: {pool}");
        // On v1 it runs in the pool's cpuset, so it has no copy to go stale.
        assert!(dir.path().join("cpu/roost/shared/web").exists());
        assert!(!dir.path().join("cpuset/roost/shared/web").exists());
        // A dedicated or real-time workload is set up at once, under the lock.
        a.release("db");
        let (_, setup) = a.admit_deferred("db", &db).unwrap();
        assert!(setup.is_none());
        assert!(dir.path().join("cpuset/roost/dedicated/db").exists());
    }
}

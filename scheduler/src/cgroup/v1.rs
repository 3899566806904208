//! cgroup v1 (legacy or hybrid): one hierarchy per controller, `cpu.rt_runtime_us`
//! budgets under `CONFIG_RT_GROUP_SCHED`.

use super::{
    mkdir, mkdir_new, mounts, quota_for, read_file, rmdir, shares_for, write, CgroupBackend,
    CgroupError, CgroupState, Tree, WorkloadGroup, CFS_PERIOD_US,
};
use crate::request::Class;
use roost_host_config::CpuSet;
use std::path::{Path, PathBuf};

/// The classes under Roost's root, in teardown order.
const CLASSES: [Class; 3] = [Class::Shared, Class::Dedicated, Class::Rt];

/// cgroup v1 controllers and the name of Roost's tree in each.
#[derive(Debug, Clone)]
pub struct V1 {
    cpu: PathBuf,
    cpuset: PathBuf,
    memory: PathBuf,
    /// The other hierarchies (blkio, pids, …, and the unified one on hybrid hosts):
    /// Roost writes nothing there, but runc creates a container's path in every one,
    /// so removal cleans them too.
    others: Vec<PathBuf>,
    prefix: String,
}

impl V1 {
    /// Controllers mounted at the given paths; `prefix` is Roost's directory in each
    /// (`roost` in production, `roost-test-<pid>` in tests).
    pub fn new(cpu: PathBuf, cpuset: PathBuf, memory: PathBuf, prefix: &str) -> Self {
        Self {
            cpu,
            cpuset,
            memory,
            others: Vec::new(),
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// Find the v1 cpu, cpuset and memory mounts in `proc_root/self/mountinfo`.
    pub fn discover(proc_root: &Path, prefix: &str) -> Result<Self, CgroupError> {
        let m = mounts(proc_root);
        let find = |c: &'static str| -> Result<PathBuf, CgroupError> {
            m.iter()
                .find(|(_, fs, opts)| fs == "cgroup" && opts.iter().any(|o| o == c))
                .map(|(p, _, _)| p.clone())
                .ok_or_else(|| CgroupError::NoController {
                    controller: c,
                    mountinfo: proc_root.join("self/mountinfo"),
                })
        };
        let mut v = Self::new(find("cpu")?, find("cpuset")?, find("memory")?, prefix);
        v.others = m
            .iter()
            .filter(|(p, fs, _)| {
                // Hybrid hosts: runc mirrors the path into the unified hierarchy too.
                (fs == "cgroup" || fs == "cgroup2") && ![&v.cpu, &v.cpuset, &v.memory].contains(&p)
            })
            .map(|(p, _, _)| p.clone())
            .collect();
        Ok(v)
    }

    /// Where `controller` (`cpu`, `cpuset` or `memory`) is mounted.
    pub fn mount(&self, controller: &str) -> Option<&Path> {
        match controller {
            "cpu" => Some(&self.cpu),
            "cpuset" => Some(&self.cpuset),
            "memory" => Some(&self.memory),
            _ => None,
        }
    }

    /// Roost's directory name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the kernel has real-time group scheduling (`cpu.rt_runtime_us`).
    pub fn has_rt_groups(&self) -> bool {
        self.cpu.join("cpu.rt_runtime_us").exists()
    }

    fn rel(&self, parts: &[&str]) -> String {
        let mut s = self.prefix.clone();
        for p in parts {
            s.push('/');
            s.push_str(p);
        }
        s
    }

    fn set_cpuset(&self, rel: &str, cpus: &CpuSet, mems: &CpuSet) -> Result<(), CgroupError> {
        let d = self.cpuset.join(rel);
        mkdir(&d)?;
        write(&d.join("cpuset.cpus"), &list(cpus))?;
        write(&d.join("cpuset.mems"), &list(mems))
    }

    /// A dedicated or real-time workload's cpuset. Writing `cpuset.cpus` of a
    /// load-balanced cpuset makes the kernel rebuild every scheduling domain and
    /// check the value against each sibling. So the cpuset is taken out of load
    /// balancing while its CPUs are still empty, then set (and left alone when the
    /// kernel made it holding them already). That flag changes no scheduling:
    /// Roost's own cpuset, a load-balanced parent, spans all of its CPUs as one
    /// domain.
    fn set_workload_cpuset(
        &self,
        rel: &str,
        cpus: &CpuSet,
        mems: &CpuSet,
    ) -> Result<(), CgroupError> {
        let d = self.cpuset.join(rel);
        mkdir(&d)?;
        let now = |f: &str| {
            std::fs::read_to_string(d.join(f))
                .ok()
                .and_then(|v| CpuSet::parse(&v).ok())
                .unwrap_or_default()
        };
        let have = now("cpuset.cpus");
        if have == *cpus && now("cpuset.mems") == *mems {
            return Ok(());
        }
        if have.is_empty() {
            write(&d.join("cpuset.sched_load_balance"), "0")?;
        }
        write(&d.join("cpuset.cpus"), &list(cpus))?;
        write(&d.join("cpuset.mems"), &list(mems))
    }

    /// Budget of one cpu cgroup: period first (only when it changes), then runtime.
    fn set_rt(&self, rel: &str, runtime: u64, period: u64) -> Result<(), CgroupError> {
        if !self.has_rt_groups() {
            return Ok(());
        }
        let d = self.cpu.join(rel);
        let pfile = d.join("cpu.rt_period_us");
        let current = std::fs::read_to_string(&pfile).unwrap_or_default();
        if current.trim() != period.to_string() {
            // Lower the runtime first so a shorter period never holds more than it.
            write(&d.join("cpu.rt_runtime_us"), "0")?;
            write(&pfile, &period.to_string())?;
        }
        write(&d.join("cpu.rt_runtime_us"), &runtime.to_string())
    }

    fn rt_runtime(&self, rel: &str) -> u64 {
        std::fs::read_to_string(self.cpu.join(rel).join("cpu.rt_runtime_us"))
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0)
    }

    /// Budgets held by the workloads under `roost/rt`.
    fn rt_children_sum(&self) -> u64 {
        self.children(Class::Rt)
            .iter()
            .map(|n| self.rt_runtime(&self.rel(&["rt", n])))
            .sum()
    }

    /// `roost` and `roost/rt` budgets: grown top-down, shrunk bottom-up.
    fn set_tree_budget(&self, total: u64, period: u64) -> Result<(), CgroupError> {
        if !self.has_rt_groups() {
            return Ok(());
        }
        let root = self.rel(&[]);
        let rt = self.rel(&["rt"]);
        if total >= self.rt_runtime(&rt) {
            self.set_rt(&root, total, period)?;
            self.set_rt(&rt, total, period)
        } else {
            self.set_rt(&rt, total, period)?;
            self.set_rt(&root, total, period)
        }
    }

    fn children(&self, class: Class) -> Vec<String> {
        let d = self.cpu.join(self.rel(&[class.dir()]));
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The cpuset a cgroup's tasks go to. A shared workload has no cpuset of its
    /// own: it runs in `shared`, the pool, as every shared workload does (its cpu
    /// and memory cgroups are its own). A cpuset per shared workload would only copy
    /// the pool, and each one costs the kernel a walk over all its siblings when it
    /// is made (`cpuset_css_online`, a tenth of the daemon's CPU per create in a
    /// `make bench-api` profile with 1,000 of them) and a write each time the pool
    /// changes. A runtime that makes one itself (runc does) gets the pool too.
    fn cpuset_rel<'a>(&self, rel: &'a str) -> &'a str {
        match rel.rsplit_once('/') {
            Some((parent, name)) if !name.is_empty() && parent == self.rel(&["shared"]) => parent,
            _ => rel,
        }
    }

    fn controllers(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = vec![&self.cpuset, &self.cpu, &self.memory];
        v.extend(self.others.iter().map(PathBuf::as_path));
        v
    }
}

/// Zero the rt budgets of `dir` and every sub-cgroup a runtime made in it, deepest
/// first (a parent may never hold less than its children).
fn zero_rt_subtree(dir: &Path) -> Result<(), CgroupError> {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            zero_rt_subtree(&e.path())?;
        }
    }
    write(&dir.join("cpu.rt_runtime_us"), "0")
}

/// The kernel's list format; empty lists are written as a newline (a zero-length
/// write never reaches the kernel).
fn list(s: &CpuSet) -> String {
    if s.is_empty() {
        "\n".to_string()
    } else {
        s.to_string()
    }
}

impl CgroupBackend for V1 {
    fn ensure_tree(&self, tree: &Tree) -> Result<(), CgroupError> {
        let root = self.rel(&[]);
        self.set_cpuset(&root, &tree.all, &tree.mems)?;
        self.set_cpuset(&self.rel(&["platform"]), &tree.platform, &tree.mems)?;
        self.set_cpuset(&self.rel(&["dedicated"]), &tree.dedicated, &tree.mems)?;
        self.set_cpuset(&self.rel(&["rt"]), &tree.isolated, &tree.mems)?;
        mkdir(&self.cpuset.join(self.rel(&["shared"])))?;
        // Shared workloads run in this cpuset itself (see `cpuset_rel`); one a
        // runtime makes below it is born with the pool's CPUs and nodes.
        write(
            &self
                .cpuset
                .join(self.rel(&["shared", "cgroup.clone_children"])),
            "1",
        )?;
        write(
            &self.cpuset.join(self.rel(&["shared", "cpuset.mems"])),
            &list(&tree.mems),
        )?;
        self.set_shared_cpus(&tree.shared, &self.children(Class::Shared))?;

        for rel in [
            root.clone(),
            self.rel(&["platform"]),
            self.rel(&["shared"]),
            self.rel(&["dedicated"]),
            self.rel(&["rt"]),
        ] {
            mkdir(&self.cpu.join(&rel))?;
            mkdir(&self.memory.join(&rel))?;
        }
        // Roost holds only what its real-time workloads hold (at most the profile's
        // budget), so an idle daemon takes nothing from other users of the root budget.
        self.set_tree_budget(self.rt_children_sum(), tree.rt_period_us)?;
        tracing::info!(
            cgroup = %root,
            platform = %tree.platform,
            shared = %tree.shared,
            isolated = %tree.isolated,
            rt_budget_us = tree.rt_budget_us,
            "cgroup tree ready"
        );
        Ok(())
    }

    fn apply(&self, g: &WorkloadGroup) -> Result<String, CgroupError> {
        let rel = self.rel(&[g.class.dir(), &g.name]);
        if g.class != Class::Shared {
            let mems = if g.mems.is_empty() {
                let parent = self.cpuset.join(self.rel(&[g.class.dir(), "cpuset.mems"]));
                CpuSet::parse(&read_file(&parent)?).unwrap_or_default()
            } else {
                g.mems.clone()
            };
            self.set_workload_cpuset(&rel, &g.cpus, &mems)?;
        }

        let cpu = self.cpu.join(&rel);
        // A new cgroup holds the kernel's defaults (the 100 ms period, no quota, no
        // memory limit): those are not written again. Every period or quota write
        // walks the whole task-group tree.
        let fresh = mkdir_new(&cpu)?;
        match g.class {
            Class::Shared => {
                write(
                    &cpu.join("cpu.shares"),
                    &shares_for(g.millicores).to_string(),
                )?;
                let period = cpu.join("cpu.cfs_period_us");
                if !fresh
                    && std::fs::read_to_string(&period)
                        .ok()
                        .as_deref()
                        .map(str::trim)
                        != Some(CFS_PERIOD_US.to_string().as_str())
                {
                    write(&period, &CFS_PERIOD_US.to_string())?;
                }
                match quota_for(g.millicores) {
                    Some(q) => write(&cpu.join("cpu.cfs_quota_us"), &q.to_string())?,
                    None if !fresh => write(&cpu.join("cpu.cfs_quota_us"), "-1")?,
                    None => {}
                }
            }
            Class::Dedicated => {
                let shares = (g.cpus.len() as u64 * 1024).max(2);
                write(&cpu.join("cpu.shares"), &shares.to_string())?;
                if !fresh {
                    write(&cpu.join("cpu.cfs_quota_us"), "-1")?;
                }
            }
            Class::Rt => {
                if let Some((runtime, period)) = g.rt_budget {
                    // Top-down: the parents grow to hold the sum first.
                    let own = self.rt_runtime(&rel);
                    let total = self.rt_children_sum() - own + runtime;
                    if total > self.rt_runtime(&self.rel(&["rt"])) {
                        self.set_tree_budget(total, period)?;
                    }
                    self.set_rt(&rel, runtime, period)?;
                }
            }
        }

        let mem = self.memory.join(&rel);
        let fresh = mkdir_new(&mem)?;
        if g.memory_mib > 0 {
            write(
                &mem.join("memory.limit_in_bytes"),
                &(g.memory_mib * 1024 * 1024).to_string(),
            )?;
        } else if !fresh {
            write(&mem.join("memory.limit_in_bytes"), "-1")?;
        }
        tracing::info!(
            workload = %g.name,
            cgroup = %rel,
            cpus = %g.cpus,
            rt_budget_us = g.rt_budget.map_or(0, |b| b.0),
            "cgroup applied"
        );
        Ok(rel)
    }

    fn set_shared_cpus(&self, cpus: &CpuSet, workloads: &[String]) -> Result<(), CgroupError> {
        let parent = self.cpuset.join(self.rel(&["shared"]));
        let current =
            CpuSet::parse(&std::fs::read_to_string(parent.join("cpuset.cpus")).unwrap_or_default())
                .unwrap_or_default();
        // A child may never hold a CPU its parent lacks: grow the parent first, shrink
        // it last.
        write(&parent.join("cpuset.cpus"), &list(&current.union(cpus)))?;
        for w in workloads {
            let d = parent.join(w);
            if d.exists() {
                write(&d.join("cpuset.cpus"), &list(cpus))?;
            }
        }
        write(&parent.join("cpuset.cpus"), &list(cpus))
    }

    fn attach(&self, rel: &str, id: u32, thread: bool) -> Result<(), CgroupError> {
        let file = if thread { "tasks" } else { "cgroup.procs" };
        // cpuset first so the task never runs outside its CPUs inside its budget;
        // memory is per process, so a lone thread stays where its process is.
        write(
            &self.cpuset.join(self.cpuset_rel(rel)).join(file),
            &id.to_string(),
        )?;
        write(&self.cpu.join(rel).join(file), &id.to_string())?;
        if !thread {
            write(&self.memory.join(rel).join(file), &id.to_string())?;
        }
        tracing::debug!(cgroup = %rel, id, thread, "attached");
        Ok(())
    }

    fn enter_self(&self, rel: &str) -> Result<bool, CgroupError> {
        // `0` in `tasks` is the calling thread: the kernel moves it without taking
        // the process-wide threadgroup lock that a `cgroup.procs` move takes (whose
        // RCU grace period cost 13-90 ms now and then on this host). cpuset last:
        // that write moves the thread onto the workload's CPUs, where it then
        // waits its turn among the workloads; the other two are done first, where
        // it is. (It is not real-time, so the cpu group's budget does not bind it.)
        // Going back to the platform cgroup, cpuset first, to leave those CPUs at once.
        let cpuset = self.cpuset.join(self.cpuset_rel(rel)).join("tasks");
        let home = rel == self.rel(&["platform"]);
        if home {
            write(&cpuset, "0")?;
        }
        for ctrl in [&self.memory, &self.cpu] {
            write(&ctrl.join(rel).join("tasks"), "0")?;
        }
        if !home {
            write(&cpuset, "0")?;
        }
        Ok(true)
    }

    fn remove(&self, class: Class, name: &str) -> Result<(), CgroupError> {
        let rel = self.rel(&[class.dir(), name]);
        let cpu = self.cpu.join(&rel);
        // Bottom-up: the workload's budget goes before its parent's can shrink.
        if class == Class::Rt && cpu.exists() && self.has_rt_groups() {
            // A real-time task killed just before may still be leaving the group
            // (its budget cannot go to 0 while it is there): give it 2 s.
            let mut zeroed = zero_rt_subtree(&cpu);
            for _ in 0..40 {
                if zeroed.is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                zeroed = zero_rt_subtree(&cpu);
            }
            if let Err(e) = zeroed {
                let tasks = std::fs::read_to_string(cpu.join("tasks")).unwrap_or_default();
                if !tasks.trim().is_empty() {
                    return Err(CgroupError::Busy {
                        path: cpu,
                        tasks: tasks.split_whitespace().collect::<Vec<_>>().join(","),
                    });
                }
                return Err(e);
            }
        }
        for ctrl in [&self.cpuset, &self.cpu, &self.memory] {
            rmdir(&ctrl.join(&rel), "tasks")?;
        }
        // Hierarchies Roost does not configure: best effort, teardown tries again.
        for ctrl in &self.others {
            if let Err(e) = rmdir(&ctrl.join(&rel), "tasks") {
                tracing::debug!(error = %e, "runtime's cgroup left for teardown");
            }
        }
        if class == Class::Rt && self.has_rt_groups() {
            // Bottom-up: the parents shrink to what the rest hold.
            let period =
                std::fs::read_to_string(self.cpu.join(self.rel(&["rt", "cpu.rt_period_us"])))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or(1_000_000);
            self.set_tree_budget(self.rt_children_sum(), period)?;
        }
        tracing::info!(workload = %name, cgroup = %rel, "cgroup removed");
        Ok(())
    }

    fn teardown(&self) -> Result<(), CgroupError> {
        for class in CLASSES {
            for name in self.children(class) {
                self.remove(class, &name)?;
            }
        }
        let root = self.rel(&[]);
        if self.has_rt_groups() {
            for rel in [self.rel(&["rt"]), root.clone()] {
                let f = self.cpu.join(&rel).join("cpu.rt_runtime_us");
                if f.exists() {
                    write(&f, "0")?;
                }
            }
        }
        for ctrl in self.controllers() {
            for sub in ["platform", "shared", "dedicated", "rt"] {
                rmdir(&ctrl.join(self.rel(&[sub])), "tasks")?;
            }
            rmdir(&ctrl.join(&root), "tasks")?;
        }
        tracing::info!(cgroup = %root, "cgroup tree removed");
        Ok(())
    }

    fn read(&self, rel: &str) -> Result<CgroupState, CgroupError> {
        // A shared workload's own cpuset, if a runtime made one; else the pool.
        let own = self.cpuset.join(rel);
        let cs = if own.exists() {
            own
        } else {
            self.cpuset.join(self.cpuset_rel(rel))
        };
        let cpu = self.cpu.join(rel);
        let mem = self.memory.join(rel);
        let num = |p: PathBuf| -> Option<i64> {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        let parse = |p: PathBuf| -> Result<CpuSet, CgroupError> {
            Ok(CpuSet::parse(&read_file(&p)?).unwrap_or_default())
        };
        Ok(CgroupState {
            cpus: parse(cs.join("cpuset.cpus"))?,
            mems: parse(cs.join("cpuset.mems"))?,
            rt_runtime_us: num(cpu.join("cpu.rt_runtime_us")),
            cpu_weight: num(cpu.join("cpu.shares")).and_then(|v| u64::try_from(v).ok()),
            cpu_quota_us: num(cpu.join("cpu.cfs_quota_us")).and_then(|v| u64::try_from(v).ok()),
            // The kernel's "unlimited" is a page-rounded i64::MAX.
            memory_limit: num(mem.join("memory.limit_in_bytes"))
                .and_then(|v| u64::try_from(v).ok())
                .filter(|v| *v < (1 << 62)),
            tasks: std::fs::read_to_string(cpu.join("tasks"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Allocation, RtGrant, RtPolicy};

    fn fake() -> (tempfile::TempDir, V1) {
        let dir = tempfile::tempdir().unwrap();
        for c in ["cpu", "cpuset", "memory"] {
            std::fs::create_dir_all(dir.path().join(c)).unwrap();
        }
        std::fs::write(dir.path().join("cpu/cpu.rt_runtime_us"), "950000").unwrap();
        let v = V1::new(
            dir.path().join("cpu"),
            dir.path().join("cpuset"),
            dir.path().join("memory"),
            "roost",
        );
        (dir, v)
    }

    fn tree() -> Tree {
        Tree {
            all: CpuSet::parse("0-3").unwrap(),
            mems: CpuSet::parse("0").unwrap(),
            platform: CpuSet::parse("0").unwrap(),
            shared: CpuSet::parse("1-2").unwrap(),
            dedicated: CpuSet::parse("1-2").unwrap(),
            isolated: CpuSet::parse("3").unwrap(),
            rt_period_us: 1_000_000,
            rt_budget_us: 900_000,
        }
    }

    #[test]
    fn tree_and_workloads_on_a_fake_hierarchy() {
        let (dir, v) = fake();
        v.ensure_tree(&tree()).unwrap();
        let rd = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(rd("cpuset/roost/cpuset.cpus"), "0-3");
        assert_eq!(rd("cpuset/roost/rt/cpuset.cpus"), "3");
        // An idle tree holds no real-time budget.
        assert_eq!(rd("cpu/roost/cpu.rt_runtime_us"), "0");
        assert_eq!(rd("cpu/roost/rt/cpu.rt_runtime_us"), "0");

        let a = Allocation {
            class: Class::Rt,
            cpus: CpuSet::parse("3").unwrap(),
            mems: CpuSet::parse("0").unwrap(),
            millicores: 0,
            memory_mib: 64,
            rt: Some(RtGrant {
                policy: RtPolicy::Fifo,
                priority: 80,
                budget_us: 300_000,
                period_us: 1_000_000,
            }),
        };
        let rel = v
            .apply(&WorkloadGroup::new("ctl", &a, &CpuSet::new()))
            .unwrap();
        assert_eq!(rel, "roost/rt/ctl");
        // Out of load balancing before its CPUs are set: no domain rebuild.
        assert_eq!(rd("cpuset/roost/rt/ctl/cpuset.sched_load_balance"), "0");
        assert_eq!(rd("cpuset/roost/shared/cgroup.clone_children"), "1");
        let st = v.read(&rel).unwrap();
        assert_eq!(st.cpus.to_string(), "3");
        assert_eq!(st.rt_runtime_us, Some(300_000));
        assert_eq!(rd("cpu/roost/cpu.rt_runtime_us"), "300000");
        assert_eq!(rd("cpu/roost/rt/cpu.rt_runtime_us"), "300000");
        assert_eq!(st.memory_limit, Some(64 << 20));

        let s = Allocation {
            class: Class::Shared,
            cpus: CpuSet::new(),
            mems: CpuSet::new(),
            millicores: 500,
            memory_mib: 0,
            rt: None,
        };
        let rel = v
            .apply(&WorkloadGroup::new("web", &s, &tree().shared))
            .unwrap();
        // No cpuset of its own: it runs in the pool's.
        assert!(!dir.path().join("cpuset/roost/shared/web").exists());
        assert!(dir.path().join("cpu/roost/shared/web").exists());
        let st = v.read(&rel).unwrap();
        assert_eq!(st.cpus.to_string(), "1-2");
        assert_eq!(st.mems.to_string(), "0");
        v.attach(&rel, 42, false).unwrap();
        assert_eq!(rd("cpuset/roost/shared/cgroup.procs"), "42");
        assert_eq!(rd("cpu/roost/shared/web/cgroup.procs"), "42");
        assert_eq!(rd("memory/roost/shared/web/cgroup.procs"), "42");
        assert_eq!(st.cpu_weight, Some(512));
        assert_eq!(st.cpu_quota_us, Some(50_000));
        assert_eq!(st.memory_limit, None);

        // A shared cpuset a runtime made, born holding the pool (clone_children),
        // is left as it is.
        let born = dir.path().join("cpuset/roost/shared/api");
        std::fs::create_dir_all(&born).unwrap();
        std::fs::write(born.join("cpuset.cpus"), "1-2\n").unwrap();
        std::fs::write(born.join("cpuset.mems"), "0\n").unwrap();
        v.apply(&WorkloadGroup::new("api", &s, &tree().shared))
            .unwrap();
        assert!(!born.join("cpuset.sched_load_balance").exists());
        assert_eq!(rd("cpuset/roost/shared/api/cpuset.cpus"), "1-2\n");

        v.set_shared_cpus(
            &CpuSet::parse("1").unwrap(),
            &["web".to_string(), "api".to_string()],
        )
        .unwrap();
        assert_eq!(rd("cpuset/roost/shared/api/cpuset.cpus"), "1");
        assert_eq!(rd("cpuset/roost/shared/cpuset.cpus"), "1");
        assert_eq!(v.read(&rel).unwrap().cpus.to_string(), "1");

        v.remove(Class::Rt, "ctl").unwrap();
        assert!(!dir.path().join("cpu/roost/rt/ctl").exists());
        assert_eq!(rd("cpu/roost/rt/cpu.rt_runtime_us"), "0");
        assert_eq!(rd("cpu/roost/cpu.rt_runtime_us"), "0");
        v.teardown().unwrap();
        for c in ["cpu", "cpuset", "memory"] {
            assert!(!dir.path().join(c).join("roost").exists(), "{c}");
        }
    }

    #[test]
    fn enter_self_moves_the_calling_thread_in_every_controller() {
        let (dir, v) = fake();
        v.ensure_tree(&tree()).unwrap();
        assert!(v.enter_self("roost/platform").unwrap());
        for c in ["cpuset", "cpu", "memory"] {
            let f = dir.path().join(c).join("roost/platform/tasks");
            // `0` is the caller: the kernel then skips the process-wide lock.
            assert_eq!(std::fs::read_to_string(&f).unwrap(), "0", "{c}");
        }
        // A shared workload: the pool's cpuset, its own cpu and memory cgroups.
        for c in ["cpu", "memory"] {
            std::fs::create_dir_all(dir.path().join(c).join("roost/shared/w")).unwrap();
        }
        assert!(v.enter_self("roost/shared/w").unwrap());
        for f in [
            "cpuset/roost/shared",
            "cpu/roost/shared/w",
            "memory/roost/shared/w",
        ] {
            let got = std::fs::read_to_string(dir.path().join(f).join("tasks")).unwrap();
            assert_eq!(got, "0", "{f}");
        }
        // A missing cgroup is an error naming the file, not a silent no-op.
        let e = v.enter_self("roost/shared/nope").unwrap_err();
        assert!(e.to_string().contains("roost/shared/nope"), "{e}");
    }

    #[test]
    fn discover_needs_all_three_controllers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        std::fs::write(
            dir.path().join("self/mountinfo"),
            "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             31 25 0:27 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n",
        )
        .unwrap();
        let e = V1::discover(dir.path(), "roost").unwrap_err();
        assert!(e.to_string().contains("`memory` is not mounted"), "{e}");
    }
}

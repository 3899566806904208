//! cgroup v2 (unified). It has no per-group real-time budget: real-time workloads get
//! their isolated cpuset and memory limit, and the kernel-wide
//! `sched_rt_runtime_us` bounds them. (With `CONFIG_RT_GROUP_SCHED` the v2 cpu
//! controller refuses real-time tasks outside the root, so such kernels need v1.)

use super::{
    mkdir, mounts, quota_for, read_file, rmdir, shares_for, write, CgroupBackend, CgroupError,
    CgroupState, Tree, WorkloadGroup, CFS_PERIOD_US,
};
use crate::request::Class;
use roost_host_config::CpuSet;
use std::path::{Path, PathBuf};

/// A unified hierarchy and the name of Roost's tree in it.
#[derive(Debug, Clone)]
pub struct V2 {
    root: PathBuf,
    prefix: String,
}

/// cpu.shares → cpu.weight, the kernel's own mapping.
pub fn weight_for_shares(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

impl V2 {
    /// A unified hierarchy mounted at `root`.
    pub fn new(root: PathBuf, prefix: &str) -> Self {
        Self {
            root,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// The cgroup2 mount whose root offers cpu, cpuset and memory, if any.
    pub fn discover(proc_root: &Path, prefix: &str) -> Option<Self> {
        mounts(proc_root)
            .into_iter()
            .filter(|(_, fs, _)| fs == "cgroup2")
            .find(|(p, _, _)| {
                let c = std::fs::read_to_string(p.join("cgroup.controllers")).unwrap_or_default();
                ["cpu", "cpuset", "memory"]
                    .iter()
                    .all(|want| c.split_whitespace().any(|have| have == *want))
            })
            .map(|(p, _, _)| Self::new(p, prefix))
    }

    fn rel(&self, parts: &[&str]) -> String {
        let mut s = self.prefix.clone();
        for p in parts {
            s.push('/');
            s.push_str(p);
        }
        s
    }

    fn group(
        &self,
        rel: &str,
        cpus: &CpuSet,
        mems: &CpuSet,
        delegate: &str,
    ) -> Result<(), CgroupError> {
        let d = self.root.join(rel);
        mkdir(&d)?;
        write(&d.join("cpuset.cpus"), &list(cpus))?;
        write(&d.join("cpuset.mems"), &list(mems))?;
        if !delegate.is_empty() {
            write(&d.join("cgroup.subtree_control"), delegate)?;
        }
        Ok(())
    }
}

fn list(s: &CpuSet) -> String {
    if s.is_empty() {
        "\n".to_string()
    } else {
        s.to_string()
    }
}

const ALL: &str = "+cpuset +cpu +memory";

impl CgroupBackend for V2 {
    fn ensure_tree(&self, tree: &Tree) -> Result<(), CgroupError> {
        write(&self.root.join("cgroup.subtree_control"), ALL)?;
        self.group(&self.rel(&[]), &tree.all, &tree.mems, ALL)?;
        self.group(&self.rel(&["platform"]), &tree.platform, &tree.mems, "")?;
        self.group(&self.rel(&["dedicated"]), &tree.dedicated, &tree.mems, ALL)?;
        self.group(
            &self.rel(&["rt"]),
            &tree.isolated,
            &tree.mems,
            "+cpuset +memory",
        )?;
        mkdir(&self.root.join(self.rel(&["shared"])))?;
        write(
            &self.root.join(self.rel(&["shared", "cpuset.mems"])),
            &list(&tree.mems),
        )?;
        write(
            &self
                .root
                .join(self.rel(&["shared", "cgroup.subtree_control"])),
            ALL,
        )?;
        let children: Vec<String> = std::fs::read_dir(self.root.join(self.rel(&["shared"])))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        self.set_shared_cpus(&tree.shared, &children)?;
        tracing::info!(cgroup = %self.prefix, "cgroup v2 tree ready (no per-group rt budgets on v2)");
        Ok(())
    }

    fn apply(&self, g: &WorkloadGroup) -> Result<String, CgroupError> {
        let rel = self.rel(&[g.class.dir(), &g.name]);
        let mems = if g.mems.is_empty() {
            let parent = self.root.join(self.rel(&[g.class.dir(), "cpuset.mems"]));
            CpuSet::parse(&read_file(&parent)?).unwrap_or_default()
        } else {
            g.mems.clone()
        };
        self.group(&rel, &g.cpus, &mems, "")?;
        let d = self.root.join(&rel);
        match g.class {
            Class::Shared => {
                let w = weight_for_shares(shares_for(g.millicores));
                write(&d.join("cpu.weight"), &w.to_string())?;
                let max = quota_for(g.millicores).map_or(format!("max {CFS_PERIOD_US}"), |q| {
                    format!("{q} {CFS_PERIOD_US}")
                });
                write(&d.join("cpu.max"), &max)?;
            }
            Class::Dedicated => {
                let w = weight_for_shares(g.cpus.len() as u64 * 1024);
                write(&d.join("cpu.weight"), &w.to_string())?;
                write(&d.join("cpu.max"), &format!("max {CFS_PERIOD_US}"))?;
            }
            Class::Rt => {}
        }
        let limit = if g.memory_mib > 0 {
            (g.memory_mib * 1024 * 1024).to_string()
        } else {
            "max".to_string()
        };
        write(&d.join("memory.max"), &limit)?;
        Ok(rel)
    }

    fn set_shared_cpus(&self, cpus: &CpuSet, workloads: &[String]) -> Result<(), CgroupError> {
        let parent = self.root.join(self.rel(&["shared"]));
        let current =
            CpuSet::parse(&std::fs::read_to_string(parent.join("cpuset.cpus")).unwrap_or_default())
                .unwrap_or_default();
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
        let file = if thread {
            "cgroup.threads"
        } else {
            "cgroup.procs"
        };
        write(&self.root.join(rel).join(file), &id.to_string())
    }

    fn remove(&self, class: Class, name: &str) -> Result<(), CgroupError> {
        rmdir(
            &self.root.join(self.rel(&[class.dir(), name])),
            "cgroup.procs",
        )
    }

    fn teardown(&self) -> Result<(), CgroupError> {
        for class in [Class::Shared, Class::Dedicated, Class::Rt] {
            let d = self.root.join(self.rel(&[class.dir()]));
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir(&e.path(), "cgroup.procs")?;
                }
            }
        }
        for sub in ["platform", "shared", "dedicated", "rt"] {
            rmdir(&self.root.join(self.rel(&[sub])), "cgroup.procs")?;
        }
        rmdir(&self.root.join(self.rel(&[])), "cgroup.procs")
    }

    fn read(&self, rel: &str) -> Result<CgroupState, CgroupError> {
        let d = self.root.join(rel);
        let text = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
        let quota = text("cpu.max")
            .split_whitespace()
            .next()
            .and_then(|q| q.parse().ok());
        Ok(CgroupState {
            cpus: CpuSet::parse(&read_file(&d.join("cpuset.cpus"))?).unwrap_or_default(),
            mems: CpuSet::parse(&read_file(&d.join("cpuset.mems"))?).unwrap_or_default(),
            rt_runtime_us: None,
            cpu_weight: text("cpu.weight").trim().parse().ok(),
            cpu_quota_us: quota,
            memory_limit: text("memory.max").trim().parse().ok(),
            tasks: text("cgroup.threads")
                .split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Allocation;

    #[test]
    fn weight_mapping_matches_the_kernel() {
        assert_eq!(weight_for_shares(1024), 39);
        assert_eq!(weight_for_shares(2), 1);
        assert_eq!(weight_for_shares(262_144), 10_000);
    }

    #[test]
    fn tree_and_a_dedicated_workload_on_a_fake_unified_root() {
        let dir = tempfile::tempdir().unwrap();
        let v = V2::new(dir.path().to_path_buf(), "roost");
        let tree = Tree {
            all: CpuSet::parse("0-3").unwrap(),
            mems: CpuSet::parse("0").unwrap(),
            platform: CpuSet::parse("0").unwrap(),
            shared: CpuSet::parse("1-2").unwrap(),
            dedicated: CpuSet::parse("1-2").unwrap(),
            isolated: CpuSet::parse("3").unwrap(),
            rt_period_us: 1_000_000,
            rt_budget_us: 900_000,
        };
        v.ensure_tree(&tree).unwrap();
        let a = Allocation {
            class: Class::Dedicated,
            cpus: CpuSet::parse("2").unwrap(),
            mems: CpuSet::parse("0").unwrap(),
            millicores: 0,
            memory_mib: 128,
            rt: None,
        };
        let rel = v
            .apply(&WorkloadGroup::new("db", &a, &tree.shared))
            .unwrap();
        let st = v.read(&rel).unwrap();
        assert_eq!(st.cpus.to_string(), "2");
        assert_eq!(st.cpu_quota_us, None);
        assert_eq!(st.memory_limit, Some(128 << 20));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("roost/cgroup.subtree_control")).unwrap(),
            ALL
        );
        v.teardown().unwrap();
        assert!(!dir.path().join("roost").exists());
    }
}

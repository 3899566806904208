//! Placing a host process natively, without a driver: admit it through the scheduler,
//! create its cgroup in Roost's tree, move the calling process in (children inherit
//! it), and undo all of it afterwards. The latency probe and `roost probe run` use
//! this to run as placed workloads when no container runtime is at hand.
//!
//! Each native workload has its own scheduler over the same host plan, so several of
//! them (a real-time probe and a shared noisy neighbour) can share one tree; the
//! real-time budgets are summed from cgroupfs, so they stay consistent.

use crate::cgroup::v1::V1;
use crate::cgroup::{CgroupBackend, CgroupError, Tree, WorkloadGroup};
use crate::request::{Allocation, PlaceError, Request};
use crate::rt::{self, Policy, RtError};
use crate::Scheduler;
use roost_host_config::HostPlan;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// Native placement failed.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// The scheduler refused.
    #[error("refused: {0}")]
    Refused(#[from] PlaceError),
    /// cgroupfs failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// Policy or affinity failed.
    #[error(transparent)]
    Rt(#[from] RtError),
}

/// A placed native workload; dropping it leaves the cgroup and removes it (and Roost's
/// tree, when nothing else is left in it).
#[derive(Debug)]
pub struct NativeWorkload {
    cg: V1,
    name: String,
    alloc: Allocation,
    rel: String,
    /// Where this process was before `enter`: controller mount → its cgroup.
    home: RefCell<Vec<PathBuf>>,
}

impl NativeWorkload {
    /// Admit `req` as `name` on `plan` and create its cgroup under `prefix`.
    pub fn place(
        plan: HostPlan,
        prefix: &str,
        name: &str,
        req: &Request,
    ) -> Result<Self, NativeError> {
        let cg = V1::discover(Path::new("/proc"), prefix)?;
        let mut sched = Scheduler::new(plan);
        let alloc = sched.admit(name, req)?;
        let shared = sched.shared_cpus();
        cg.ensure_tree(&Tree::from_plan(sched.plan(), &shared))?;
        let rel = cg.apply(&WorkloadGroup::new(name, &alloc, &shared))?;
        tracing::info!(workload = %name, cgroup = %rel, cpus = %alloc.cpus, "placed natively");
        Ok(Self {
            cg,
            name: name.to_string(),
            alloc,
            rel,
            home: RefCell::new(Vec::new()),
        })
    }

    /// What was granted.
    pub fn allocation(&self) -> &Allocation {
        &self.alloc
    }

    /// The cgroup, relative to each controller's root.
    pub fn cgroup(&self) -> &str {
        &self.rel
    }

    /// Move this whole process into the workload's cgroup. A real-time workload's
    /// calling thread is then pinned to its CPUs and given its policy.
    pub fn enter(&self) -> Result<(), NativeError> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut home = Vec::new();
        for ctrl in ["cpuset", "cpu", "memory"] {
            let Some(mount) = self.cg.mount(ctrl) else {
                continue;
            };
            let path = own
                .lines()
                .filter_map(|l| l.split_once(':').and_then(|(_, rest)| rest.split_once(':')))
                .find(|(ctrls, _)| ctrls.split(',').any(|c| c == ctrl))
                .map_or(PathBuf::from(mount), |(_, p)| {
                    mount.join(p.trim_start_matches('/'))
                });
            home.push(path);
        }
        *self.home.borrow_mut() = home;
        self.cg.attach(&self.rel, std::process::id(), false)?;
        if !self.alloc.cpus.is_empty() {
            rt::set_affinity(0, &self.alloc.cpus)?;
        }
        if let Some(g) = self.alloc.rt {
            rt::set_policy(0, Policy::Rt(g.policy), g.priority)?;
        }
        Ok(())
    }

    /// Move this process back where it was (policy back to SCHED_OTHER first).
    pub fn leave(&self) -> Result<(), NativeError> {
        if self.alloc.rt.is_some() {
            rt::set_policy(0, Policy::Other, 0)?;
        }
        let pid = std::process::id().to_string();
        for dir in self.home.borrow_mut().drain(..) {
            crate::cgroup::write(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }
}

impl Drop for NativeWorkload {
    fn drop(&mut self) {
        if !self.home.borrow().is_empty() {
            if let Err(e) = self.leave() {
                tracing::warn!(workload = %self.name, error = %e, "could not leave the cgroup");
            }
        }
        if let Err(e) = self.cg.remove(self.alloc.class, &self.name) {
            tracing::warn!(workload = %self.name, error = %e, "cgroup not removed");
        }
        // Last one out removes the tree; others still running keep it busy.
        if let Err(e) = self.cg.teardown() {
            tracing::debug!(error = %e, "tree kept: other workloads still in it");
        }
    }
}

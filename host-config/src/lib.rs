//! Host profile (CPU partition, reserved memory, hugepages, limits) and topology
//! discovery.
//!
//! [`Topology::discover`] reads the machine from sysfs/procfs under an injectable
//! [`SysRoot`]; [`Profile`] is the TOML an operator writes; [`HostPlan::resolve`]
//! checks one against the other and yields the effective partition the scheduler
//! places on, with warnings that say how to fix what is merely unwise.

pub mod cpuset;
pub mod fake;
pub mod plan;
pub mod profile;
pub mod topology;

pub use cpuset::{CpuSet, CpuSetError};
pub use plan::{HostPlan, Problem, Warning};
pub use profile::{Profile, ProfileError};
pub use topology::{Cpu, NumaNode, SysRoot, Topology, TopologyError};

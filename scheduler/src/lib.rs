//! Roost's CPU/memory admission, placement and real-time enforcement.
//!
//! - [`place::Scheduler`]: pure placement over a host plan (no I/O), property-tested.
//! - [`cgroup`]: enforcement in Roost's cgroup tree behind the small [`cgroup::CgroupBackend`] trait.
//! - [`rt`]: real-time policy and affinity of threads and processes.
//! - [`probe`]: the cyclictest-style latency probe.

pub mod cgroup;
pub mod native;
pub mod pick;
pub mod place;
pub mod probe;
pub mod request;
pub mod rt;

#[cfg(test)]
mod proptests;

pub use place::{Scheduler, Usage};
pub use request::{
    Allocation, Class, CpuRequest, NodeFree, PlaceError, Request, RtGrant, RtPolicy,
};

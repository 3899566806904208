//! The per-host daemon: workload spec, store, drivers, supervisor and API.

pub mod admission;
pub mod driver;
pub mod drivers;
pub mod spec;

//! The per-host daemon: workload spec, store, drivers, supervisor and API.

pub mod admission;
pub mod driver;
pub mod model;
pub mod store;
pub mod drivers;
pub mod spec;
pub mod validate;

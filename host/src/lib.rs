//! The per-host daemon: workload spec, store, drivers, supervisor and API.

pub mod admission;
pub mod api;
pub mod client;
pub mod daemon;
pub mod driver;
pub mod drivers;
pub mod events;
pub mod exec_proto;
pub mod fds;
pub mod hostinfo;
pub mod images;
pub mod journal;
pub mod model;
pub mod pmqos;
pub mod sched;
pub mod server;
pub mod spec;
pub mod store;
pub mod supervisor;
pub mod upgrade;
pub mod uplink;
pub mod validate;

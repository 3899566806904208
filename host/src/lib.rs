//! The per-host daemon: workload spec, store, drivers, supervisor and API.

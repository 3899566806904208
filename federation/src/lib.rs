//! Central controller, subclouds, host link and orchestration.
//!
//! Not built yet: no issue has landed the central controller. `roost central` says so
//! plainly instead of pretending to run.

/// What the central controller can do today, for front ends that want to say so.
pub const STATUS: &str = "the central controller is not built yet: `roost central` has no \
                          store, host link or console so far";

//! The central controller and the host link.
//!
//! - [`model`]: groups, subclouds, hosts, join tokens, deployments, alarms, events.
//! - [`store`]: central's durable state (SQLite or PostgreSQL) behind one small trait.
//! - [`pki`]: central's CA, server and host certificates, operator and join tokens.
//! - [`link`]: the gRPC protocol between host and central, its server side (in
//!   central) and its client side (in every host, behind [`link::HostRuntime`], which
//!   the host daemon implements and a fleet simulator can implement in memory).
//! - [`central`]: the controller's core: desired state, sync status, alarms, events.
//! - [`strategy`]: orchestration strategies (rollouts across subclouds): their types
//!   and checks (the engine is `central::rollout`).
//!
//! No HTTP framework or CLI parser here: the operator API's HTTP front end and the
//! `roost central` verbs live in the `roost` binary.

pub mod central;
pub mod link;
pub mod model;
pub mod pki;
pub mod replica;
pub mod sim;
pub mod store;
pub mod strategy;

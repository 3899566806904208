//! The drivers behind [`crate::driver::Driver`].

pub mod container;
pub mod mock;
pub mod process;
pub mod vm;

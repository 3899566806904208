//! The drivers behind [`crate::driver::Driver`].

pub mod mock;
pub mod process;
pub mod container;
pub mod vm;

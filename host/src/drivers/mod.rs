//! The drivers behind [`crate::driver::Driver`].

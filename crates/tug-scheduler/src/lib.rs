//! The scheduler. TODO (issue 4): being written.

pub mod core;

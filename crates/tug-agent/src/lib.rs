//! The node agent. Today: hollow nodes (`sim`). TODO (issue 4): being written.

pub mod sim;

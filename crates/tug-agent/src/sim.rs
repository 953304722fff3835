//! Hollow nodes. TODO (issue 4): being written.

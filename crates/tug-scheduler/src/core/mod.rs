//! The pure placement core. TODO (issue 4): being written.

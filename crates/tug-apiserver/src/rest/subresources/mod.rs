//! Subresources: `status` and `finalize` (a write scope of the generic update), `scale`,
//! `binding` and `eviction`.

pub mod binding;
pub mod eviction;
pub mod scale;
pub mod status;

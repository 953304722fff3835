//! Nodes: the agent owns the whole object, status included, so the main resource's writes
//! keep the status they carry, and there is no generation.

use tug_core::registry::ResourceType;

use super::Strategy;

#[derive(Debug)]
pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn tracks_generation(&self, _rt: &ResourceType) -> bool {
        false
    }

    fn status_is_subresource(&self, _rt: &ResourceType) -> bool {
        false
    }
}

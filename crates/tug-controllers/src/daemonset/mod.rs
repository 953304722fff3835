//! The DaemonSet controller. [`core`] decides; `Controller` is the loop (TODO: being written).

pub mod core;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::runtime::Informer;

#[derive(Debug, Clone)]
pub struct Controller;

impl Controller {
    pub fn new(
        client: kube::Client,
        sets: &mut Informer<DaemonSet>,
        nodes: &mut Informer<Node>,
        pods: &mut Informer<Pod>,
    ) -> Controller {
        let _ = (client, sets, nodes, pods);
        Controller
    }

    pub async fn run(self, workers: usize) {
        let _ = workers;
    }
}

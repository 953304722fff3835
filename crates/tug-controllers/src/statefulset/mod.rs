//! The StatefulSet controller. [`core`] decides; `Controller` is the loop (TODO: being written).

pub mod core;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use crate::runtime::Informer;

#[derive(Debug, Clone)]
pub struct Controller;

impl Controller {
    pub fn new(
        client: kube::Client,
        sets: &mut Informer<StatefulSet>,
        pods: &mut Informer<Pod>,
        claims: &mut Informer<PersistentVolumeClaim>,
    ) -> Controller {
        let _ = (client, sets, pods, claims);
        Controller
    }

    pub async fn run(self, workers: usize) {
        let _ = workers;
    }
}

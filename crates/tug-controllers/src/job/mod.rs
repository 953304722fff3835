//! The Job controller. [`core`] decides; `Controller` is the loop (TODO: being written).

pub mod core;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use crate::runtime::Informer;

#[derive(Debug, Clone)]
pub struct Controller;

impl Controller {
    pub fn new(client: kube::Client, jobs: &mut Informer<Job>, pods: &mut Informer<Pod>) -> Controller {
        let _ = (client, jobs, pods);
        Controller
    }

    pub async fn run(self, workers: usize) {
        let _ = workers;
    }
}

//! The CronJob controller. [`core`] decides; `Controller` is the loop (TODO: being written).

pub mod core;

use k8s_openapi::api::batch::v1::{CronJob, Job};

use crate::runtime::Informer;

#[derive(Debug, Clone)]
pub struct Controller;

impl Controller {
    /// `clock` gives "now" (tests inject one to make a schedule fire without waiting).
    pub fn new(
        client: kube::Client,
        clock: crate::Clock,
        cronjobs: &mut Informer<CronJob>,
        jobs: &mut Informer<Job>,
    ) -> Controller {
        let _ = (client, clock, cronjobs, jobs);
        Controller
    }

    pub async fn run(self, workers: usize) {
        let _ = workers;
    }
}

//! Typed Kubernetes helpers every Tugboat component shares, with no IO — the role Kubernetes'
//! `component-helpers` and kube-rs's `kube-core` play: resource quantities, CronJob schedules,
//! taints and tolerations, the pod QoS class, label selectors (matching and rendering), node
//! affinity terms, int-or-percent scaling.
//!
//! There is ONE copy of each rule here, and the API server's validation, the scheduler, the
//! controllers and the agent all call it, so they cannot drift apart. Each module carries
//! Kubernetes' own table cases. This crate knows nothing of the API server, the store or any
//! component; `tug-core` may depend on it, never the other way round.

pub mod cron;
pub mod events;
pub mod intstr;
pub mod labels;
pub mod node;
pub mod nodeaffinity;
pub mod pods;
pub mod qos;
pub mod quantity;
pub mod taints;

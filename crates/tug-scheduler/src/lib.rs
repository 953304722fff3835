//! The scheduler: assigns pending pods to nodes, as kube-scheduler does, as an API client.
//!
//! - [`core`] — the pure placement core: filters and scorers over a [`core::Snapshot`].
//! - `queue` — the order pods are tried in (priority, then age) and their retry backoff.
//! - `report` — Events and the `PodScheduled=False` condition, written in the background.
//! - `run` — the loop tying them together: watchers, decisions, concurrent binds.

pub mod core;
mod queue;
mod report;
mod run;

pub use run::{Error, SchedulerOptions, run};

//! Leader election through a coordination.k8s.io/v1 Lease, as client-go's `leaderelection` does,
//! so that of several servers exactly one schedules and one runs the controllers.
//!
//! A candidate takes the Lease when nobody holds it or when its record has not changed for a full
//! `leaseDurationSeconds` as timed by the candidate's own clock (client-go's rule: it never
//! compares another host's timestamps with its own, so clock skew cannot steal a live lease).
//! The holder renews every [`RENEW_EVERY`]; every write is a compare-and-swap on the Lease's
//! resourceVersion, so of two racing candidates one gets 409 and stays a follower. A holder that
//! cannot renew within [`RENEW_DEADLINE`] stops leading before anyone may take over (10 s < 15 s).
//! A holder that stops cleanly releases the Lease (empty holder) so a follower takes over at once.
//!
//! [`join`]: the client a component outside `tug server` joins the cluster with (URL, node token,
//! cluster CA) — cluster-client plumbing every joining component shares, like the election.

pub mod join;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// How long a lease is valid after its last renewal (kube-scheduler's default).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How long the holder keeps leading while renewals fail.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often a follower looks whether the lease became free.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);

/// The host name plus something unique to this process, as kube-scheduler's `hostname_uuid`.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tug".into());
    // Unique within the process too: tests run several schedulers side by side.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = jiff::Timestamp::now().as_nanosecond();
    format!("{host}_{:x}{:x}-{n}", std::process::id(), nanos & 0xff_ffff)
}

/// What a candidate should do about the lease it just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease object yet.
    Create,
    /// The lease is free or expired: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a live lease.
    Follow,
}

/// The decision, given the lease's spec (`None`: no Lease) and how long its record has stayed
/// unchanged as observed by this candidate.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> Decision {
    let Some(spec) = spec else { return Decision::Create };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    let duration =
        spec.lease_duration_seconds.map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(0).unsigned_abs().into()));
    if holder.is_empty() || unchanged_for >= duration { Decision::Acquire } else { Decision::Follow }
}

/// The lease record as written when `identity` takes or renews it.
pub fn claimed(previous: Option<&LeaseSpec>, identity: &str, now: jiff::Timestamp) -> LeaseSpec {
    let held_by_us = previous.and_then(|p| p.holder_identity.as_deref()) == Some(identity);
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: if held_by_us { previous.and_then(|p| p.acquire_time.clone()) } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if held_by_us || previous.is_none() { transitions } else { transitions + 1 }),
        ..LeaseSpec::default()
    }
}

/// The record written when the holder steps down: no holder, so followers need not wait.
pub fn released(previous: &LeaseSpec, now: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: previous.lease_transitions,
        ..LeaseSpec::default()
    }
}

/// The parts of a lease record whose change proves its holder alive (`None`: no Lease).
type RecordKey = Option<(Option<String>, Option<MicroTime>)>;

fn record_key(spec: Option<&LeaseSpec>) -> RecordKey {
    spec.map(|s| (s.holder_identity.clone(), s.renew_time.clone()))
}

/// One candidate for one Lease.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The record last seen and when it was first seen (for expiry by our own clock).
    observed: Option<(RecordKey, Instant)>,
    last_renewed: Option<Instant>,
}

impl Elector {
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            observed: None,
            last_renewed: None,
        }
    }

    /// Campaigns until the task is dropped, publishing whether we lead on `leading`.
    pub async fn campaign(mut self, leading: watch::Sender<bool>) {
        loop {
            let now_leading = self.step().await;
            leading.send_if_modified(|was| std::mem::replace(was, now_leading) != now_leading);
            // After a failed renewal the holder retries at the follower's pace, as client-go does.
            let renewed = self.last_renewed.is_some_and(|at| at.elapsed() < RETRY_EVERY);
            tokio::time::sleep(if renewed { RENEW_EVERY } else { RETRY_EVERY }).await;
        }
    }

    /// One round: read the lease, act, and say whether we lead afterwards.
    async fn step(&mut self) -> bool {
        match tokio::time::timeout(RENEW_DEADLINE, self.try_acquire_or_renew()).await {
            Ok(Ok(leading)) => {
                if leading {
                    self.last_renewed = Some(Instant::now());
                }
                leading
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {RENEW_DEADLINE:?}"),
                };
                // A transient failure: keep leading only while the last renewal is recent enough.
                let still = self.last_renewed.is_some_and(|at| at.elapsed() < RENEW_DEADLINE);
                tracing::warn!(lease = %self.name, %error, still_leading = still, "leader election round failed");
                if !still {
                    self.last_renewed = None;
                }
                still
            }
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let spec = lease.as_ref().and_then(|l| l.spec.as_ref());
        let key = record_key(spec);
        let now = Instant::now();
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == key => *at,
            _ => now,
        };
        self.observed = Some((key, first_seen));
        let decision = decide(spec, &self.identity, now.duration_since(first_seen));
        let record = claimed(spec, &self.identity, jiff::Timestamp::now());
        let written = match (decision, lease) {
            (Decision::Follow, _) => {
                self.last_renewed = None;
                return Ok(false);
            }
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(record),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Decision::Acquire | Decision::Renew, Some(mut lease)) => {
                // The resourceVersion read above travels in the body: a 409 means someone wrote first.
                lease.spec = Some(record);
                self.api.replace(&self.name, &PostParams::default(), &lease).await
            }
            (Decision::Acquire | Decision::Renew, None) => return Ok(false),
        };
        match written {
            Ok(lease) => {
                if decision != Decision::Renew {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                }
                self.observed = Some((record_key(lease.spec.as_ref()), Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.last_renewed = None;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up if we hold it, so a follower takes over without waiting for expiry.
    pub async fn release(&self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
            let Some(spec) = lease.spec.as_ref() else { return Ok(()) };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            lease.spec = Some(released(spec, jiff::Timestamp::now()));
            self.api.replace(&self.name, &PostParams::default(), &lease).await.map(drop)
        };
        match tokio::time::timeout(RENEW_DEADLINE, result).await {
            Ok(Ok(())) => tracing::info!(lease = %self.name, "released the lease"),
            Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "could not release the lease"),
            Err(_) => tracing::warn!(lease = %self.name, "releasing the lease timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: Option<&str>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: duration,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let secs = Duration::from_secs;
        let cases = [
            (None, secs(0), Decision::Create),
            (Some(held_by(Some("me"), Some(15))), secs(100), Decision::Renew),
            (Some(held_by(None, Some(15))), secs(0), Decision::Acquire),
            (Some(held_by(Some(""), Some(15))), secs(0), Decision::Acquire),
            (Some(held_by(Some("other"), Some(15))), secs(14), Decision::Follow),
            (Some(held_by(Some("other"), Some(15))), secs(15), Decision::Acquire),
            (Some(held_by(Some("other"), Some(1))), secs(1), Decision::Acquire),
            (Some(held_by(Some("other"), None)), secs(14), Decision::Follow),
        ];
        for (spec, unchanged, want) in cases {
            assert_eq!(decide(spec.as_ref(), "me", unchanged), want, "{spec:?} unchanged for {unchanged:?}");
        }
    }

    #[test]
    fn claiming_counts_transitions_only_when_the_holder_changes() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let fresh = claimed(None, "me", now);
        assert_eq!(fresh.holder_identity.as_deref(), Some("me"));
        assert_eq!(fresh.lease_duration_seconds, Some(15));
        assert_eq!(fresh.lease_transitions, Some(0));
        let renewed = claimed(Some(&fresh), "me", now);
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = claimed(Some(&renewed), "you", now);
        assert_eq!(taken.lease_transitions, Some(1));
        let gone = released(&taken, now);
        assert_eq!((gone.holder_identity, gone.lease_transitions), (None, Some(1)));
    }
}

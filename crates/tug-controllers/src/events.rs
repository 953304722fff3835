//! Events the controllers write about the objects they manage ("Created pod: web-7d9f-x2x"),
//! in the background so no reconcile waits on them.
//!
//! Like client-go's recorder, a per-object spam filter (a token bucket: 25 at once, then one per
//! five minutes) keeps a 1,000-replica rollout from writing 1,000 events about one ReplicaSet;
//! when the queue is full, events are dropped, never the controller's real work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::Resource;
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;
use tug_k8s::events;

/// How many events may wait to be written; beyond this they are dropped.
const QUEUE_CAPACITY: usize = 8 * 1024;
const CONCURRENT_WRITES: usize = 4;
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL_EVERY: Duration = Duration::from_secs(300);

/// What a pure core asks to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &str, message: impl Into<String>) -> Note {
        Note { warning: false, reason: reason.into(), message: message.into() }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Note {
        Note { warning: true, reason: reason.into(), message: message.into() }
    }
}

/// Token buckets per involved object.
#[derive(Debug, Default)]
struct SpamFilter {
    buckets: HashMap<String, (f64, Instant)>,
}

impl SpamFilter {
    fn allow(&mut self, object: &str, now: Instant) -> bool {
        if self.buckets.len() > 50_000 {
            // Forget full buckets so the map cannot grow without bound.
            self.buckets.retain(|_, (tokens, at)| *tokens + refill(now - *at) < SPAM_BURST);
        }
        let (tokens, at) = self.buckets.entry(object.to_string()).or_insert((SPAM_BURST, now));
        *tokens = (*tokens + refill(now - *at)).min(SPAM_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refill(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() / SPAM_REFILL_EVERY.as_secs_f64()
}

/// Writes events for one component. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    component: &'static str,
    tx: mpsc::Sender<Event>,
    spam: Arc<Mutex<SpamFilter>>,
}

impl Recorder {
    /// A recorder whose writer runs until every clone is dropped.
    pub fn new(client: kube::Client, component: &'static str) -> Recorder {
        let (tx, rx) = mpsc::channel::<Event>(QUEUE_CAPACITY);
        tokio::spawn(async move {
            tokio_stream_of(rx)
                .for_each_concurrent(CONCURRENT_WRITES, |event| {
                    let client = client.clone();
                    async move {
                        let ns = event.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                        if let Err(e) =
                            Api::<Event>::namespaced(client, &ns).create(&PostParams::default(), &event).await
                        {
                            tracing::debug!(error = %e, "cannot write an event");
                        }
                    }
                })
                .await;
        });
        Recorder { component, tx, spam: Arc::default() }
    }

    /// Reports `note` about `object`.
    pub fn record<K: Resource<DynamicType = ()>>(&self, object: &K, note: &Note) {
        let meta = object.meta();
        let reference = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            ..ObjectReference::default()
        };
        self.record_about(reference, note);
    }

    pub fn record_about(&self, object: ObjectReference, note: &Note) {
        let spam_key = format!(
            "{}/{}/{}",
            object.kind.as_deref().unwrap_or_default(),
            object.namespace.as_deref().unwrap_or_default(),
            object.name.as_deref().unwrap_or_default()
        );
        if !self.spam.lock().unwrap_or_else(|e| e.into_inner()).allow(&spam_key, Instant::now()) {
            return;
        }
        let source = events::Source { component: self.component, host: None, instance: None };
        let happening = events::Happening { warning: note.warning, reason: &note.reason, message: &note.message };
        let event = events::event(object, source, happening, jiff::Timestamp::now());
        // A full queue drops the event: reporting must never hold up the work reported on.
        let _ = self.tx.try_send(event);
    }
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spam_filter_allows_a_burst_then_one_per_five_minutes() {
        let mut filter = SpamFilter::default();
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| filter.allow("ReplicaSet/ns/web", t0)).count();
        assert_eq!(allowed, 25);
        assert!(filter.allow("ReplicaSet/ns/other", t0), "other objects have their own budget");
        assert!(!filter.allow("ReplicaSet/ns/web", t0 + Duration::from_secs(200)));
        assert!(filter.allow("ReplicaSet/ns/web", t0 + Duration::from_secs(301)));
    }
}

//! Watches: a chunked response of newline-separated `{"type":…,"object":…}` events, served from
//! the watch cache. Each watcher filters the shared events of its resource by namespace and
//! selectors; an object that stops matching a selector is sent as DELETED, one that starts
//! matching as ADDED, as the Kubernetes cacher does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tug_core::registry::ResourceType;
use tug_core::status::ApiError;
use tug_store::Revision;

use crate::cache::{CacheEvent, CachedObject, EventType, WatchStartError, event_from_store, storage_of};
use crate::request::{Query, ResourceRequest};
use crate::{Api, Render, rest};

/// How often a watch that allows bookmarks receives one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(15);
/// Watches without timeoutSeconds end after this long (Kubernetes picks 30–60 min at random).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The body of a watch response.
pub type WatchBody = futures::stream::BoxStream<'static, Result<Bytes, Infallible>>;

impl Api {
    pub async fn watch(
        self: &Arc<Self>,
        req: &ResourceRequest,
        q: &Query,
        render: Render,
    ) -> Result<WatchBody, ApiError> {
        let rt = req.rt;
        let mut q = q.clone();
        // GET …/pods/<name>?watch=1 and /watch/…/pods/<name> watch one object.
        if let Some(name) = &req.name {
            let sel = format!("metadata.name={name}");
            q.field_selector = Some(match q.field_selector.take() {
                Some(f) => format!("{f},{sel}"),
                None => sel,
            });
        }
        let filter = Api::list_filter(req, &q)?;
        let prefix = rt.prefix(req.namespace.as_deref());
        let matches = move |o: &CachedObject| o.key.starts_with(&prefix) && filter(o);
        let (start, replay, mut last) = match q.resource_version.as_deref() {
            None | Some("0") => {
                let w = self.cache.watch_with_state(rt.storage);
                let r = w.start_revision;
                (w, None, r)
            }
            Some(rv) => {
                let after: Revision =
                    rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
                match self.cache.watch_from(rt.storage, after) {
                    Ok(w) => {
                        let r = w.start_revision;
                        (w, None, r)
                    }
                    // Older than the cache's history (after a restart, say) but maybe still in
                    // the store's: replay from the store up to the cache's revision, then follow
                    // the cache, so the client resumes without a relist. Kubernetes answers 410.
                    Err(WatchStartError::TooOld { requested, oldest }) => {
                        let live = self.cache.watch_live(rt.storage);
                        match self.cache.store().watch("/registry/", after).await {
                            Ok(stream) => (live, Some(stream), after),
                            Err(_) => {
                                return Err(ApiError::gone(format!(
                                    "too old resource version: {requested} ({oldest})"
                                )));
                            }
                        }
                    }
                }
            }
        };
        let initial_events_end = q.send_initial_events;
        let bookmarks = q.allow_watch_bookmarks;
        let timeout = q.timeout_seconds.map(Duration::from_secs).unwrap_or(DEFAULT_TIMEOUT);
        let (tx, mut rx) = mpsc::channel::<Bytes>(256);
        let api = self.clone();
        let mut shutdown = self.shutdown.clone();
        api.metrics.watch_opened();
        tokio::spawn(async move {
            let _open = OpenWatch(api.clone());
            let deadline = tokio::time::Instant::now() + timeout;
            if let Some(mut stream) = replay {
                // Revisions are dense and every key is under /registry/, so the replay reaches
                // the cache's start revision exactly.
                while last < start.start_revision {
                    let item = tokio::select! {
                        _ = tx.closed() => return,
                        _ = shutdown.changed() => return,
                        item = stream.recv() => item,
                    };
                    let Some(Ok(store_event)) = item else { return };
                    last = store_event.revision();
                    if storage_of(&store_event.kv.key) != rt.storage {
                        continue;
                    }
                    if let Some(event) = event_from_store(&store_event, None)
                        && let Some(line) = encode(rt, &render, &event, &matches)
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
            }
            for event in &start.backlog {
                if let Some(line) = encode(rt, &render, event, &matches)
                    && tx.send(line).await.is_err()
                {
                    return;
                }
            }
            if initial_events_end && tx.send(bookmark(rt, last, true)).await.is_err() {
                return;
            }
            let mut live = start.live;
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = shutdown.changed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        if tx.send(bookmark(rt, last, false)).await.is_err() { return; }
                    }
                    event = live.recv() => match event {
                        Ok(event) => {
                            if event.revision <= last { continue; }
                            last = event.revision;
                            if let Some(line) = encode(rt, &render, &event, &matches)
                                && tx.send(line).await.is_err()
                            {
                                return;
                            }
                        }
                        // Too slow to follow: end the watch; the client resumes from its last
                        // resourceVersion (or re-lists after a 410).
                        Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => {
                            api.metrics.watch_lagged();
                            return;
                        }
                    }
                }
            }
        });
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)));
        Ok(Box::pin(stream))
    }
}

/// Counts the watch as open while its task lives.
struct OpenWatch(Arc<Api>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.metrics.watch_closed();
    }
}

/// The line for one event as this watcher sees it, or `None` if it does not concern it.
fn encode(
    rt: &ResourceType,
    render: &Render,
    event: &CacheEvent,
    matches: &(dyn Fn(&CachedObject) -> bool + Sync),
) -> Option<Bytes> {
    let now = matches(&event.object);
    let kind = match event.kind {
        EventType::Added if now => EventType::Added,
        EventType::Deleted if now => EventType::Deleted,
        EventType::Modified => match (event.prev.as_deref().is_some_and(matches), now) {
            (true, true) => EventType::Modified,
            (false, true) => EventType::Added,
            (true, false) => EventType::Deleted,
            (false, false) => return None,
        },
        _ => return None,
    };
    let body = match render {
        Render::Object => rest::served_bytes(rt, &event.object),
        Render::Table { include } => {
            let obj = tug_core::convert::from_storage(rt, event.object.value());
            Bytes::from(
                serde_json::to_vec(&crate::tables::table(rt, &[obj], *include, event.revision, false))
                    .unwrap_or_default(),
            )
        }
    };
    let mut line = BytesMut::with_capacity(body.len() + 32);
    line.put_slice(b"{\"type\":\"");
    line.put_slice(kind.as_str().as_bytes());
    line.put_slice(b"\",\"object\":");
    line.put_slice(&body);
    line.put_slice(b"}\n");
    Some(line.freeze())
}

fn bookmark(rt: &ResourceType, revision: Revision, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let event =
        json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}});
    let mut v = serde_json::to_vec(&event).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

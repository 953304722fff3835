//! Watch fan-out: the writer publishes each committed batch here; every watcher whose prefix
//! matches gets the events on its channel. No polling anywhere: a watch from a past revision
//! replays the log once, then rides the same live feed.

use super::{Shared, read};
use crate::{Error, Result, Revision, WatchEvent, WatchStream};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Undelivered events a watch may hold before it is closed as lagging.
const WATCH_BUFFER: usize = 16 * 1024;
/// Events read from the log per history query while replaying.
const REPLAY_PAGE: usize = 1000;

#[derive(Debug)]
struct Watcher {
    prefix: Vec<u8>,
    tx: mpsc::Sender<Result<WatchEvent>>,
    /// Only events newer than this are sent (set when the watch started).
    after: Revision,
    last_sent: Revision,
}

#[derive(Debug)]
pub(super) struct Hub {
    watchers: Vec<Watcher>,
    /// The newest revision handed to watchers.
    published: Revision,
}

impl Hub {
    pub(super) fn new(revision: Revision) -> Self {
        Hub { watchers: Vec::new(), published: revision }
    }

    /// Sends committed events (in revision order) to matching watchers and records `revision`
    /// as published. A watcher whose buffer is down to its last slot gets a `WatchLagged` error
    /// in that slot and is dropped: it must resume from the last revision it saw, which is
    /// cheaper for everyone than buffering without bound.
    pub(super) fn publish(&mut self, events: &[WatchEvent], revision: Revision) {
        self.published = revision;
        self.watchers.retain_mut(|w| {
            for event in events {
                if event.revision() <= w.after || !event.kv.key.as_bytes().starts_with(&w.prefix) {
                    continue;
                }
                if w.tx.capacity() <= 1 {
                    let _ = w.tx.try_send(Err(Error::WatchLagged { last_delivered: w.last_sent }));
                    return false;
                }
                if w.tx.try_send(Ok(event.clone())).is_err() {
                    return false; // the receiver is gone
                }
                w.last_sent = event.revision();
            }
            !w.tx.is_closed()
        });
    }

    /// Ends every watch (the store is shutting down).
    pub(super) fn close_all(&mut self) {
        self.watchers.clear();
    }
}

pub(super) async fn watch(shared: &Arc<Shared>, prefix: &str, after: Revision) -> Result<WatchStream> {
    let compacted = shared.compacted.load(std::sync::atomic::Ordering::Acquire);
    if after < compacted {
        return Err(Error::Compacted { requested: after + 1, compacted });
    }
    let (out_tx, stream) = WatchStream::channel(WATCH_BUFFER);
    let mut hub = shared.hub.lock().unwrap_or_else(|p| p.into_inner());
    let published = hub.published;
    if after >= published {
        // Nothing to replay: ride the live feed directly.
        hub.watchers.push(Watcher { prefix: prefix.as_bytes().to_vec(), tx: out_tx, after, last_sent: after });
        return Ok(stream);
    }
    // Live events newer than `published` queue up on `live` while the log (after, published]
    // is replayed; registering under the hub lock is what makes the hand-over gapless.
    let (live_tx, mut live_rx) = mpsc::channel(WATCH_BUFFER);
    hub.watchers.push(Watcher {
        prefix: prefix.as_bytes().to_vec(),
        tx: live_tx,
        after: published,
        last_sent: published,
    });
    drop(hub);

    let shared = Arc::clone(shared);
    let prefix = prefix.to_string();
    tokio::spawn(async move {
        let mut cursor = after;
        while cursor < published {
            let p = prefix.clone();
            let page = shared.read(move |conn| read::history(conn, &p, cursor, published, REPLAY_PAGE)).await;
            match page {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    let full_page = events.len() == REPLAY_PAGE;
                    for event in events {
                        cursor = event.revision();
                        if out_tx.send(Ok(event)).await.is_err() {
                            return; // the caller dropped the stream
                        }
                    }
                    if !full_page {
                        break;
                    }
                }
                Err(e) => {
                    let _ = out_tx.send(Err(e)).await;
                    return;
                }
            }
        }
        while let Some(item) = live_rx.recv().await {
            if out_tx.send(item).await.is_err() {
                return;
            }
        }
    });
    Ok(stream)
}

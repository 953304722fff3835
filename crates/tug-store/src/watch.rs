//! The stream a watch hands to its caller.

use crate::{Result, WatchEvent};
use tokio::sync::mpsc;

/// Changes in revision order. It ends (`None`) only when the store shuts down; an error item
/// (a lagging consumer, a lost backend connection that cannot be resumed, compaction) is the
/// last item before the end.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchEvent>>,
}

impl WatchStream {
    /// A stream fed by `tx`, with room for `capacity` undelivered events.
    pub(crate) fn channel(capacity: usize) -> (mpsc::Sender<Result<WatchEvent>>, Self) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, WatchStream { rx })
    }

    /// The next event, or `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.recv().await
    }

    /// An event already waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.try_recv().ok()
    }
}

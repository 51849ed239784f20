//! What streams may hold: a slot each (a fixed number in all, so a flood of streams cannot
//! take every worker thread), a byte budget for the messages waiting for the client, and a
//! send timeout for a client that stops reading. Health follows the slots: NOT_SERVING while
//! they are all taken.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Limits of the streaming RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Streams running at once, over all connections (GenerateDays, StreamEvents,
    /// GetUserJourney, QueryCohort). One more is refused with RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Bytes of messages a stream may hold for a client that has not read them yet (a message
    /// larger than this still goes, alone).
    pub buffer_bytes: usize,
    /// How long a stream waits for its client to read before it ends with ABORTED.
    pub send_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_streams: 64,
            buffer_bytes: 16 << 20,
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// The slots, and whether they are all taken.
#[derive(Debug)]
pub(crate) struct Slots {
    free: Arc<Semaphore>,
    max: usize,
    saturated: watch::Sender<bool>,
}

/// One stream's slot, given back when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The permit goes back after this body; one is free from then on.
        self.slots
            .saturated
            .send_if_modified(|s| std::mem::replace(s, false));
    }
}

impl Slots {
    pub(crate) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            free: Arc::new(Semaphore::new(max)),
            max,
            saturated: watch::channel(false).0,
        })
    }

    /// A slot, or `None` when all are taken.
    pub(crate) fn take(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.free.clone().try_acquire_owned().ok()?;
        if self.free.available_permits() == 0 {
            self.saturated
                .send_if_modified(|s| !std::mem::replace(s, true));
        }
        Some(Slot {
            _permit: permit,
            slots: self.clone(),
        })
    }

    /// How many slots there are.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Follows saturation: true while every slot is taken.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.saturated.subscribe()
    }
}

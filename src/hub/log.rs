//! The seam to a shared log (Redis Streams), for several instances on one feed.
//!
//! The hub is the whole engine: topics, history, fan-out, replay. A shared log only
//! numbers and keeps events that several instances share. The seam runs one way: the
//! hub calls the log ([`SharedLog`]); what the log reads back (events from every
//! instance, the confirmation that a topic is watched, where the log stands) comes to
//! the hub as [`Delivery`] values on a channel the hub hands it and drains itself.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::conflate::Item;
use super::deliveries::Applier;
use super::{PublishError, Published};
use crate::Event;

/// A log shared by several hubs. Implemented by `RedisStorage` only.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) trait SharedLog: Send + Sync + fmt::Debug + 'static {
    /// Connects the log to its hub, once, when the hub is built. The log starts its tasks
    /// on the runtime current at its first use (and again if that runtime went away),
    /// with a task from [`Applier::spawn`] beside them: what the log reads goes there,
    /// in id order.
    fn attach(&self, hub: Applier);

    /// Takes `event` to be numbered and appended on `topic`, with its conflation key if
    /// it has one (stored with it). Must not block.
    fn publish(
        &self,
        topic: &str,
        key: Option<&str>,
        event: Event,
    ) -> Result<Published, PublishError>;

    /// `topic` has local subscribers now: deliver its events and confirm with
    /// [`Delivery::Covered`] carrying `generation`. Must not block.
    fn watch(&self, topic: &Arc<str>, generation: u64);

    /// `topic` has no local subscriber any more. Must not block.
    fn unwatch(&self, topic: &Arc<str>);

    /// At most `count` events of `topic` with ids in `after + 1 ..= upto`, oldest first,
    /// with their conflation keys, without their `id:` line. Retries while the log is
    /// unreachable.
    fn page(&self, topic: &Arc<str>, after: u64, upto: u64, count: usize) -> PageFuture;
}

/// What a shared log reads back, in the order the hub must apply it.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Events of watched topics, in id order.
    Events(Vec<Logged>),
    /// Every event of `topic` with an id greater than `after` is delivered from now on,
    /// for the watch of `generation`.
    Covered {
        topic: Arc<str>,
        generation: u64,
        after: u64,
    },
    /// The log's newest id: subscribers without a `Last-Event-ID` start there.
    Advance(u64),
    /// The log went back (it lost events) and began again above `id`: every topic gets
    /// the reset event under `id`, which is above every id issued before and below every
    /// id issued after.
    Reset { id: u64 },
}

/// An event a shared log delivers: `(id, topic, conflation key, event without id)`.
pub(crate) type Logged = (u64, Arc<str>, Option<Arc<str>>, Event);

/// The answer of [`SharedLog::page`].
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum Page {
    /// Events asked for, oldest first, and the id to read the next page after (`None`
    /// when the range is exhausted).
    Events {
        events: Vec<Item>,
        next: Option<u64>,
    },
    /// Some of the events asked for are no longer kept, or `after` was never issued.
    Gap(GapReason),
}

pub(crate) type PageFuture = Pin<Box<dyn Future<Output = Page> + Send>>;

/// Why a subscriber receives the reset event instead of the events it missed; the reset
/// event's data is this reason's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GapReason {
    /// History no longer holds all of them.
    Evicted,
    /// The id is newer than any event, or from another run of the hub.
    Unknown,
    /// The id is not an id of this hub.
    Malformed,
    /// The subscriber fell behind and skipped ahead.
    Lagged,
    /// The shared log lost events (Redis restarted without persistence, was flushed, or
    /// failed over to a replica that lagged) and began again after `from`: what it
    /// holds after `from` can still be replayed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Lost { from: u64 },
}

impl GapReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GapReason::Evicted => "evicted",
            GapReason::Unknown => "unknown",
            GapReason::Malformed => "malformed",
            GapReason::Lagged => "lagged",
            GapReason::Lost { .. } => "lost",
        }
    }
}

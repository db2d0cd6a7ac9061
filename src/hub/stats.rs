//! What a topic's counters say.

/// Counters of one topic, read from [`Hub::stats`](super::Hub::stats).
///
/// ```
/// let hub = tower_sse::Hub::new();
/// let _subscription = hub.subscribe(["t"], None);
/// let stats = hub.stats("t").unwrap();
/// assert_eq!((stats.subscribers, stats.published), (1, 0));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// The topic.
    pub topic: String,
    /// Subscribers reading it now.
    pub subscribers: usize,
    /// Events published on it.
    pub published: u64,
    /// Events taken by its subscribers (one per subscriber per event).
    pub delivered: u64,
    /// Events subscribers did not receive because they fell behind.
    pub dropped: u64,
    /// Subscribers cut off, skipped ahead or caught up in short for falling behind.
    pub lagged: u64,
    /// Events in its history now.
    pub history: usize,
    /// Distinct conflation keys its key index holds now (at most
    /// [`conflate_keys`](super::HubBuilder::conflate_keys); 0 when the hub does not
    /// conflate).
    pub keys: usize,
    /// Catch-ups served in short, the newest event of each key and every keyless event:
    /// to subscribers that fell behind under
    /// [`LagPolicy::Conflate`](super::LagPolicy::Conflate), and to resumers with
    /// [`conflate_replay`](super::HubBuilder::conflate_replay).
    pub conflated: u64,
    /// Catch-ups the key index could not serve in short, because it had to let go of
    /// what the reader needed (more distinct keys than
    /// [`conflate_keys`](super::HubBuilder::conflate_keys), or more keyless events than
    /// the live window holds): a subscriber that fell behind got the reset event
    /// instead, a resumer every event history holds (or the reset event).
    pub conflate_fallbacks: u64,
}

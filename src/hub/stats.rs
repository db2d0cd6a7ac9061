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
    /// Subscribers cut off or skipped ahead for falling behind.
    pub lagged: u64,
    /// Events in its history now.
    pub history: usize,
}

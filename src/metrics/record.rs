//! The recording helpers the rest of the crate calls, one line at each point that
//! counts. Without the `metrics` feature every one of them is empty (and every type a
//! zero-sized one), so the calls compile to nothing.

#![cfg_attr(not(feature = "metrics"), allow(unused_variables, clippy::unused_self))]

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "metrics")]
use std::collections::HashMap;
#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[cfg(feature = "metrics")]
use ::metrics::{Counter, Gauge, counter, gauge, histogram};
// The std clock, not tokio's: a metric wants real time, and tokio's `Instant::now`
// costs more where tokio's `test-util` is on.
#[cfg(feature = "metrics")]
use std::time::Instant;

#[cfg(feature = "metrics")]
use super::*;
#[cfg(feature = "metrics")]
use crate::EndReason;
use crate::hub::PublishError;

// ---- Streams ---------------------------------------------------------------------------

/// The `reason` label of an end.
#[cfg(feature = "metrics")]
pub(super) fn end_label(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Finished => "finished",
        EndReason::ClientGone => "client_gone",
        EndReason::Error => "error",
        EndReason::Shutdown => "shutdown",
        EndReason::Stalled => "stalled",
    }
}

/// A stream refused by the layer: `limit`, `per_client` or `method`.
#[inline]
pub(crate) fn refused(reason: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(STREAMS_REFUSED, "reason" => reason).increment(1);
}

/// A response the layer passes through: counted when it is a refusal made by the
/// service below (a [`Refusal`](crate::Refusal), marked as served, that is not a
/// stream).
#[inline]
pub(crate) fn passed_through<B>(response: &http::Response<B>) {
    #[cfg(feature = "metrics")]
    if crate::event_stream::is_served(response) && !crate::event_stream::is_event_stream(response) {
        let reason = match response.status().as_u16() {
            204 => "stop",
            503 => "unavailable",
            400 => "bad_request",
            403 => "forbidden",
            _ => "other",
        };
        refused(reason);
    }
}

/// What one stream has written and not yet handed to the recorder, and its share of the
/// gauges: counted open from its start to its drop.
///
/// Per-event counters are summed here and flushed on drop, every 256 writes, and
/// otherwise once a second has passed, as seen at every fourth write or at a
/// heartbeat: thousands of streams writing one event each do not each touch the
/// recorder's shared counters per event, nor read the clock per write.
#[derive(Debug, Default)]
pub(crate) struct StreamMeter {
    // In the stream's own allocation: a write touches no other cache line for it.
    #[cfg(feature = "metrics")]
    inner: Option<MeterState>,
}

/// Writes after which a stream's sums are flushed whatever the time.
#[cfg(feature = "metrics")]
const FLUSH_WRITES: u32 = 256;
/// How long a stream's sums wait to be flushed, at least.
#[cfg(feature = "metrics")]
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The clock is read at every this many writes (and at each heartbeat), not at every
/// write: a clock read costs more than the rest of the meter.
#[cfg(feature = "metrics")]
const CLOCK_EVERY: u32 = 4;

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct MeterState {
    /// When the request reached the layer, until the first frame is written.
    requested: Option<Instant>,
    compression: &'static str,
    last_flush: Instant,
    events: u64,
    written: u64,
    uncompressed: u64,
    writes: u32,
    batched: u32,
    heartbeats: u32,
}

impl StreamMeter {
    /// A stream starts, requested at `requested`, compressed with `compression` (a
    /// codec's token) or not.
    #[cfg(feature = "metrics")]
    pub(super) fn start(requested: Option<Instant>, compression: Option<&'static str>) -> Self {
        {
            counter!(STREAMS_OPENED).increment(1);
            gauge!(STREAMS_OPEN).increment(1.0);
            let now = Instant::now();
            StreamMeter {
                inner: Some(MeterState {
                    requested,
                    compression: compression.unwrap_or("none"),
                    last_flush: now,
                    events: 0,
                    written: 0,
                    uncompressed: 0,
                    writes: 0,
                    batched: 0,
                    heartbeats: 0,
                }),
            }
        }
    }

    /// A frame handed to the connection: `events` events, `raw` bytes before
    /// compression, `wire` after.
    #[inline]
    pub(crate) fn wrote(&mut self, events: u64, raw: usize, wire: usize) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &mut self.inner {
            state.wrote(events, raw, wire);
        }
    }

    /// The frame about to be written is a heartbeat.
    #[inline]
    pub(crate) fn heartbeat(&mut self) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &mut self.inner {
            state.heartbeats += 1;
        }
    }
}

#[cfg(feature = "metrics")]
impl MeterState {
    fn wrote(&mut self, events: u64, raw: usize, wire: usize) {
        if let Some(requested) = self.requested.take() {
            histogram!(STREAM_FIRST_BYTE).record(requested.elapsed());
        }
        self.events += events;
        self.written += wire as u64;
        self.uncompressed += raw as u64;
        self.writes += 1;
        if events > 1 {
            self.batched += 1;
        }
        let look = self.writes.is_multiple_of(CLOCK_EVERY) || self.heartbeats > 0;
        if self.writes >= FLUSH_WRITES || (look && self.last_flush.elapsed() >= FLUSH_EVERY) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.writes == 0 && self.heartbeats == 0 {
            return;
        }
        let compression = self.compression;
        if self.events > 0 {
            counter!(STREAM_EVENTS).increment(std::mem::take(&mut self.events));
        }
        counter!(STREAM_WRITTEN_BYTES, "compression" => compression)
            .increment(std::mem::take(&mut self.written));
        let uncompressed = std::mem::take(&mut self.uncompressed);
        if compression != "none" {
            counter!(STREAM_UNCOMPRESSED_BYTES, "compression" => compression)
                .increment(uncompressed);
        }
        counter!(STREAM_WRITES).increment(u64::from(std::mem::take(&mut self.writes)));
        if self.batched > 0 {
            counter!(STREAM_BATCHED_WRITES).increment(u64::from(std::mem::take(&mut self.batched)));
        }
        if self.heartbeats > 0 {
            counter!(STREAM_HEARTBEATS).increment(u64::from(std::mem::take(&mut self.heartbeats)));
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for StreamMeter {
    fn drop(&mut self) {
        if let Some(state) = &mut self.inner {
            state.flush();
            gauge!(STREAMS_OPEN).decrement(1.0);
        }
    }
}

// ---- The hub ---------------------------------------------------------------------------

/// The topics named by [`HubBuilder::metric_topics`](crate::hub::HubBuilder::metric_topics).
#[derive(Clone, Debug, Default)]
pub(crate) struct TopicLabels(
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] Option<Arc<[Arc<str>]>>,
);

impl TopicLabels {
    pub(crate) fn new(topics: Vec<Arc<str>>) -> Self {
        TopicLabels((!topics.is_empty()).then(|| topics.into()))
    }
}

/// A hub's counters: the per-publish counter resolved once (when the hub is built), and
/// what the hub added to the gauges, taken back when it is dropped.
#[derive(Debug, Default)]
pub(crate) struct HubMetrics {
    #[cfg(feature = "metrics")]
    inner: Option<Box<HubState>>,
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct HubState {
    /// Without `metric_topics` (a series without a `topic` label, only then).
    published: Option<Counter>,
    /// With `metric_topics`: each named topic's label, and the handles per label.
    labels: Option<Labels>,
    topics: AtomicI64,
    held: AtomicU64,
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Labels {
    published: HashMap<Arc<str>, Counter>,
    published_other: Counter,
    subscribers: HashMap<Arc<str>, Gauge>,
    subscribers_other: Gauge,
}

#[cfg(feature = "metrics")]
impl Labels {
    fn new(topics: &[Arc<str>]) -> Self {
        let label = |topic: &Arc<str>| topic.to_string();
        Labels {
            published: topics
                .iter()
                .map(|t| (t.clone(), counter!(HUB_PUBLISHED, "topic" => label(t))))
                .collect(),
            published_other: counter!(HUB_PUBLISHED, "topic" => "other"),
            subscribers: topics
                .iter()
                .map(|t| {
                    (
                        t.clone(),
                        gauge!(HUB_TOPIC_SUBSCRIBERS, "topic" => label(t)),
                    )
                })
                .collect(),
            subscribers_other: gauge!(HUB_TOPIC_SUBSCRIBERS, "topic" => "other"),
        }
    }

    fn subscribers(&self, topic: &str) -> &Gauge {
        self.subscribers
            .get(topic)
            .unwrap_or(&self.subscribers_other)
    }

    fn topic<'a>(&self, topic: &'a str) -> &'a str {
        if self.published.contains_key(topic) {
            topic
        } else {
            "other"
        }
    }
}

impl HubMetrics {
    pub(crate) fn new(labels: &TopicLabels) -> Self {
        #[cfg(feature = "metrics")]
        {
            let labels = labels.0.as_deref().map(Labels::new);
            HubMetrics {
                inner: Some(Box::new(HubState {
                    published: labels.is_none().then(|| counter!(HUB_PUBLISHED)),
                    labels,
                    topics: AtomicI64::new(0),
                    held: AtomicU64::new(0),
                })),
            }
        }
        #[cfg(not(feature = "metrics"))]
        HubMetrics {}
    }

    /// The outcome of a publish on `topic`.
    #[inline]
    pub(crate) fn published<T>(&self, topic: &str, outcome: &Result<T, PublishError>) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &self.inner {
            match (outcome, &state.labels, &state.published) {
                (Ok(_), Some(labels), _) => labels
                    .published
                    .get(topic)
                    .unwrap_or(&labels.published_other)
                    .increment(1),
                (Ok(_), None, Some(published)) => published.increment(1),
                (Ok(_), None, None) => {}
                (Err(error), ..) => publish_failed(error),
            }
        }
    }

    /// A subscription on `topics` opened.
    #[inline]
    pub(crate) fn subscribed(&self, topics: &[Arc<str>]) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &self.inner {
            gauge!(HUB_SUBSCRIPTIONS).increment(1.0);
            if let Some(labels) = &state.labels {
                topics
                    .iter()
                    .for_each(|t| labels.subscribers(t).increment(1.0));
            }
        }
    }

    /// A subscription on `topics` was dropped.
    #[inline]
    pub(crate) fn unsubscribed<'a>(&self, topics: impl Iterator<Item = &'a str>) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &self.inner {
            gauge!(HUB_SUBSCRIPTIONS).decrement(1.0);
            if let Some(labels) = &state.labels {
                topics.for_each(|t| labels.subscribers(t).decrement(1.0));
            }
        }
    }

    /// A subscriber on `topic` fell behind, and what `policy` did with it.
    #[inline]
    pub(crate) fn lagged(&self, topic: &str, policy: crate::hub::LagPolicy) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &self.inner {
            let policy = match policy {
                crate::hub::LagPolicy::Disconnect => "disconnect",
                crate::hub::LagPolicy::SkipAhead => "skip_ahead",
                crate::hub::LagPolicy::Conflate => "conflate",
            };
            match &state.labels {
                None => counter!(HUB_LAGGED, "policy" => policy).increment(1),
                Some(labels) => {
                    let topic = labels.topic(topic).to_owned();
                    counter!(HUB_LAGGED, "policy" => policy, "topic" => topic).increment(1);
                }
            }
        }
    }

    /// A topic was put in the hub's map.
    #[inline]
    pub(crate) fn topic_added(&self) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &self.inner {
            state.topics.fetch_add(1, Ordering::Relaxed);
            gauge!(HUB_TOPICS).increment(1.0);
        }
    }

    /// A topic left the hub's map: `evicted` for the budget, else idle.
    #[inline]
    pub(crate) fn topic_dropped(&self, evicted: bool) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &self.inner {
            state.topics.fetch_sub(1, Ordering::Relaxed);
            gauge!(HUB_TOPICS).decrement(1.0);
            let reason = if evicted { "evicted" } else { "idle" };
            counter!(HUB_TOPICS_DROPPED, "reason" => reason).increment(1);
        }
    }

    /// The bytes the hub's budget counts now.
    #[inline]
    pub(crate) fn held_bytes(&self, held: usize) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &self.inner {
            let before = state.held.swap(held as u64, Ordering::Relaxed);
            if before != held as u64 {
                gauge!(HUB_HISTORY_BYTES).increment(held as f64 - before as f64);
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for HubMetrics {
    fn drop(&mut self) {
        // The hub is gone: what it added to the gauges goes with it.
        if let Some(state) = &self.inner {
            let topics = state.topics.load(Ordering::Relaxed);
            if topics != 0 {
                gauge!(HUB_TOPICS).decrement(topics as f64);
            }
            let held = state.held.load(Ordering::Relaxed);
            if held != 0 {
                gauge!(HUB_HISTORY_BYTES).decrement(held as f64);
            }
        }
    }
}

#[cfg(feature = "metrics")]
fn publish_failed(error: &PublishError) {
    let kind = match error {
        PublishError::Unreachable(_) => "unreachable",
        PublishError::Rejected(_) => "rejected",
        PublishError::NoRuntime => "no_runtime",
        PublishError::QueueFull => "queue_full",
        PublishError::Stopped => "stopped",
        PublishError::EmptyTopic => "empty_topic",
        PublishError::InvalidKey { .. } => "invalid_key",
    };
    counter!(HUB_PUBLISH_ERRORS, "kind" => kind).increment(1);
}

/// Redis refused an event the hub had taken.
#[inline]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn publish_rejected() {
    #[cfg(feature = "metrics")]
    counter!(HUB_PUBLISH_ERRORS, "kind" => "rejected").increment(1);
}

/// A reset event for `reason` (its data: `evicted`, `unknown`, ...).
#[inline]
pub(crate) fn hub_reset(reason: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(HUB_RESETS, "reason" => reason).increment(1);
}

/// `events` replayed to a resuming subscriber, from the hub's memory or (`redis`) from
/// its shared log.
#[inline]
pub(crate) fn hub_replayed(events: u64, redis: bool) {
    #[cfg(feature = "metrics")]
    if events > 0 {
        let source = if redis { "redis" } else { "memory" };
        counter!(HUB_REPLAYED, "source" => source).increment(events);
    }
}

// ---- Redis -----------------------------------------------------------------------------

/// A failed Redis command of `task` (`writer`, `reader`, `history`), retried after a
/// backoff.
#[inline]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn redis_reconnect(task: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(REDIS_RECONNECTS, "task" => task).increment(1);
}

/// One write to Redis took `time`.
#[inline]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn redis_write_time(time: Duration) {
    #[cfg(feature = "metrics")]
    histogram!(REDIS_WRITE_SECONDS).record(time);
}

/// What one writer added to the queue gauge, so that several writers in a process add
/// up, and a writer that stops takes its share back.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct QueueDepth {
    #[cfg(feature = "metrics")]
    reported: usize,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl QueueDepth {
    /// `waiting` events wait to be written now.
    #[inline]
    pub(crate) fn set(&mut self, waiting: usize) {
        #[cfg(feature = "metrics")]
        if waiting != self.reported {
            gauge!(REDIS_WRITE_QUEUE).increment(waiting as f64 - self.reported as f64);
            self.reported = waiting;
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for QueueDepth {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// How long one reader has been behind: since the last read that reached the end of
/// every stream it reads.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct ReadLag {
    #[cfg(feature = "metrics")]
    caught_up: Instant,
    #[cfg(feature = "metrics")]
    reported: f64,
}

impl Default for ReadLag {
    fn default() -> Self {
        ReadLag {
            #[cfg(feature = "metrics")]
            caught_up: Instant::now(),
            #[cfg(feature = "metrics")]
            reported: 0.0,
        }
    }
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl ReadLag {
    /// A read returned; `complete`: it reached the newest entry of every stream.
    #[inline]
    pub(crate) fn read(&mut self, complete: bool) {
        #[cfg(feature = "metrics")]
        {
            let lag = if complete {
                self.caught_up = Instant::now();
                0.0
            } else {
                self.caught_up.elapsed().as_secs_f64()
            };
            if lag != self.reported {
                gauge!(REDIS_READ_LAG).increment(lag - self.reported);
                self.reported = lag;
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for ReadLag {
    fn drop(&mut self) {
        if self.reported != 0.0 {
            gauge!(REDIS_READ_LAG).decrement(self.reported);
        }
    }
}

// ---- Serving ---------------------------------------------------------------------------
// Called by `serve` (feature `serve`) and `WriteTimeout`.

/// One connection accepted, counted open until this is dropped.
#[derive(Debug)]
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) struct OpenConnection(());

/// A connection was accepted: counted open until the value returned is dropped.
#[inline]
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn connection_open() -> OpenConnection {
    #[cfg(feature = "metrics")]
    {
        counter!(CONNECTIONS_ACCEPTED).increment(1);
        gauge!(CONNECTIONS_OPEN).increment(1.0);
    }
    OpenConnection(())
}

#[cfg(feature = "metrics")]
impl Drop for OpenConnection {
    fn drop(&mut self) {
        gauge!(CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// A connection closed at a deadline: `first_request`, `header_read` or `write`.
#[inline]
pub(crate) fn connection_timed_out(deadline: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(CONNECTIONS_TIMED_OUT, "deadline" => deadline).increment(1);
}

/// A connection ended with `error`: counted when hyper closed it at its header read
/// timeout.
#[inline]
#[cfg_attr(not(feature = "serve"), allow(dead_code, unused_variables))]
pub(crate) fn connection_error(error: &(dyn std::error::Error + 'static)) {
    #[cfg(all(feature = "metrics", feature = "serve"))]
    if error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout)
    {
        connection_timed_out("header_read");
    }
}

/// An accept error: about one connection, or not (`resources`).
#[inline]
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn accept_error(one_connection: bool) {
    #[cfg(feature = "metrics")]
    {
        let kind = if one_connection {
            "connection"
        } else {
            "resources"
        };
        counter!(ACCEPT_ERRORS, "kind" => kind).increment(1);
    }
}

/// Accepting paused: at the connection cap, or after an accept error.
#[inline]
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn accept_paused(at_cap: bool) {
    #[cfg(feature = "metrics")]
    {
        let cause = if at_cap { "cap" } else { "error" };
        counter!(ACCEPT_PAUSES, "cause" => cause).increment(1);
    }
}

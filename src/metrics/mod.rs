//! Metrics and tracing: what an operator of a live feed watches, in the tools they
//! already run.
//!
//! # Metrics
//!
//! With the `metrics` feature, the layer, the hub, its Redis storage and [`serve`](crate::serve)
//! record their numbers through the [`metrics`](https://docs.rs/metrics) facade. The
//! library ships no exporter: the application installs the recorder it wants
//! (`metrics-exporter-prometheus`, an OpenTelemetry or statsd recorder) before it builds
//! the layer and the hub, and calls [`describe`] once to give every metric its unit and
//! help text. Without the feature nothing is recorded and nothing is compiled in.
//!
//! ```
//! use metrics_util::debugging::DebuggingRecorder;
//! use tower_sse::{Event, Hub};
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     tower_sse::metrics::describe();
//!     let hub = Hub::new();
//!     let _subscription = hub.subscribe(["news"], None);
//!     hub.publish("news", Event::data("extra!")).unwrap();
//! });
//! let names: Vec<String> = snapshotter
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .map(|(key, ..)| key.key().name().to_owned())
//!     .collect();
//! assert!(names.iter().any(|name| name == "tower_sse_hub_published_total"));
//! assert!(names.iter().any(|name| name == "tower_sse_hub_subscriptions"));
//! ```
//!
//! No label takes a value that a client or a publisher chooses: no topic name, no client
//! address, no path. Every label below has a fixed set of values, so the number of
//! series stays the same whatever arrives (`tests/metrics.rs` sends a million topics and
//! a million client addresses). Topic names become a label only when the application
//! names a bounded set with [`HubBuilder::metric_topics`](crate::hub::HubBuilder::metric_topics);
//! every other topic is then counted as `other`.
//!
//! | metric | type | labels | what it counts |
//! |---|---|---|---|
//! | `tower_sse_streams_open` | gauge | | event streams open: from the response to the connection letting go of its body |
//! | `tower_sse_streams_opened_total` | counter | | event streams started |
//! | `tower_sse_streams_ended_total` | counter | `reason`: `finished`, `client_gone`, `error`, `shutdown`, `stalled` | ends, as [`StreamEnd::reason`](crate::StreamEnd::reason) reports them |
//! | `tower_sse_streams_refused_total` | counter | `reason`: `limit`, `per_client`, `method`, `stop`, `unavailable`, `bad_request`, `forbidden`, `other` | requests answered with a refusal instead of a stream: by the [`StreamLimit`](crate::StreamLimit) (`limit`, `per_client`), 405 for a method other than GET, and the [`Refusal`](crate::Refusal)s of the service below the layer (204 [`stop`](crate::Refusal::stop), 503, 400, 403, other statuses) |
//! | `tower_sse_streams_stalled` | gauge | | streams ended as stalled whose connection still holds them (and their place under the limit) |
//! | `tower_sse_stream_events_total` | counter | | events handed to connections |
//! | `tower_sse_stream_written_bytes_total` | counter | `compression`: `none`, `gzip`, `deflate`, `br`, `zstd` | bytes handed to connections, after compression: the bytes on the wire |
//! | `tower_sse_stream_uncompressed_bytes_total` | counter | `compression`: `gzip`, `deflate`, `br`, `zstd` | bytes of compressed streams before compression |
//! | `tower_sse_stream_writes_total` | counter | | frames handed to connections (events, heartbeats, the `retry:` prelude) |
//! | `tower_sse_stream_batched_writes_total` | counter | | writes that carried more than one event (coalesced, or batched by [`batch_delay`](crate::SseLayer::batch_delay)) |
//! | `tower_sse_stream_heartbeats_total` | counter | | heartbeats written |
//! | `tower_sse_stream_first_byte_seconds` | histogram | | from the request reaching the layer to the stream's first frame |
//! | `tower_sse_hub_published_total` | counter | `topic` (opt-in) | events published and taken (on Redis: queued to be written) |
//! | `tower_sse_hub_publish_errors_total` | counter | `kind`: `unreachable`, `rejected`, `queue_full`, `no_runtime`, `stopped`, `empty_topic`, `invalid_key` | publishes that failed, by [`PublishError`](crate::hub::PublishError) (`rejected`: Redis refused the event after it was taken) |
//! | `tower_sse_hub_subscriptions` | gauge | | subscriptions open |
//! | `tower_sse_hub_topic_subscribers` | gauge | `topic` (only with `metric_topics`) | subscriptions reading each named topic, and the others as `other` |
//! | `tower_sse_hub_topics` | gauge | | topics held |
//! | `tower_sse_hub_topics_dropped_total` | counter | `reason`: `idle`, `evicted` | topics dropped: nobody read them and they held nothing (`idle`), or evicted for the [`budget`](crate::hub::HubBuilder::budget) |
//! | `tower_sse_hub_lagged_total` | counter | `policy`: `disconnect`, `skip_ahead`, `conflate`; `topic` (opt-in) | subscribers that fell behind their live window |
//! | `tower_sse_hub_resets_total` | counter | `reason`: `evicted`, `unknown`, `malformed`, `lagged`, `lost` | reset events (`stream-reset`) sent: one per subscriber, but one per reset of the shared log for `lost` |
//! | `tower_sse_hub_replayed_events_total` | counter | `source`: `memory`, `redis` | events replayed to subscribers that resumed with a `Last-Event-ID` |
//! | `tower_sse_hub_history_bytes` | gauge | | bytes the hub's budget counts now (sampled at every 64th publish and at each subscribe) |
//! | `tower_sse_redis_write_queue` | gauge | | published events waiting to be written to Redis (sampled at each write) |
//! | `tower_sse_redis_write_seconds` | histogram | | one pipelined write of a batch of events to Redis, until its replies |
//! | `tower_sse_redis_reconnects_total` | counter | `task`: `writer`, `reader`, `history` | failed Redis commands retried after a backoff |
//! | `tower_sse_redis_read_lag_seconds` | gauge | | how long the reader has been reading full batches without reaching the newest entry (0: caught up) |
//! | `tower_sse_connections_open` | gauge | | connections [`serve`](crate::serve) holds open |
//! | `tower_sse_connections_accepted_total` | counter | | connections accepted |
//! | `tower_sse_connections_timed_out_total` | counter | `deadline`: `first_request`, `header_read`, `write` | connections closed at a deadline |
//! | `tower_sse_accept_errors_total` | counter | `kind`: `connection`, `resources` | accept errors: about one connection, or the process running out of something (`EMFILE`), which pauses accepting |
//! | `tower_sse_accept_pauses_total` | counter | `cause`: `cap`, `error` | times accepting paused: at the connection cap, or after an accept error |
//!
//! The per-event counters of a stream (events, bytes, writes, heartbeats) are summed in
//! the stream and handed to the recorder in batches: every 256 writes, otherwise about
//! once a second (looked at every fourth write and at each heartbeat), and when the
//! stream is dropped. They lag the wire by that much (a stream that writes rarely and
//! never idles for a heartbeat interval, up to four writes); once a stream is over they
//! are exact. The hub resolves its per-publish counter when it is built, so
//! install the recorder first.
//!
//! # Tracing
//!
//! Each request that reaches an [`SseLayer`](crate::SseLayer) gets a `debug` span,
//! `sse_stream`, with its method, path, HTTP version, client address (a `SocketAddr` in
//! its extensions, as [`serve`](crate::serve) puts there, or axum's `ConnectInfo`), the
//! id it resumes from, and, once a [`Hub`](crate::Hub) subscribes it, its topics. The
//! stream's lines are logged in it: the refusal, the start (`sse stream started`), the
//! stall, the end (`sse stream ended`, with what it sent). Run with
//! `RUST_LOG=tower_sse=debug` to see them. Nothing a client sends is logged above
//! `debug`: a malformed `Last-Event-ID`, a refused topic, a stream over the limit, a
//! subscriber that falls behind. Warnings are about the server (Redis unreachable, the
//! connection cap reached), and repeated ones are rate-limited.

mod hub;
mod redis;
mod serve;
mod span;
mod stream;

// Which of these the rest of the crate calls depends on its features.
#[allow(unused_imports)]
pub(crate) use hub::{HubMetrics, TopicLabels, hub_replayed, hub_reset, publish_rejected};
#[allow(unused_imports)]
pub(crate) use redis::{QueueDepth, ReadLag, redis_reconnect, redis_write_time};
#[allow(unused_imports)]
pub(crate) use serve::{
    OpenConnection, accept_error, accept_paused, connection_error, connection_open,
    connection_timed_out,
};
pub(crate) use span::{Observed, StreamStart, record_topics};
#[allow(unused_imports)]
pub(crate) use stream::{StreamMeter, passed_through, refused};

/// One metric: its name, kind, unit and what it counts.
#[cfg(feature = "metrics")]
struct Def {
    name: &'static str,
    kind: Kind,
    unit: ::metrics::Unit,
    help: &'static str,
}

#[cfg(feature = "metrics")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[cfg(feature = "metrics")]
macro_rules! defs {
    ($($name:ident = $value:literal, $kind:ident, $unit:ident, $help:literal;)*) => {
        $(pub(crate) const $name: &str = $value;)*
        /// Every metric, for [`describe`] (and the test that the table above lists them).
        const DEFS: &[Def] = &[$(Def {
            name: $value,
            kind: Kind::$kind,
            unit: ::metrics::Unit::$unit,
            help: $help,
        }),*];
    };
}

#[cfg(feature = "metrics")]
defs! {
    STREAMS_OPEN = "tower_sse_streams_open", Gauge, Count,
        "Event streams open: from the response to the connection letting go of its body.";
    STREAMS_OPENED = "tower_sse_streams_opened_total", Counter, Count,
        "Event streams started.";
    STREAMS_ENDED = "tower_sse_streams_ended_total", Counter, Count,
        "Event streams ended, by reason.";
    STREAMS_REFUSED = "tower_sse_streams_refused_total", Counter, Count,
        "Requests answered with a refusal instead of an event stream, by reason.";
    STREAMS_STALLED = "tower_sse_streams_stalled", Gauge, Count,
        "Streams ended as stalled whose connection still holds them.";
    STREAM_EVENTS = "tower_sse_stream_events_total", Counter, Count,
        "Events handed to connections.";
    STREAM_WRITTEN_BYTES = "tower_sse_stream_written_bytes_total", Counter, Bytes,
        "Bytes handed to connections, after compression.";
    STREAM_UNCOMPRESSED_BYTES = "tower_sse_stream_uncompressed_bytes_total", Counter, Bytes,
        "Bytes of compressed streams before compression.";
    STREAM_WRITES = "tower_sse_stream_writes_total", Counter, Count,
        "Frames handed to connections.";
    STREAM_BATCHED_WRITES = "tower_sse_stream_batched_writes_total", Counter, Count,
        "Writes that carried more than one event.";
    STREAM_HEARTBEATS = "tower_sse_stream_heartbeats_total", Counter, Count,
        "Heartbeats written.";
    STREAM_FIRST_BYTE = "tower_sse_stream_first_byte_seconds", Histogram, Seconds,
        "Time from the request reaching the layer to the stream's first frame.";
    HUB_PUBLISHED = "tower_sse_hub_published_total", Counter, Count,
        "Events published and taken by the hub.";
    HUB_PUBLISH_ERRORS = "tower_sse_hub_publish_errors_total", Counter, Count,
        "Publishes that failed, by kind.";
    HUB_SUBSCRIPTIONS = "tower_sse_hub_subscriptions", Gauge, Count,
        "Hub subscriptions open.";
    HUB_TOPIC_SUBSCRIBERS = "tower_sse_hub_topic_subscribers", Gauge, Count,
        "Subscriptions reading each topic named by metric_topics (others as `other`).";
    HUB_TOPICS = "tower_sse_hub_topics", Gauge, Count,
        "Topics the hub holds.";
    HUB_TOPICS_DROPPED = "tower_sse_hub_topics_dropped_total", Counter, Count,
        "Topics dropped, idle or evicted for the budget.";
    HUB_LAGGED = "tower_sse_hub_lagged_total", Counter, Count,
        "Subscribers that fell behind their live window.";
    HUB_RESETS = "tower_sse_hub_resets_total", Counter, Count,
        "Reset events sent, by reason.";
    HUB_REPLAYED = "tower_sse_hub_replayed_events_total", Counter, Count,
        "Events replayed to resuming subscribers.";
    HUB_HISTORY_BYTES = "tower_sse_hub_history_bytes", Gauge, Bytes,
        "Bytes the hub's budget counts (sampled).";
    REDIS_WRITE_QUEUE = "tower_sse_redis_write_queue", Gauge, Count,
        "Published events waiting to be written to Redis (sampled at each write).";
    REDIS_WRITE_SECONDS = "tower_sse_redis_write_seconds", Histogram, Seconds,
        "Time of one pipelined write of a batch of events to Redis.";
    REDIS_RECONNECTS = "tower_sse_redis_reconnects_total", Counter, Count,
        "Failed Redis commands retried after a backoff, by task.";
    REDIS_READ_LAG = "tower_sse_redis_read_lag_seconds", Gauge, Seconds,
        "How long the Redis reader has been reading full batches without catching up.";
    CONNECTIONS_OPEN = "tower_sse_connections_open", Gauge, Count,
        "Connections the server holds open.";
    CONNECTIONS_ACCEPTED = "tower_sse_connections_accepted_total", Counter, Count,
        "Connections accepted.";
    CONNECTIONS_TIMED_OUT = "tower_sse_connections_timed_out_total", Counter, Count,
        "Connections closed at a deadline, by deadline.";
    ACCEPT_ERRORS = "tower_sse_accept_errors_total", Counter, Count,
        "Accept errors, by kind.";
    ACCEPT_PAUSES = "tower_sse_accept_pauses_total", Counter, Count,
        "Times accepting paused, at the connection cap or after an accept error.";
}

/// Gives every metric of the crate its unit and help text, in the recorder installed
/// now (Prometheus shows them as `# HELP` and `# TYPE` lines). Call it once, after
/// installing the recorder; recording works without it.
///
/// ```
/// let recorder = metrics_util::debugging::DebuggingRecorder::new();
/// metrics::with_local_recorder(&recorder, tower_sse::metrics::describe);
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    for def in DEFS {
        match def.kind {
            Kind::Counter => ::metrics::describe_counter!(def.name, def.unit, def.help),
            Kind::Gauge => ::metrics::describe_gauge!(def.name, def.unit, def.help),
            Kind::Histogram => ::metrics::describe_histogram!(def.name, def.unit, def.help),
        }
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_metric_with_its_kind() {
        let docs = include_str!("mod.rs");
        for def in DEFS {
            let kind = match def.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let row = format!("//! | `{}` | {kind} |", def.name);
            assert!(docs.contains(&row), "no row {row:?} in the table");
            let suffix_ok = match def.kind {
                Kind::Counter => def.name.ends_with("_total"),
                _ => !def.name.ends_with("_total"),
            };
            assert!(
                suffix_ok,
                "{}: counters end in _total, others do not",
                def.name
            );
            if def.unit == ::metrics::Unit::Seconds {
                assert!(def.name.ends_with("_seconds"), "{}", def.name);
            }
            if def.unit == ::metrics::Unit::Bytes {
                assert!(
                    def.name.ends_with("_bytes") || def.name.ends_with("_bytes_total"),
                    "{}",
                    def.name
                );
            }
        }
        let rows = docs
            .lines()
            .filter(|line| line.starts_with("//! | `tower_sse_"))
            .count();
        assert_eq!(rows, DEFS.len(), "a row in the table that is not a metric");
    }
}

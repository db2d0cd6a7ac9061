//! Recording what the hub does: publishes and their errors, subscriptions, topics,
//! lag, resets, replays and the bytes it holds.
//!
//! Without the `metrics` feature every helper is empty (and every type a zero-sized
//! one), so the calls compile to nothing.

#![cfg_attr(not(feature = "metrics"), allow(unused_variables, clippy::unused_self))]

use std::sync::Arc;

#[cfg(feature = "metrics")]
use std::collections::HashMap;
#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[cfg(feature = "metrics")]
use ::metrics::{Counter, Gauge, counter, gauge};

#[cfg(feature = "metrics")]
use super::*;
use crate::hub::PublishError;

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

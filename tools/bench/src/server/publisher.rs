//! The publisher: `--rate` events per second on each topic, spread evenly over the
//! second (or, `--burst`, every topic at once), into whichever stack serves them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::options::Options;
use crate::feed::{Feed, now_micros};

/// Where a stack takes events: a topic's (`None`: the idle topic's) payloads, and its
/// count of the subscribers of the first topic and of the idle topic.
pub(super) trait Sink: Send + Sync {
    fn publish(&self, topic: Option<usize>, event_type: Option<&'static str>, payload: String);
    fn subscribers(&self) -> usize;
}

/// The publisher of one server, shared with its control listener.
#[derive(Clone)]
pub(super) struct Publisher {
    pub(super) sink: Arc<dyn Sink>,
    pub(super) options: Options,
    pub(super) published: Arc<AtomicU64>,
}

impl Publisher {
    /// Publishes one event on the idle topic.
    pub(super) fn publish_idle(&self) {
        let payload = Feed::Padded.payload(self.options.size, now_micros(), 0, 1);
        self.sink.publish(None, None, payload);
    }

    /// Publishes forever (missed ticks are caught up: the rate holds on average).
    pub(super) async fn run(&self) {
        let (rate, topics, feed) = (self.options.rate, self.options.topics, self.options.feed);
        // Every topic at once each period, or one topic at a time.
        let per_tick = if self.options.burst { topics } else { 1 };
        let period = 1.0 / rate / (topics / per_tick) as f64;
        if rate <= 0.0 {
            return;
        }
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(period));
        for first in (0..).step_by(per_tick as usize) {
            ticks.tick().await;
            for n in first..first + per_tick {
                let (topic, seq) = (n % topics, n / topics + 1);
                let payload = feed.payload(self.options.size, now_micros(), topic, seq);
                let topic = Some(topic as usize);
                self.sink.publish(topic, feed.event_type(), payload);
            }
            self.published.store(first + per_tick, Relaxed);
        }
    }
}

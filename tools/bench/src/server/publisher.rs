//! The publisher: `--rate` events per second on each topic, spread evenly over the second
//! (or, `--burst`, every topic at once), into whatever stack serves them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::Options;
use crate::feed::{Feed, Generator, now_micros};

/// Where a stack takes events.
pub trait Sink: Send + Sync {
    /// Publishes `payload` on topic `topic` (`None`: the idle topic), with `event_type`.
    fn publish(&self, topic: Option<usize>, event_type: Option<&str>, payload: String);
    /// Subscribers of the first topic and of the idle topic, as the stack counts them.
    fn subscribers(&self) -> usize;
}

/// The publisher of one server, shared with its control listener.
#[derive(Clone)]
pub struct Publisher {
    sink: Arc<dyn Sink>,
    feed: Feed,
    topics: u64,
    size: usize,
    rate: f64,
    burst: bool,
    events: Option<u64>,
    paused: bool,
    start: Arc<Notify>,
    published: Arc<AtomicU64>,
}

impl Publisher {
    pub(super) fn new(options: &Options, sink: Arc<dyn Sink>) -> Publisher {
        Publisher {
            sink,
            feed: options.feed,
            topics: options.topics,
            size: options.size,
            rate: options.rate,
            burst: options.burst,
            events: options.events,
            paused: options.paused,
            start: Arc::new(Notify::new()),
            published: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Lets a paused publisher start.
    pub(super) fn start(&self) {
        self.start.notify_one();
    }

    /// Events published so far, and subscribers now.
    pub(super) fn stats(&self) -> (u64, usize) {
        (
            self.published.load(Ordering::Relaxed),
            self.sink.subscribers(),
        )
    }

    /// Publishes one event on the idle topic.
    pub(super) fn publish_idle(&self) {
        let payload = Generator::new(Feed::Padded, 1, self.size, 1.0).next(now_micros(), 0, 1);
        self.sink.publish(None, self.feed.event_type(), payload);
    }

    /// Publishes until `--events` (or forever).
    pub(super) async fn run(self) {
        if self.rate <= 0.0 {
            return;
        }
        if self.paused {
            self.start.notified().await;
        }
        let topics = self.topics;
        let mut generator = Generator::new(self.feed, topics, self.size, 1.0 / self.rate);
        let (period, per_tick) = match self.burst {
            true => (1.0 / self.rate, topics),
            false => (1.0 / (self.rate * topics as f64), 1),
        };
        // Missed ticks are caught up: the rate holds on average.
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(period));
        let mut n = 0;
        loop {
            ticks.tick().await;
            for _ in 0..per_tick {
                let (topic, seq) = (n % topics, n / topics + 1);
                let payload = generator.next(now_micros(), topic, seq);
                let event_type = self.feed.event_type();
                self.sink.publish(Some(topic as usize), event_type, payload);
                n += 1;
                self.published.store(n, Ordering::Relaxed);
                if self.events.is_some_and(|k| n >= k) {
                    return;
                }
            }
        }
    }
}

//! The publisher: `--rate` events per second on each topic, spread evenly over the
//! second (or, `--burst`, every topic at once), into whichever stack serves them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Options;
use crate::feed::{Feed, Generator, now_micros};

/// Where a stack takes events.
pub(super) trait Sink: Send + Sync {
    /// Publishes `payload` on topic `topic` (`None`: the idle topic).
    fn publish(&self, topic: Option<usize>, event_type: Option<&'static str>, payload: String);
    /// Subscribers of the first topic and of the idle topic, as the stack counts them.
    fn subscribers(&self) -> usize;
}

/// The publisher of one server, shared with its control listener.
#[derive(Clone)]
pub(super) struct Publisher {
    sink: Arc<dyn Sink>,
    options: Options,
    published: Arc<AtomicU64>,
}

impl Publisher {
    pub(super) fn new(options: &Options, sink: Arc<dyn Sink>) -> Publisher {
        Publisher {
            sink,
            options: options.clone(),
            published: Arc::default(),
        }
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
        let payload =
            Generator::new(Feed::Padded, 1, self.options.size, 1.0).next(now_micros(), 0, 1);
        self.sink.publish(None, None, payload);
    }

    /// Publishes forever (missed ticks are caught up: the rate holds on average).
    pub(super) async fn run(&self) {
        let Options {
            rate,
            topics,
            burst,
            feed,
            size,
            ..
        } = self.options;
        if rate <= 0.0 {
            return;
        }
        let mut generator = Generator::new(feed, topics, size, 1.0 / rate);
        let (period, per_tick) = if burst {
            (1.0 / rate, topics)
        } else {
            (1.0 / (rate * topics as f64), 1)
        };
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(period));
        for n in (0..).step_by(per_tick as usize) {
            ticks.tick().await;
            for n in n..n + per_tick {
                let payload = generator.next(now_micros(), n % topics, n / topics + 1);
                self.sink
                    .publish(Some((n % topics) as usize), feed.event_type(), payload);
            }
            self.published.store(n + per_tick, Ordering::Relaxed);
        }
    }
}

//! The usual idiom of axum and warp servers: a tokio `broadcast` of the payload per
//! topic, each subscriber reading its own receivers and building its own events.

use std::sync::Arc;

use std::future::Ready;

use futures_util::future::Either;
use futures_util::stream::{Stream, StreamExt, select_all};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::Sink;

/// A channel per topic, and one for the idle topic.
pub(super) struct Broadcasts {
    topics: Vec<broadcast::Sender<String>>,
    idle: broadcast::Sender<String>,
    /// The event type of every event, if any.
    pub(super) event_type: Option<&'static str>,
}

impl Broadcasts {
    pub(super) fn new(topics: u64, event_type: Option<&'static str>) -> Arc<Broadcasts> {
        Arc::new(Broadcasts {
            topics: (0..topics).map(|_| broadcast::channel(1024).0).collect(),
            idle: broadcast::channel(16).0,
            event_type,
        })
    }

    /// The payloads of every topic (`idle`: of the idle topic), merged.
    pub(super) fn subscribe(&self, idle: bool) -> impl Stream<Item = String> + Send + Sync + use<> {
        fn ok(message: Result<String, BroadcastStreamRecvError>) -> Ready<Option<String>> {
            std::future::ready(message.ok())
        }
        let senders = if idle {
            std::slice::from_ref(&self.idle)
        } else {
            &self.topics[..]
        };
        match senders {
            [one] => Either::Left(BroadcastStream::new(one.subscribe()).filter_map(ok)),
            many => Either::Right(
                select_all(many.iter().map(|tx| BroadcastStream::new(tx.subscribe())))
                    .filter_map(ok),
            ),
        }
    }
}

impl Sink for Broadcasts {
    fn publish(&self, topic: Option<usize>, _event_type: Option<&str>, payload: String) {
        // No subscriber is not an error here.
        let _ = match topic {
            Some(k) => self.topics[k].send(payload),
            None => self.idle.send(payload),
        };
    }

    fn subscribers(&self) -> usize {
        self.topics[0].receiver_count() + self.idle.receiver_count()
    }
}

//! The usual idiom of axum and warp servers: a tokio `broadcast` of the payload per
//! topic; each subscriber reads its own receivers and builds its own events.

use std::future::Ready;
use std::sync::Arc;

use futures_util::future::Either;
use futures_util::stream::{Stream, StreamExt, select_all};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::publisher::Sink;

/// A channel per topic and one for the idle topic; the event type of every event.
pub(super) struct Broadcasts {
    topics: Vec<broadcast::Sender<String>>,
    idle: broadcast::Sender<String>,
    pub(super) event_type: Option<&'static str>,
}

impl Broadcasts {
    pub(super) fn new(options: &super::options::Options) -> Arc<Broadcasts> {
        let topics = (0..options.topics).map(|_| broadcast::channel(1024).0).collect();
        let (idle, event_type) = (broadcast::channel(16).0, options.feed.event_type());
        Arc::new(Broadcasts { topics, idle, event_type })
    }

    /// The payloads of every topic (`idle`: of the idle topic), merged.
    pub(super) fn subscribe(&self, idle: bool) -> impl Stream<Item = String> + Send + Sync + use<> {
        fn ok(message: Result<String, BroadcastStreamRecvError>) -> Ready<Option<String>> {
            std::future::ready(message.ok())
        }
        match if idle { std::slice::from_ref(&self.idle) } else { &self.topics[..] } {
            [one] => Either::Left(BroadcastStream::new(one.subscribe()).filter_map(ok)),
            many => Either::Right(
                select_all(many.iter().map(|tx| BroadcastStream::new(tx.subscribe())))
                    .filter_map(ok),
            ),
        }
    }
}

impl Sink for Broadcasts {
    fn publish(&self, topic: Option<usize>, _: Option<&'static str>, payload: String) {
        // No subscriber is not an error here.
        let _ = topic.map_or(&self.idle, |k| &self.topics[k]).send(payload);
    }

    fn subscribers(&self) -> usize {
        self.topics[0].receiver_count() + self.idle.receiver_count()
    }
}

//! The axum and warp servers, in the usual idiom of both: a tokio `broadcast` of the
//! payload per topic, each subscriber reading its own receivers and building its own
//! events, with the framework's keep-alive; served by `axum::serve` and `warp::serve`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::future::Either;
use futures_util::stream::{Stream, StreamExt, select_all};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use warp::Filter;

use super::options::Options;
use super::publisher::Sink;

/// A channel per topic and one for the idle topic; the event type of every event.
pub(super) struct Broadcasts {
    topics: Vec<broadcast::Sender<String>>,
    idle: broadcast::Sender<String>,
    event_type: Option<&'static str>,
}

impl Broadcasts {
    fn new(options: &Options) -> Arc<Broadcasts> {
        let topics = (0..options.topics).map(|_| broadcast::channel(1024).0);
        let (idle, event_type) = (broadcast::channel(16).0, options.feed.event_type());
        let topics = topics.collect();
        Arc::new(Broadcasts {
            topics,
            idle,
            event_type,
        })
    }

    /// The payloads of every topic (`idle`: of the idle topic), merged.
    fn subscribe(&self, idle: bool) -> impl Stream<Item = String> + Send + Sync + use<> {
        let channels = if idle {
            std::slice::from_ref(&self.idle)
        } else {
            &self.topics
        };
        let mut receivers = channels
            .iter()
            .map(|tx| BroadcastStream::new(tx.subscribe()));
        // One topic is read directly, as a server of one topic would.
        let merged = match channels.len() {
            1 => Either::Left(receivers.next().expect("a channel")),
            _ => Either::Right(select_all(receivers)),
        };
        merged.filter_map(|message| std::future::ready(message.ok()))
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

/// axum: `Sse::new(stream).keep_alive(KeepAlive::default())`.
pub(super) fn start_axum(listener: TcpListener, options: &Options) -> Arc<dyn Sink> {
    type Item = Result<Event, Infallible>;
    fn events(b: &Broadcasts, idle: bool) -> Sse<impl Stream<Item = Item> + use<>> {
        let event_type = b.event_type;
        let stream = b.subscribe(idle).map(move |payload| {
            let event = event_type.map_or_else(Event::default, |t| Event::default().event(t));
            Ok(event.data(payload))
        });
        Sse::new(stream).keep_alive(KeepAlive::default())
    }
    let all = |State(b): State<Arc<Broadcasts>>| async move { events(&b, false) };
    let idle = |State(b): State<Arc<Broadcasts>>| async move { events(&b, true) };
    let (broadcasts, router) = (Broadcasts::new(options), axum::Router::new());
    let router = router.route("/events", get(all)).route("/idle", get(idle));
    let router = router.with_state(broadcasts.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    broadcasts
}

/// warp: `warp::sse::reply(warp::sse::keep_alive().stream(..))`.
pub(super) fn start_warp(listener: TcpListener, options: &Options) -> Arc<dyn Sink> {
    let broadcasts = Broadcasts::new(options);
    let shared = broadcasts.clone();
    let filter = warp::get().and(warp::path::param());
    let filter = filter.map(move |path: String| {
        let (event, event_type) = (warp::sse::Event::default, shared.event_type);
        let stream = shared.subscribe(path == "idle").map(move |payload| {
            let event = event_type.map_or_else(event, |t| event().event(t));
            Ok::<_, Infallible>(event.data(payload))
        });
        warp::sse::reply(warp::sse::keep_alive().stream(stream))
    });
    tokio::spawn(warp::serve(filter).incoming(listener).run());
    broadcasts
}

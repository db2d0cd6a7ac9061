//! The warp server: `warp::sse::reply(warp::sse::keep_alive().stream(..))` of each
//! subscriber's own events, served by `warp::serve`.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use warp::Filter;

use super::broadcasts::Broadcasts;
use super::publisher::Sink;

pub(super) fn start(listener: TcpListener, options: &super::options::Options) -> Arc<dyn Sink> {
    let broadcasts = Broadcasts::new(options);
    let shared = broadcasts.clone();
    let filter = warp::get().and(warp::path::param()).map(move |path: String| {
        let event_type = shared.event_type;
        let stream = shared.subscribe(path == "idle").map(move |payload| {
            let event = warp::sse::Event::default();
            let event = match event_type {
                Some(t) => event.event(t),
                None => event,
            };
            Ok::<_, Infallible>(event.data(payload))
        });
        warp::sse::reply(warp::sse::keep_alive().stream(stream))
    });
    tokio::spawn(warp::serve(filter).incoming(listener).run());
    broadcasts
}

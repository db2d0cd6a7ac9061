//! The axum server: `Sse::new(stream).keep_alive(KeepAlive::default())` of each
//! subscriber's own events, served by `axum::serve`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;

use super::broadcasts::Broadcasts;
use super::publisher::Sink;

fn events(
    broadcasts: &Broadcasts,
    idle: bool,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let event_type = broadcasts.event_type;
    let stream = broadcasts.subscribe(idle).map(move |payload| {
        let event = Event::default();
        Ok(match event_type {
            Some(t) => event.event(t),
            None => event,
        }
        .data(payload))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

pub(super) fn start(listener: TcpListener, options: &super::options::Options) -> Arc<dyn Sink> {
    let broadcasts = Broadcasts::new(options);
    let router = axum::Router::new()
        .route("/events", get(|State(b): State<Arc<Broadcasts>>| async move { events(&b, false) }))
        .route("/idle", get(|State(b): State<Arc<Broadcasts>>| async move { events(&b, true) }))
        .with_state(broadcasts.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    broadcasts
}

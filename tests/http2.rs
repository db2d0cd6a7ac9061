//! HTTP/2 as the remedy for the browsers' limit of six HTTP/1.1 connections per origin:
//! 200 concurrent SSE streams over one HTTP/2 connection, with hyper's own HTTP/2
//! client against hyper-util's auto server (HTTP/1.1 and h2c on one port).

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use http::{Request, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::time::timeout;
use tokio_stream::wrappers::BroadcastStream;
use tower::{Layer, service_fn};
use tower_sse::{EndReason, Event, LastEventId, Sse, SseLayer, StreamEnd};

const STREAMS: usize = 200;
/// Only a hang guard.
const GUARD: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_share_one_http2_connection() {
    let (live, _) = broadcast::channel::<Event>(64);
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let layer = SseLayer::new().on_end(move |end: &StreamEnd| {
        let _ = reports_tx.send(end.reason);
    });
    // Each stream first greets its own client (by the id it resumes from), then carries
    // what the test broadcasts.
    let service = layer.layer(service_fn({
        let live = live.clone();
        move |request: Request<Incoming>| {
            let me = request
                .extensions()
                .get::<LastEventId>()
                .map(|id| id.to_string())
                .unwrap_or_default();
            let greeting = Event::builder()
                .event("hello")
                .data(&format!("stream {me}"))
                .build()
                .unwrap();
            let live = BroadcastStream::new(live.subscribe()).filter_map(|e| async move { e.ok() });
            let events = stream::iter([greeting]).chain(live);
            async move { Ok::<_, Infallible>(Sse::new(events).into_response()) }
        }
    }));

    // hyper-util's auto server, counting the connections it accepts.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let accept = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        }
    });

    // 200 requests on one connection, all in flight together.
    let started = std::time::Instant::now();
    let client = h2_connect(addr).await;
    let mut pending = Vec::new();
    for i in 0..STREAMS {
        let mut sender = client.sender.clone();
        let request = get("/events")
            .header("last-event-id", i.to_string())
            .body(empty())
            .unwrap();
        pending.push(async move {
            sender.ready().await.unwrap();
            sender.send_request(request).await.unwrap()
        });
    }
    let responses = timeout(GUARD, futures_util::future::join_all(pending))
        .await
        .expect("all 200 streams open at once");

    let mut streams = Vec::new();
    for (i, response) in responses.into_iter().enumerate() {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), Version::HTTP_2);
        assert!(!response.headers().contains_key("connection"));
        let mut events = events(response);
        let hello = timeout(GUARD, events.next())
            .await
            .expect("hang guard: a stream's greeting")
            .unwrap();
        assert_eq!(
            (hello.event.as_str(), hello.data),
            ("hello", format!("stream {i}"))
        );
        streams.push(events);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one TCP connection");
    eprintln!(
        "{STREAMS} SSE streams open over one HTTP/2 connection, each greeted, after {:?}",
        started.elapsed()
    );

    // Every stream gets every broadcast event, in order, while all 200 are open.
    for n in 0..10 {
        live.send(
            Event::builder()
                .id(&n.to_string())
                .data("tick")
                .build()
                .unwrap(),
        )
        .unwrap();
    }
    for events in &mut streams {
        for n in 0..10 {
            let event = timeout(GUARD, events.next())
                .await
                .expect("hang guard: a broadcast event")
                .unwrap();
            assert_eq!((event.id, event.data.as_str()), (n.to_string(), "tick"));
        }
    }

    // The client resets half of the streams (RST_STREAM); the connection and the other
    // half stay up, and each reset is reported.
    let mut kept = streams.split_off(STREAMS / 2);
    drop(streams);
    for _ in 0..STREAMS / 2 {
        let reason = timeout(GUARD, reports.recv())
            .await
            .expect("hang guard: the report of a reset")
            .unwrap();
        assert_eq!(reason, EndReason::ClientGone);
    }
    live.send(Event::data("after the resets")).unwrap();
    for events in &mut kept {
        let event = timeout(GUARD, events.next())
            .await
            .expect("hang guard: the event after the resets")
            .unwrap();
        assert_eq!(event.data, "after the resets");
    }
    assert!(reports.try_recv().is_err(), "only the reset streams ended");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    accept.abort();
}

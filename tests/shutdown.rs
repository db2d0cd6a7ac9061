//! Graceful shutdown with 1,000 streams open, over real sockets: hyper-util's
//! `GracefulShutdown` (HTTP/1.1 and HTTP/2 connections) and axum's
//! `with_graceful_shutdown` (both axum paths: `route_service` with `SseLayer`, and
//! `Router::layer(SseLayer)` over handlers that return `Sse`).
//!
//! Each test first starts the server's own graceful shutdown and shows, by sending an
//! event that every client then receives, that it cannot complete on its own: an SSE
//! response never ends. Then it cancels the layer's token; every stream writes its final
//! event (with a `retry:` hint) and ends cleanly, every end is reported as
//! `EndReason::Shutdown`, and the server's shutdown completes. The time it took is
//! printed; a generous timeout only guards against a hang.

#![cfg(feature = "axum")]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt, stream};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::timeout;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;
use tower::{Layer, service_fn};
use tower_sse::{EndReason, Event, Sse, SseLayer, StreamEnd};

/// Generous: only there so that a hang fails the test instead of stalling the run.
const HANG_GUARD: Duration = Duration::from_secs(120);
const RETRY_HINT: Duration = Duration::from_millis(750);

/// Counts the ends reported with each reason.
#[derive(Clone, Default)]
struct Ends {
    shutdown: Arc<AtomicUsize>,
    other: Arc<AtomicUsize>,
}

impl Ends {
    fn layer(&self, shutdown: &CancellationToken) -> SseLayer {
        let ends = self.clone();
        SseLayer::new()
            .graceful_shutdown(shutdown.clone())
            .shutdown_event(
                Event::builder()
                    .event("bye")
                    .data("server going away")
                    .retry(RETRY_HINT)
                    .build()
                    .unwrap(),
            )
            .on_end(move |end: &StreamEnd| {
                if end.reason == EndReason::Shutdown {
                    ends.shutdown.fetch_add(1, Ordering::Relaxed);
                } else {
                    ends.other.fetch_add(1, Ordering::Relaxed);
                }
            })
    }
}

/// Every stream: `hello`, then whatever the test broadcasts.
fn events_from(live: &broadcast::Sender<Event>) -> impl Stream<Item = Event> + Send + use<> {
    let live = BroadcastStream::new(live.subscribe()).filter_map(|e| async move { e.ok() });
    stream::iter([Event::data("hello")]).chain(live)
}

/// Reads one stream to its end: reports its first event on `opened`, and returns every
/// event it got.
fn read(
    response: http::Response<Incoming>,
    opened: mpsc::UnboundedSender<()>,
    seen: mpsc::UnboundedSender<()>,
) -> tokio::task::JoinHandle<Vec<eventsource_stream::Event>> {
    assert_eq!(response.status(), StatusCode::OK);
    tokio::spawn(async move {
        let mut parsed = Vec::new();
        let mut events = events(response);
        while let Some(event) = events.next().await {
            match event.data.as_str() {
                "hello" => opened.send(()).unwrap(),
                "still here" => seen.send(()).unwrap(),
                _ => {}
            }
            parsed.push(event);
        }
        parsed
    })
}

async fn wait_for(rx: &mut mpsc::UnboundedReceiver<()>, n: usize) {
    timeout(HANG_GUARD, async {
        for _ in 0..n {
            rx.recv().await.unwrap();
        }
    })
    .await
    .expect("every stream got the event");
}

/// What every client must have read: its events, then the final one with the hint.
async fn check_readers(readers: Vec<tokio::task::JoinHandle<Vec<eventsource_stream::Event>>>) {
    for reader in readers {
        let parsed = timeout(HANG_GUARD, reader)
            .await
            .expect("hang guard: a stream's end after its final event")
            .unwrap();
        let got: Vec<_> = parsed
            .iter()
            .map(|e| (e.event.as_str(), e.data.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("message", "hello"),
                ("message", "still here"),
                ("bye", "server going away")
            ]
        );
        assert_eq!(parsed[2].retry, Some(RETRY_HINT));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_util_graceful_shutdown_completes_with_1000_streams_open() {
    const H1_CONNECTIONS: usize = 500;
    const H2_CONNECTIONS: usize = 5;
    const H2_STREAMS_EACH: usize = 100;
    const STREAMS: usize = H1_CONNECTIONS + H2_CONNECTIONS * H2_STREAMS_EACH;

    let shutdown = CancellationToken::new();
    let ends = Ends::default();
    let (live, _) = broadcast::channel(16);
    let service = ends.layer(&shutdown).layer(service_fn({
        let live = live.clone();
        move |_request: Request<Incoming>| {
            let events = Sse::new(events_from(&live));
            async move { Ok::<_, Infallible>(events.into_response()) }
        }
    }));

    // The server of hyper-util's documentation: every connection is watched, and on
    // shutdown the accept loop stops and `GracefulShutdown::shutdown` waits for them.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_accepting, mut stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    let service = TowerToHyperService::new(service.clone());
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection(TokioIo::new(socket), service);
                    let connection = graceful.watch(connection.into_owned());
                    tokio::spawn(connection);
                }
                _ = &mut stop_rx => break,
            }
        }
        drop(listener);
        graceful
    });

    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut readers = Vec::with_capacity(STREAMS);
    let mut clients = Vec::new();
    for _ in 0..H1_CONNECTIONS {
        let mut client = h1_connect(addr).await;
        let response = client.send(get("/events").body(empty()).unwrap()).await;
        readers.push(read(response, opened_tx.clone(), seen_tx.clone()));
        clients.push(client.conn);
    }
    for _ in 0..H2_CONNECTIONS {
        let mut client = h2_connect(addr).await;
        for _ in 0..H2_STREAMS_EACH {
            let response = client.send(get("/events").body(empty()).unwrap()).await;
            readers.push(read(response, opened_tx.clone(), seen_tx.clone()));
        }
        clients.push(client.conn);
    }
    wait_for(&mut opened, STREAMS).await;

    // The server starts its graceful shutdown: it stops accepting and asks every
    // connection to finish. The streams go on, as an event sent now shows.
    stop_accepting.send(()).unwrap();
    let graceful = timeout(HANG_GUARD, server)
        .await
        .expect("hang guard: the accept loop stops")
        .unwrap();
    assert_eq!(graceful.count(), H1_CONNECTIONS + H2_CONNECTIONS);
    let draining = tokio::spawn(graceful.shutdown());
    live.send(Event::data("still here")).unwrap();
    wait_for(&mut seen, STREAMS).await;
    assert!(
        !draining.is_finished(),
        "the open streams hold the shutdown"
    );

    // Now the SSE shutdown: every stream ends, so the server's shutdown completes.
    let started = Instant::now();
    shutdown.cancel();
    timeout(HANG_GUARD, draining)
        .await
        .expect("the graceful shutdown completes")
        .unwrap();
    let took = started.elapsed();
    eprintln!(
        "hyper-util GracefulShutdown with {STREAMS} SSE streams open \
         ({H1_CONNECTIONS} HTTP/1.1 connections, {H2_CONNECTIONS} HTTP/2 connections x \
         {H2_STREAMS_EACH} streams) completed {took:?} after the token was cancelled"
    );

    check_readers(readers).await;
    assert_eq!(ends.shutdown.load(Ordering::Relaxed), STREAMS);
    assert_eq!(ends.other.load(Ordering::Relaxed), 0);
    // The server closed every connection: the clients' connection tasks are done.
    for conn in clients {
        timeout(HANG_GUARD, conn)
            .await
            .expect("hang guard: the server closes each client's connection")
            .unwrap();
    }
}

async fn handler(
    axum::extract::State(live): axum::extract::State<broadcast::Sender<Event>>,
) -> impl axum::response::IntoResponse {
    Sse::new(events_from(&live))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_with_graceful_shutdown_completes_with_1000_streams_open() {
    const STREAMS: usize = 1000;

    let shutdown = CancellationToken::new();
    let ends = Ends::default();
    let (live, _) = broadcast::channel(16);
    // Half the streams through `route_service` and its own `SseLayer`, half through
    // handlers under `Router::layer(SseLayer)`; one token for both. (The router's layer
    // passes through the streams the route's own layer already serves.)
    let layered = ends.layer(&shutdown).layer(service_fn({
        let live = live.clone();
        move |_request: Request<axum::body::Body>| {
            let events = Sse::new(events_from(&live));
            async move { Ok::<_, Infallible>(events.into_response()) }
        }
    }));
    let app = axum::Router::new()
        .route_service("/service", layered)
        .route("/handler", axum::routing::get(handler))
        .with_state(live.clone())
        .layer(ends.layer(&shutdown));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (signal_tx, signal_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                signal_rx.await.ok();
            })
            .into_future(),
    );

    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut readers = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        let path = if i % 2 == 0 { "/service" } else { "/handler" };
        let mut client = h1_connect(addr).await;
        let response = client.send(get(path).body(empty()).unwrap()).await;
        assert_eq!(response.headers()["connection"], "keep-alive", "{path}");
        readers.push(read(response, opened_tx.clone(), seen_tx.clone()));
    }
    wait_for(&mut opened, STREAMS).await;

    // axum is told to shut down, but does not trigger the SSE shutdown here: it waits.
    signal_tx.send(()).unwrap();
    live.send(Event::data("still here")).unwrap();
    wait_for(&mut seen, STREAMS).await;
    assert!(
        !server.is_finished(),
        "the open streams hold axum's shutdown"
    );

    let started = Instant::now();
    shutdown.cancel();
    timeout(HANG_GUARD, server)
        .await
        .expect("axum's graceful shutdown completes")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    eprintln!(
        "axum with_graceful_shutdown with {STREAMS} SSE streams open (HTTP/1.1) completed \
         {took:?} after the token was cancelled"
    );

    check_readers(readers).await;
    assert_eq!(ends.shutdown.load(Ordering::Relaxed), STREAMS);
    assert_eq!(ends.other.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn cancelling_in_the_shutdown_future_ends_the_streams_when_axum_is_told_to_stop() {
    // The recipe: the future given to `with_graceful_shutdown` cancels the token itself.
    let shutdown = CancellationToken::new();
    let ends = Ends::default();
    let app = axum::Router::new().route_service(
        "/events",
        ends.layer(&shutdown)
            .layer(service_fn(|_: Request<axum::body::Body>| async {
                let events = stream::iter([Event::data("hello")]).chain(stream::pending());
                Ok::<_, Infallible>(Sse::new(events).into_response())
            })),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal_tx, signal_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown({
                let shutdown = shutdown.clone();
                async move {
                    signal_rx.await.ok();
                    shutdown.cancel();
                }
            })
            .into_future(),
    );
    let mut client = within("the connection", h1_connect(addr)).await;
    let response = within(
        "the response",
        client.send(get("/events").body(empty()).unwrap()),
    )
    .await;
    let mut events = events(response);
    let hello = within("the first event", events.next()).await;
    assert_eq!(hello.unwrap().data, "hello");
    assert!(!shutdown.is_cancelled());

    signal_tx.send(()).unwrap();
    let bye = within("the shutdown event", events.next()).await.unwrap();
    assert_eq!((bye.event.as_str(), bye.retry), ("bye", Some(RETRY_HINT)));
    assert!(
        within("the end of the stream", events.next())
            .await
            .is_none()
    );
    within("the server to stop", server).await.unwrap().unwrap();
    assert!(shutdown.is_cancelled());
    assert_eq!(ends.shutdown.load(Ordering::Relaxed), 1);
}

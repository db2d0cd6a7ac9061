//! Limits and refusals over a real socket: the cap on open streams (per server, per
//! client address), 503 with `Retry-After` or a reconnect-later stream, 204 to stop a
//! client for good, 405 for anything but GET.

#[path = "browser/driver.rs"]
mod driver;
mod support;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either};
use hyper::body::Incoming;
use support::*;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceBuilder, service_fn};
use tower_sse::{EndReason, Event, Refusal, Sse, SseLayer, StreamEnd, StreamLimit};

/// A hang guard: long enough never to fire on a healthy run.
const GUARD: Duration = Duration::from_secs(20);

type Senders = mpsc::UnboundedReceiver<mpsc::UnboundedSender<Event>>;

type Boxed = BoxCloneService<
    Request<Incoming>,
    http::Response<UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>>,
    Infallible,
>;

/// An SSE service whose every stream is fed by a channel the test holds; `reports`
/// gets each stream's end.
fn channel_service(layer: SseLayer) -> (Boxed, Senders, mpsc::UnboundedReceiver<EndReason>) {
    let (senders_tx, senders_rx) = mpsc::unbounded_channel();
    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    let layer = layer.on_end(move |end: &StreamEnd| {
        let _ = reports_tx.send(end.reason);
    });
    let service = ServiceBuilder::new()
        .layer(BoxCloneService::layer())
        .map_response(|response: http::Response<_>| response.map(BodyExt::boxed_unsync))
        .layer(layer)
        .service(service_fn(move |_request: Request<Incoming>| {
            let (tx, rx) = mpsc::unbounded_channel();
            senders_tx.send(tx).unwrap();
            let events = Sse::new(UnboundedReceiverStream::new(rx));
            async move { Ok::<_, Infallible>(events.into_response()) }
        }));
    (service, senders_rx, reports_rx)
}

/// Opens a stream over a new HTTP/1.1 connection and waits for its first event, so
/// that it is surely open on the server.
async fn open(
    addr: SocketAddr,
    senders: &mut Senders,
) -> (H1, Incoming, mpsc::UnboundedSender<Event>) {
    let mut client = h1_connect(addr).await;
    let response = client.send(get("/events").body(empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let sender = within("the stream's sender", senders.recv()).await.unwrap();
    sender.send(Event::data("open")).unwrap();
    let first = within("the stream's first event", next_data(&mut body)).await;
    assert_eq!(first.unwrap(), "data: open\n\n");
    (client, body, sender)
}

async fn body_text(response: http::Response<Incoming>) -> String {
    let bytes = within("the whole body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_server_cap_answers_503_with_retry_after_until_a_stream_ends() {
    let limit = StreamLimit::new(3).retry_after(Duration::from_millis(6500));
    let (service, mut senders, mut reports) = channel_service(SseLayer::new().limit(limit.clone()));
    let server = serve(service).await;

    let mut open_streams = Vec::new();
    for _ in 0..3 {
        open_streams.push(open(server.addr, &mut senders).await);
    }
    assert_eq!(limit.open_streams(), 3);

    // Over the cap, on HTTP/1.1 and HTTP/2: 503 at once, and the inner service is never
    // called (it would have handed over a sender before the response was built).
    let refused = h1_connect(server.addr)
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    let refused_h2 = h2_connect(server.addr)
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    for response in [refused, refused_h2] {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert!(!body_text(response).await.is_empty());
    }
    assert!(senders.try_recv().is_err(), "the inner service was called");
    assert_eq!(limit.refused(), 2);
    assert_eq!(limit.open_streams(), 3);

    // A client goes away: its place is free once its end is reported.
    let (client, body, _sender) = open_streams.pop().unwrap();
    drop(body);
    client.close();
    assert_eq!(
        within("the end report", reports.recv()).await,
        Some(EndReason::ClientGone)
    );
    assert_eq!(limit.open_streams(), 2);
    open_streams.push(open(server.addr, &mut senders).await);

    // A stream that finishes frees its place too.
    let (_client, mut body, sender) = open_streams.pop().unwrap();
    drop(sender);
    assert_eq!(
        within("the end of the finished stream", next_data(&mut body)).await,
        None
    );
    assert_eq!(
        within("the end report", reports.recv()).await,
        Some(EndReason::Finished)
    );
    assert_eq!(limit.open_streams(), 2);
    open_streams.push(open(server.addr, &mut senders).await);
    assert_eq!(limit.open_streams(), 3);
}

#[tokio::test]
async fn the_per_client_cap_counts_each_address_apart() {
    let limit = StreamLimit::new(100).per_client(2);
    let (service, mut senders, _reports) = channel_service(SseLayer::new().limit(limit.clone()));
    // The test server puts each connection's peer address in the request extensions.
    let server = serve(service).await;
    let addr = server.addr;
    let alice: IpAddr = "127.0.0.2".parse().unwrap();
    let bob: IpAddr = "127.0.0.3".parse().unwrap();

    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = h1_from(alice, addr).await;
        let response = client.send(get("/events").body(empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push((
            client,
            response,
            within("the stream's sender", senders.recv()).await.unwrap(),
        ));
    }
    let mut client = h1_from(alice, addr).await;
    let third = client.send(get("/events").body(empty()).unwrap()).await;
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.headers()["retry-after"], "5");

    // Another address is not held back by the first one's streams.
    for _ in 0..2 {
        let mut client = h1_from(bob, addr).await;
        let response = client.send(get("/events").body(empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push((
            client,
            response,
            within("the stream's sender", senders.recv()).await.unwrap(),
        ));
    }
    assert_eq!(limit.open_streams_from(alice), 2);
    assert_eq!(limit.open_streams_from(bob), 2);
    assert_eq!(limit.open_streams(), 4);
    assert_eq!(limit.refused(), 1);
}

#[tokio::test]
async fn a_client_key_can_come_from_a_proxy_header() {
    let limit = StreamLimit::new(100)
        .per_client(1)
        .client_key(|parts| parts.headers.get("x-real-ip")?.to_str().ok()?.parse().ok());
    let (service, mut senders, _reports) = channel_service(SseLayer::new().limit(limit.clone()));
    let server = serve(service).await;
    let request = |ip: &str| {
        get("/events")
            .header("x-real-ip", ip)
            .body(empty())
            .unwrap()
    };
    let mut client = h2_connect(server.addr).await;
    let first = client.send(request("192.0.2.1")).await;
    assert_eq!(first.status(), StatusCode::OK);
    let _sender = within("the stream's sender", senders.recv()).await.unwrap();
    let second = client.send(request("192.0.2.1")).await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let other = client.send(request("192.0.2.2")).await;
    assert_eq!(other.status(), StatusCode::OK);
    // Without the header the request counts only toward the server cap.
    let anonymous = client.send(get("/events").body(empty()).unwrap()).await;
    assert_eq!(anonymous.status(), StatusCode::OK);
    assert_eq!(limit.open_streams(), 3);
}

#[tokio::test]
async fn retry_in_stream_answers_a_stream_that_only_sets_retry_and_ends() {
    let limit = StreamLimit::new(0)
        .retry_after(Duration::from_millis(2500))
        .retry_in_stream();
    let (service, mut senders, _reports) = channel_service(SseLayer::new().limit(limit.clone()));
    let server = serve(service).await;
    let response = h1_connect(server.addr)
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(
        response.headers()["cache-control"],
        "no-cache, no-transform"
    );
    // The delay is in the stream, in milliseconds; `Retry-After` means nothing on a 200.
    assert!(!response.headers().contains_key("retry-after"));
    // A comment, the reconnection time, and nothing that fires an event.
    assert_eq!(
        body_text(response).await,
        ": come back later\nretry: 2500\n\n"
    );
    assert!(senders.try_recv().is_err());
    assert_eq!(limit.refused(), 1);
}

#[tokio::test]
async fn an_inner_service_stops_a_client_with_204_or_refuses_with_a_reason() {
    let limit = StreamLimit::new(10);
    let service = ServiceBuilder::new()
        .layer(SseLayer::new().limit(limit.clone()))
        .service(service_fn(|request: Request<Incoming>| async move {
            let refusal = match request.uri().path() {
                "/done" => Refusal::stop(),
                "/bad" => Refusal::new(StatusCode::BAD_REQUEST, "no such topic: ✈"),
                _ => {
                    let events = Sse::new(stream::iter([Event::data("live")]));
                    return Ok::<_, Infallible>(events.into_response().map(Either::Left));
                }
            };
            Ok(refusal.into_response().map(Either::Right))
        }));
    let server = serve(service).await;
    for http2 in [false, true] {
        let send = |path: &'static str| {
            let addr = server.addr;
            async move {
                let request = get(path).body(empty()).unwrap();
                if http2 {
                    h2_connect(addr).await.send(request).await
                } else {
                    h1_connect(addr).await.send(request).await
                }
            }
        };
        let done = send("/done").await;
        assert_eq!(done.status(), StatusCode::NO_CONTENT);
        assert!(!done.headers().contains_key("content-type"));
        assert_eq!(body_text(done).await, "");

        let bad = send("/bad").await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(bad.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(body_text(bad).await, "no such topic: ✈\n");

        let live = send("/live").await;
        assert_eq!(live.status(), StatusCode::OK);
        let parsed: Vec<_> = within("the event and the end", events(live).collect()).await;
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].data, "live");
    }
    // A refusal is not a stream: the places the requests took are all free again.
    assert_eq!(limit.open_streams(), 0);
    assert_eq!(limit.refused(), 0);
}

#[tokio::test]
async fn anything_but_get_answered_with_a_stream_is_405_and_takes_no_place() {
    let limit = StreamLimit::new(0);
    let (service, mut senders, _reports) = channel_service(SseLayer::new().limit(limit.clone()));
    let server = serve(service).await;
    for method in ["POST", "HEAD", "PUT", "OPTIONS", "DELETE"] {
        let request = Request::builder()
            .method(method)
            .uri("/events")
            .body(empty())
            .unwrap();
        let response = h1_connect(server.addr).await.send(request).await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert_eq!(response.headers()["allow"], "GET");
        // Only its answer told the layer it was a stream; that stream was dropped
        // unread.
        let sender = within("the stream's sender", senders.recv()).await.unwrap();
        timeout(GUARD, sender.closed())
            .await
            .expect("the stream is dropped");
    }
    assert_eq!(limit.refused(), 0);
    assert_eq!(limit.open_streams(), 0);
}

#[tokio::test]
async fn many_concurrent_requests_never_exceed_the_cap() {
    const CAP: usize = 25;
    let limit = StreamLimit::new(CAP);
    let (service, mut senders, _reports) = channel_service(SseLayer::new().limit(limit.clone()));
    let server = serve(service).await;
    let mut client = h2_connect(server.addr).await;
    let mut requests = Vec::new();
    for _ in 0..100 {
        client.sender.ready().await.unwrap();
        requests.push(
            client
                .sender
                .send_request(get("/events").body(empty()).unwrap()),
        );
    }
    let responses = timeout(GUARD, futures_util::future::join_all(requests))
        .await
        .expect("every request is answered");
    let ok = responses
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == StatusCode::OK)
        .count();
    let unavailable = responses
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((ok, unavailable), (CAP, 100 - CAP));
    assert_eq!(limit.open_streams(), CAP);
    let mut called = 0;
    while senders.try_recv().is_ok() {
        called += 1;
    }
    assert_eq!(called, CAP);
}

// ---- what a browser does with each refusal (Debian's Chromium) ----

mod browser {
    use super::driver::{artifacts_dir, browser_dir, require_browser_tools};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::response::Html;
    use serde::Deserialize;

    use super::*;

    const PAGE: &str = include_str!("browser/cors.html");
    const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

    #[derive(Debug, Deserialize)]
    struct Run {
        report: PageReport,
        done: bool,
    }

    #[derive(Debug, Deserialize)]
    struct PageReport {
        opens: u32,
        events: Vec<PageEvent>,
        errors: Vec<PageError>,
        finished: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    struct PageEvent {
        data: String,
    }

    #[derive(Debug, Deserialize)]
    struct PageError {
        #[serde(rename = "readyState")]
        ready_state: u8,
    }

    async fn run_page(url: String, name: &str) -> Run {
        require_browser_tools();
        let artifacts = artifacts_dir();
        let mut command = tokio::process::Command::new("node");
        command
            .current_dir(browser_dir())
            .arg("cors.mjs")
            .arg(&url)
            .arg("--artifacts")
            .arg(artifacts)
            .arg("--name")
            .arg(name)
            .arg("--timeout")
            .arg(PAGE_TIMEOUT.as_millis().to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = timeout(PAGE_TIMEOUT + Duration::from_secs(60), command.output())
            .await
            .expect("node cors.mjs finishes")
            .expect("node starts");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "cors.mjs failed:\n{stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}\n{stderr}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(feature = "test-browser"),
        ignore = "needs Chromium and Node: cargo test --features test-browser"
    )]
    async fn chromium_stops_after_204_and_503_and_comes_back_after_reconnect_after() {
        let requests: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let events = SseLayer::new().layer(service_fn({
            let requests = requests.clone();
            move |request: Request<axum::body::Body>| {
                let mode = request
                    .uri()
                    .path()
                    .trim_start_matches("/events/")
                    .to_owned();
                let n = {
                    let mut requests = requests.lock().unwrap();
                    let n = requests.entry(mode.clone()).or_default();
                    *n += 1;
                    *n
                };
                let refusal = match (mode.as_str(), n) {
                    ("stop", _) => Some(Refusal::stop()),
                    ("busy", _) => Some(Refusal::unavailable(Duration::from_secs(1))),
                    ("later", 1) => Some(Refusal::reconnect_after(Duration::from_millis(200))),
                    _ => None,
                };
                let answer = match refusal {
                    Some(refusal) => refusal.into_response().map(Either::Right),
                    None => Sse::new(stream::iter([
                        Event::data("welcome back"),
                        Event::builder().event("done").data("").build().unwrap(),
                    ]))
                    .into_response()
                    .map(Either::Left),
                };
                async move { Ok::<_, Infallible>(answer) }
            }
        }));
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { Html(PAGE) }))
            .route_service("/events/{mode}", events);
        let server = serve(app).await;

        for mode in ["stop", "busy"] {
            let run = run_page(
                format!("http://{}/?src=/events/{mode}", server.addr),
                &format!("refusal-{mode}"),
            )
            .await;
            assert!(run.done, "{mode}: {run:#?}");
            // Closed for good at the first answer: no open, one error with CLOSED.
            assert_eq!(
                run.report.finished.as_deref(),
                Some("closed by the browser"),
                "{mode}"
            );
            assert_eq!(run.report.opens, 0, "{mode}");
            let states: Vec<_> = run.report.errors.iter().map(|e| e.ready_state).collect();
            assert_eq!(states, [2], "{mode}");
            assert_eq!(requests.lock().unwrap()[mode], 1, "{mode}: no retry");
        }

        let run = run_page(
            format!("http://{}/?src=/events/later", server.addr),
            "refusal-reconnect-after",
        )
        .await;
        assert!(run.done, "{run:#?}");
        assert_eq!(run.report.finished.as_deref(), Some("done event"));
        // The empty 200 stream opened and ended; the browser came back by itself.
        assert_eq!(run.report.opens, 2);
        let states: Vec<_> = run.report.errors.iter().map(|e| e.ready_state).collect();
        assert_eq!(states, [0]);
        let data: Vec<_> = run.report.events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["welcome back", ""]);
        assert_eq!(requests.lock().unwrap()["later"], 2);
    }
}

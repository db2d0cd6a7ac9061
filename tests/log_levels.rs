//! What the library logs about its clients, over real connections.
//!
//! - `nothing_a_client_sends_is_logged_above_debug`: many clients (each from its own
//!   loopback address) send everything a client can get wrong: a malformed
//!   `Last-Event-ID` (not UTF-8, too long, in the header or the query), an unknown or
//!   malformed id for the hub, no topic, an empty topic, too many topics, a topic the
//!   hub refuses, a POST for an event stream, a junk `Accept-Encoding`, streams over the
//!   server's and the per-client cap; and a subscriber falls behind. At the default
//!   level (`info`) the log does not grow by a line; at `debug` each is there.
//! - `a_client_that_closes_its_connection_is_not_logged_as_an_error`: a browser tab
//!   closed, as serve's own HTTP/1.1 stream, an HTTP/2 stream and a stream on a
//!   kept-alive connection (both served by hyper): each connection's last line says it
//!   closed, and none says "error".
//! - `a_streams_lines_share_its_span`: at `debug`, the start and the end of a stream,
//!   a refusal by the limit, and the stall of a stream whose client opens no HTTP/2
//!   window are each logged inside the request's `sse_stream` span, with its method,
//!   path, version, client address, the id it resumed from and its topics.
//!
//! Each test runs on a current-thread runtime under its own capturing subscriber, so
//! the server's tasks log to it and the tests do not see each other's lines.

#![cfg(feature = "serve")]

mod support;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tower::{Layer, ServiceBuilder};
use tower_sse::{EndReason, Event, Hub, LastEventId, SseLayer, StreamEnd, StreamLimit};

use support::{empty, get, h1_from};

/// A hang guard, never a duration the test asserts.
const GUARD: Duration = Duration::from_secs(60);

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// Lines at `INFO`, `WARN` or `ERROR`.
    fn loud(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| {
                let level = line.split_whitespace().nth(1).unwrap_or("");
                matches!(level, "INFO" | "WARN" | "ERROR")
            })
            .collect()
    }
}

/// Runs `test` on a current-thread runtime whose tasks log at `level` and above to
/// what it returns.
fn logged<F: std::future::Future<Output = ()>>(level: tracing::Level, test: F) -> Captured {
    logged_with(level, |_| test)
}

/// As [`logged`], with what is captured so far readable by `test`.
fn logged_with<F, T>(level: tracing::Level, test: T) -> Captured
where
    F: std::future::Future<Output = ()>,
    T: FnOnce(Captured) -> F,
{
    let captured = Captured::default();
    let test = test(captured.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
    captured
}

/// Sends, from `clients` loopback addresses, every kind of bad request a client can
/// make; and makes a hub subscriber fall behind.
async fn bad_clients(clients: u32) {
    let hub = Hub::builder()
        .max_topics(2)
        .queue_events(2)
        .authorize(|topic, _| topic != "secret")
        .build();
    let layer = SseLayer::new()
        .limit(StreamLimit::new(3).per_client(1))
        .compression(tower_sse::StreamCompression::new());
    let server = support::serve(layer.layer(hub.clone())).await;
    let too_long = "7".repeat(LastEventId::MAX_LEN + 1);
    let not_utf8 = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
    // Three streams fill the server's cap; each client's second one is over its own.
    let mut held = Vec::new();
    for n in 0..3u32 {
        let mut client = h1_from(IpAddr::from([127, 0, 1, n as u8 + 1]), server.addr).await;
        let response = client.send(get("/?topic=a").body(empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push((client, response));
    }
    for n in 0..clients {
        let from = IpAddr::from([127, 2, (n >> 8) as u8, n as u8]);
        let mut client = timeout(GUARD, h1_from(from, server.addr))
            .await
            .unwrap_or_else(|_| panic!("a connection from {from}"));
        // With `Accept: text/event-stream` the layer refuses a stream over the cap
        // before the hub sees it; without, the hub answers first (and its stream is
        // then refused).
        let requests = [
            get("/?topic=a").header("last-event-id", not_utf8.clone()),
            get("/?topic=a").header("last-event-id", too_long.as_str()),
            get("/?topic=a&lastEventId=%FF"),
            get("/?topic=a").header("accept-encoding", "gzip;q=2, ~junk, br;q"),
            Request::get("/?topic=a").header("last-event-id", "not-a-number"),
            Request::get("/?topic=a").header("last-event-id", "1"),
            Request::get("/"),
            Request::get("/?topic="),
            Request::get("/?topic=a&topic=b&topic=c"),
            Request::get("/?topic=secret"),
            Request::post("/?topic=a"),
        ];
        for request in requests {
            let response = timeout(GUARD, client.send(request.body(empty()).unwrap()))
                .await
                .expect("an answer to a bad request");
            assert_ne!(
                response.status(),
                StatusCode::OK,
                "the server is at its cap"
            );
            let _ = timeout(GUARD, response.into_body().collect())
                .await
                .expect("the body of the refusal");
        }
        client.close();
    }
    // Streams over the caps, with a place free on the server: the holder of the first
    // place tries again.
    let (client, response) = held.pop().unwrap();
    drop(response);
    client.close();
    let mut again = h1_from(IpAddr::from([127, 0, 1, 1]), server.addr).await;
    let refused = again.send(get("/?topic=a").body(empty()).unwrap()).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

    // A subscriber that falls behind its window of two events.
    let mut slow = hub.subscribe(["a"], None);
    for n in 0..5 {
        hub.publish("a", Event::data(&n.to_string())).unwrap();
    }
    let lagged = timeout(GUARD, slow.next())
        .await
        .expect("the lag of the slow subscriber")
        .unwrap();
    assert!(lagged.is_err());
    drop(held);
}

#[test]
fn nothing_a_client_sends_is_logged_above_debug() {
    let one = logged(tracing::Level::INFO, bad_clients(1));
    let many = logged(tracing::Level::INFO, bad_clients(150));
    assert!(
        one.loud().is_empty() && many.loud().is_empty(),
        "bad requests were logged at info or above: {:#?} {:#?}",
        one.loud(),
        many.loud()
    );
    assert_eq!(many.lines().len(), one.lines().len(), "{:#?}", many.lines());

    // At debug, they are there for whoever looks.
    let debug = logged(tracing::Level::DEBUG, bad_clients(2)).lines();
    for expected in [
        "ignoring malformed Last-Event-ID header",
        "ignoring malformed last event id in query",
        "hub subscriber gets the reset event",
        "hub refused a topic",
        "refusing an event stream",
        "not a GET (405)",
        "hub subscriber lagged",
    ] {
        assert!(
            debug.iter().any(|line| line.contains(expected)),
            "no {expected:?} at debug: {debug:#?}"
        );
    }
}

#[test]
fn a_streams_lines_share_its_span() {
    let captured = logged(tracing::Level::DEBUG, async {
        let hub = Hub::new();
        let (ends, mut ended) = mpsc::unbounded_channel();
        let layer = SseLayer::new()
            .limit(StreamLimit::new(1))
            .stall_timeout(Duration::from_millis(200))
            .on_end(move |end: &StreamEnd| {
                let _ = ends.send(end.reason);
            });
        let service = ServiceBuilder::new().layer(layer).service(hub.clone());
        let server = support::serve(service).await;

        // A stream that ends when its client leaves.
        let mut client = h1_from(IpAddr::from([127, 0, 0, 9]), server.addr).await;
        let request = get("/events?topic=news&topic=weather")
            .header("last-event-id", "5")
            .body(empty())
            .unwrap();
        let mut response = client.send(request).await;
        // Over the cap while it is open: refused.
        let mut other = h1_from(IpAddr::from([127, 0, 0, 10]), server.addr).await;
        let refused = other
            .send(get("/events?topic=news").body(empty()).unwrap())
            .await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        hub.publish("news", Event::data("hello")).unwrap();
        let frame = timeout(GUARD, support::next_data(response.body_mut())).await;
        assert!(frame.expect("the event").is_some());
        drop(response);
        client.close();
        assert_eq!(
            timeout(GUARD, ended.recv())
                .await
                .expect("the end report of the stream whose client left"),
            Some(EndReason::ClientGone)
        );

        // A stream whose HTTP/2 client grants it no window: it stalls.
        let mut stuck = support::ZeroWindow::connect(server.addr).await;
        let response = stuck.get("/events?topic=stuck").await;
        assert_eq!(response.status(), StatusCode::OK);
        hub.publish("stuck", Event::data(&"x".repeat(100))).unwrap();
        assert_eq!(
            timeout(GUARD, ended.recv())
                .await
                .expect("the end report of the stalled stream"),
            Some(EndReason::Stalled)
        );
    });
    let lines = captured.lines();
    let in_span = |part: &str, span: &[&str]| {
        lines.iter().any(|line| {
            line.contains(part)
                && line.contains("sse_stream{")
                && span.iter().all(|field| line.contains(field))
        })
    };
    let first = [
        "method=GET",
        "path=\"/events\"",
        "version=HTTP/1.1",
        "client=127.0.0.9:",
        "resumed_from=\"5\"",
        "topics=[\"news\", \"weather\"]",
    ];
    assert!(in_span("sse stream started", &first), "{lines:#?}");
    assert!(in_span("hub subscriber joined", &first), "{lines:#?}");
    assert!(
        in_span(
            "sse stream ended",
            &[&first[..], &["reason=client gone"]].concat()
        ),
        "{lines:#?}"
    );
    assert!(
        in_span("refusing an event stream", &["client=127.0.0.10:"]),
        "{lines:#?}"
    );
    let stalled = ["version=HTTP/2.0", "topics=[\"stuck\"]"];
    assert!(in_span("stopped taking frames", &stalled), "{lines:#?}");
    assert!(
        in_span(
            "sse stream ended",
            &[&stalled[..], &["reason=stalled"]].concat()
        ),
        "{lines:#?}"
    );
}

#[test]
fn a_client_that_closes_its_connection_is_not_logged_as_an_error() {
    let captured = logged_with(tracing::Level::DEBUG, |captured| async move {
        let hub = Hub::new();
        let (ends, mut ended) = mpsc::unbounded_channel();
        let layer = SseLayer::new().on_end(move |end: &StreamEnd| {
            let _ = ends.send(end.reason);
        });
        let service = ServiceBuilder::new().layer(layer).service(hub.clone());
        let server = support::serve(service).await;

        // A browser tab closed: an HTTP/1.1 stream (written by serve itself), then an
        // HTTP/2 one and a second stream on a kept-alive HTTP/1.1 connection (both
        // served by hyper), each read once and then left by closing the connection.
        let mut h1 = h1_from(IpAddr::from([127, 0, 0, 11]), server.addr).await;
        let mut h2 = support::h2_connect(server.addr).await;
        let mut again = h1_from(IpAddr::from([127, 0, 0, 12]), server.addr).await;
        let answer = again.send(get("/").body(empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        drop(answer);
        let mut streams = vec![
            h1.send(get("/events?topic=t").body(empty()).unwrap()).await,
            h2.send(get("/events?topic=t").body(empty()).unwrap()).await,
            again
                .send(get("/events?topic=t").body(empty()).unwrap())
                .await,
        ];
        hub.publish("t", Event::data("hello")).unwrap();
        for response in &mut streams {
            assert_eq!(response.status(), StatusCode::OK);
            let frame = timeout(GUARD, support::next_data(response.body_mut())).await;
            assert!(frame.expect("the event").is_some());
        }
        drop(streams);
        h1.close();
        h2.close();
        again.close();
        for _ in 0..3 {
            assert_eq!(
                timeout(GUARD, ended.recv())
                    .await
                    .expect("the end report of a closed tab's stream"),
                Some(EndReason::ClientGone)
            );
        }
        // Each connection's task logs its last line as it ends.
        let waited = timeout(GUARD, async {
            while closed(&captured.lines()).len() < 3 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "each connection logged its close: {:#?}",
            captured.lines()
        );
    });
    let lines = captured.lines();
    let closed = closed(&lines);
    assert_eq!(closed.len(), 3, "{lines:#?}");
    assert!(
        closed.iter().all(|line| !line.contains("error")),
        "{closed:#?}"
    );
}

/// The lines that say a connection ended.
fn closed(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|line| line.contains("connection closed") || line.contains("closed the connection"))
        .collect()
}

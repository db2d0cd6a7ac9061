//! The layer over a body it did not build, whose frames split events anywhere (a
//! proxied upstream stream): an upstream stream with every kind of line end (CRLF, LF,
//! lone CR, and blank lines of each kind), a BOM, comments and non-ASCII text, cut at
//! every byte position. The layer's own frames (the `retry:` prelude, heartbeats, the
//! shutdown event) go out only where an event ended, so the events read back by an
//! independent spec parser (`eventsource-stream`) are exactly the upstream's.
//!
//! Where the body is polled directly, tokio's clock is paused and every gap between two
//! chunks lasts one and a half heartbeat intervals: a heartbeat falls due in each one.
//! Over real connections (HTTP/1.1 and HTTP/2), the upstream body tells the test when
//! the layer polled it, and the test sends the next chunk only once the layer has
//! polled it a heartbeat interval after the last one: never a sleep.

mod support;

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http::Request;
use http_body::Body;
use http_body_util::BodyExt;
use support::upstream::{Feed, event_stream, upstream};
use support::*;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_sse::layer::ResponseBody;
use tower_sse::{EndReason, Event, SseLayer, StreamEnd};

/// The upstream stream.
const UPSTREAM: &str = "\u{FEFF}data: one\r\n\r\n\
    event: two\ndata: 2\n\n\
    data: three\r\r\
    : a comment\r\nid: 4\r\ndata: four\n\r\n\
    data: five\r\n\n\
    data: six\r\r\n\
    data\ndata: ไทย ✈\n\r\n\r\n\
    id:\ndata: seven\r\ndata:  8\n\n\
    retry: 1500\nevent: last\ndata: end\n\n";

/// What a client dispatches for [`UPSTREAM`], by the HTML standard: (type, data, last
/// event id).
fn upstream_events() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("message", "one", ""),
        ("two", "2", ""),
        ("message", "three", ""),
        ("message", "four", "4"),
        ("message", "five", "4"),
        ("message", "six", "4"),
        ("message", "\nไทย ✈", "4"),
        ("message", "seven\n 8", ""),
        ("last", "end", ""),
    ]
}

const BOM: &[u8] = b"\xEF\xBB\xBF";
const HEARTBEAT: &[u8] = b":\n\n";
const PRELUDE: &[u8] = b"retry: 2500\n\n";

/// The upstream bytes as they go out: without the BOM, which a parser drops anyway and
/// which would no longer be at the start behind the prelude.
fn upstream_out() -> &'static [u8] {
    &UPSTREAM.as_bytes()[BOM.len()..]
}

/// A reference, independent of the crate: whether `bytes` (without a BOM) ends where
/// an event ended, read forwards line by line. A line ends at CRLF, LF or a lone CR.
fn ends_at_boundary(bytes: &[u8]) -> bool {
    let (mut boundary, mut line_len, mut i) = (true, 0, 0);
    while i < bytes.len() {
        if bytes[i] == b'\r' || bytes[i] == b'\n' {
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            boundary = line_len == 0;
            line_len = 0;
        } else {
            boundary = false;
            line_len += 1;
        }
        i += 1;
    }
    boundary
}

/// The position in [`upstream_out`] after the first `raw` bytes of [`UPSTREAM`].
fn out_position(raw: usize) -> usize {
    raw.saturating_sub(BOM.len())
}

/// Reads `wire` (after the prelude) against the upstream bytes: every byte of the
/// upstream in order, and heartbeats only where the upstream stood at an event boundary.
/// Gives the number of heartbeats at each position of the upstream.
fn heartbeats_in(wire: &[u8]) -> Vec<usize> {
    let upstream = upstream_out();
    let wire = wire.strip_prefix(PRELUDE).unwrap_or_else(|| {
        panic!(
            "the prelude goes first: {:?}",
            String::from_utf8_lossy(wire)
        )
    });
    let mut at = vec![0; upstream.len() + 1];
    let (mut i, mut j) = (0, 0);
    loop {
        if wire[i..].starts_with(HEARTBEAT) && ends_at_boundary(&upstream[..j]) {
            at[j] += 1;
            i += HEARTBEAT.len();
            continue;
        }
        if j == upstream.len() {
            assert_eq!(
                i,
                wire.len(),
                "bytes after the upstream's end: {:?}",
                String::from_utf8_lossy(&wire[i..])
            );
            return at;
        }
        assert!(
            wire.get(i) == Some(&upstream[j]),
            "the wire differs from the upstream after {j} upstream bytes ({:?}): \
             wire goes on with {:?}",
            String::from_utf8_lossy(&upstream[..j]),
            String::from_utf8_lossy(&wire[i..(i + 16).min(wire.len())])
        );
        i += 1;
        j += 1;
    }
}

/// The events `eventsource-stream` reads from `chunks`, as (type, data, last event id).
async fn parse(chunks: Vec<Bytes>) -> Vec<(String, String, String)> {
    futures_util::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>))
        .eventsource()
        .map(|event| {
            let event = event.expect("the stream parses as SSE");
            (event.event, event.data, event.id)
        })
        .collect()
        .await
}

async fn assert_upstream_events(chunks: Vec<Bytes>) {
    let expected: Vec<(String, String, String)> = upstream_events()
        .into_iter()
        .map(|(t, d, i)| (t.into(), d.into(), i.into()))
        .collect();
    // Without its BOM: eventsource-stream 0.2.3 panics on one (it cuts the first
    // character's first byte off, not the whole character).
    assert_eq!(
        parse(vec![Bytes::from_static(upstream_out())]).await,
        expected,
        "the reference reading of the upstream"
    );
    assert_eq!(parse(chunks).await, expected, "the events read back");
}

/// The layer of these tests, reporting each stream's end on `ends`.
fn layer(heartbeat: Duration) -> (SseLayer, mpsc::UnboundedReceiver<EndReason>) {
    let (ends_tx, ends) = mpsc::unbounded_channel();
    let layer = SseLayer::new()
        .heartbeat(heartbeat)
        .retry(Duration::from_millis(2500))
        .on_end(move |end: &StreamEnd| {
            let _ = ends_tx.send(end.reason);
        });
    (layer, ends)
}

/// The layer's body around `body`, as a service under `layer` answers.
async fn layered<B>(layer: SseLayer, body: B) -> ResponseBody<B>
where
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let body = Mutex::new(Some(body));
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |_: Request<()>| {
            let body = body.lock().unwrap().take().unwrap();
            async move { Ok::<_, Infallible>(event_stream(body)) }
        }));
    service
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap()
        .into_body()
}

async fn collect<B>(mut body: ResponseBody<B>) -> Vec<Bytes>
where
    B: Body<Data = Bytes, Error = Infallible> + Unpin,
{
    let mut frames = Vec::new();
    // Each frame within the deadline on tokio's clock: in the paused tests below, no
    // frame is more than five seconds (the shutdown deadline) after the one before.
    let what = "the next frame of the body, or its end";
    while let Some(frame) = within(what, body.frame()).await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    frames
}

// ---- The body polled directly, tokio's clock paused --------------------------------------

const INTERVAL: Duration = Duration::from_secs(1);

/// Sends `cuts` of the upstream through the layer, one and a half heartbeat intervals
/// apart, and checks what comes out: the upstream bytes, exactly one heartbeat in every
/// gap that follows the end of an event and none in the others, and the upstream's
/// events.
async fn through_the_layer(layer: SseLayer, cuts: &[usize]) {
    let (body, feed) = upstream();
    let body = layered(layer, body).await;
    let chunks: Vec<&[u8]> = cuts
        .windows(2)
        .map(|w| &UPSTREAM.as_bytes()[w[0]..w[1]])
        .collect();
    let feeder = tokio::spawn(async move {
        for chunk in chunks {
            feed.send(chunk);
            tokio::time::sleep(INTERVAL * 3 / 2).await;
        }
    });
    let frames = collect(body).await;
    within("the feeder's end", feeder).await.unwrap();
    let wire = frames.concat();
    let heartbeats = heartbeats_in(&wire);
    let mut expected = vec![0; upstream_out().len() + 1];
    for &cut in &cuts[1..] {
        let at = out_position(cut);
        if ends_at_boundary(&upstream_out()[..at]) {
            expected[at] += 1;
        }
    }
    // Until the BOM is whole nothing of the upstream goes out: heartbeats come at the
    // start, one per interval, however many gaps that takes.
    assert!(heartbeats[0] >= expected[0], "cuts {cuts:?}");
    assert_eq!(
        heartbeats[1..],
        expected[1..],
        "heartbeats at each upstream position (cuts {cuts:?}): {:?}",
        String::from_utf8_lossy(&wire)
    );
    assert_upstream_events(frames).await;
}

#[tokio::test(start_paused = true)]
async fn heartbeats_go_out_only_where_an_event_ended_wherever_the_upstream_is_cut() {
    let len = UPSTREAM.len();
    for batch in [None, Some(Duration::from_millis(20))] {
        // In two, at every byte position.
        for cut in 1..len {
            let (mut layer, _ends) = layer(INTERVAL);
            if let Some(delay) = batch {
                layer = layer.batch_delay(delay);
            }
            through_the_layer(layer, &[0, cut, len]).await;
        }
        // A byte at a time.
        let (mut layer, _ends) = layer(INTERVAL);
        if let Some(delay) = batch {
            layer = layer.batch_delay(delay);
        }
        let every: Vec<usize> = (0..=len).collect();
        through_the_layer(layer, &every).await;
    }
}

/// The first position at or after `from` where the upstream ends an event.
fn next_boundary(from: usize) -> usize {
    let upstream = upstream_out();
    (from..=upstream.len())
        .find(|&at| ends_at_boundary(&upstream[..at]))
        .unwrap()
}

fn bye() -> Event {
    Event::builder()
        .event("bye")
        .retry(Duration::from_millis(100))
        .data("")
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_event_in_progress_wherever_the_upstream_is_cut() {
    let bye = bye();
    for cut in BOM.len()..UPSTREAM.len() {
        let shutdown = CancellationToken::new();
        let (layer, mut ends) = layer(INTERVAL);
        let layer = layer
            .graceful_shutdown(shutdown.clone())
            .shutdown_event(bye.clone());
        let (body, feed) = upstream();
        let mut body = layered(layer, body).await;
        feed.send(&UPSTREAM.as_bytes()[..cut]);
        let mut wire = Vec::new();
        // The prelude and the first part.
        while wire.len() < PRELUDE.len() + out_position(cut) {
            let frame = within("the prelude and the first part", body.frame())
                .await
                .unwrap()
                .unwrap();
            wire.extend_from_slice(&frame.into_data().unwrap());
        }
        // Shutdown, then the rest of the upstream a byte at a time: the stream takes it
        // up to the end of the event in progress, and no further.
        shutdown.cancel();
        for byte in UPSTREAM.as_bytes()[cut..].chunks(1) {
            feed.send(byte);
        }
        for frame in collect(body).await {
            wire.extend_from_slice(&frame);
        }
        let end = next_boundary(out_position(cut));
        let expected = [PRELUDE, &upstream_out()[..end], bye.as_bytes()].concat();
        assert_eq!(
            String::from_utf8_lossy(&wire),
            String::from_utf8_lossy(&expected),
            "cut at {cut}"
        );
        assert_eq!(
            within("the end report", ends.recv()).await,
            Some(EndReason::Shutdown)
        );
        assert!(feed.seen.borrow().dropped);
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_a_half_event_at_the_deadline_without_the_shutdown_event() {
    let shutdown = CancellationToken::new();
    let (layer, mut ends) = layer(INTERVAL);
    let layer = layer
        .graceful_shutdown(shutdown.clone())
        .shutdown_event(bye());
    let (body, feed) = upstream();
    let mut body = layered(layer, body).await;
    feed.send(b"data: one\n\ndata: hel");
    let mut wire = Vec::new();
    while wire.len() < PRELUDE.len() + 20 {
        let frame = within(
            "the prelude, the first event and the half one",
            body.frame(),
        )
        .await
        .unwrap()
        .unwrap();
        wire.extend_from_slice(&frame.into_data().unwrap());
    }
    let cancelled = Instant::now();
    shutdown.cancel();
    // The rest never comes: the stream waits five seconds for it (skipping the
    // heartbeats that fall due meanwhile), then ends there.
    for frame in collect(body).await {
        wire.extend_from_slice(&frame);
    }
    assert_eq!(cancelled.elapsed(), Duration::from_secs(5));
    assert_eq!(
        String::from_utf8_lossy(&wire),
        "retry: 2500\n\ndata: one\n\ndata: hel"
    );
    assert_eq!(
        within("the end report", ends.recv()).await,
        Some(EndReason::Shutdown)
    );
    assert!(feed.seen.borrow().dropped, "the upstream body was dropped");
    let events = parse(vec![Bytes::from(wire)]).await;
    assert_eq!(events.len(), 1, "the half event is dropped: {events:?}");
}

// ---- Over real connections ------------------------------------------------------------

/// A server whose every stream is an [`Upstream`] body the test feeds.
async fn upstream_server(layer: SseLayer) -> (TestServer, mpsc::UnboundedReceiver<Feed>) {
    let (feeds_tx, feeds) = mpsc::unbounded_channel();
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_: Request<hyper::body::Incoming>| {
            let (body, feed) = upstream();
            feeds_tx.send(feed).unwrap();
            async move { Ok::<_, Infallible>(event_stream(body)) }
        },
    ));
    (serve(service).await, feeds)
}

async fn open(
    addr: std::net::SocketAddr,
    http2: bool,
) -> (hyper::body::Incoming, Box<dyn std::any::Any>) {
    let request = get("/events").body(empty()).unwrap();
    if http2 {
        let mut client = h2_connect(addr).await;
        (client.send(request).await.into_body(), Box::new(client))
    } else {
        let mut client = h1_connect(addr).await;
        (client.send(request).await.into_body(), Box::new(client))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http1_and_http2_an_upstream_cut_at_every_byte_reads_back_exactly_with_heartbeats_between()
 {
    let interval = Duration::from_millis(2);
    for http2 in [false, true] {
        let (layer, mut ends) = layer(interval);
        let (server, mut feeds) = upstream_server(layer).await;
        let (body, _client) = open(server.addr, http2).await;
        let mut feed = within("the stream's feed", feeds.recv()).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut body = body;
            let mut frames = Vec::new();
            while let Some(data) = next_data(&mut body).await {
                frames.push(data);
            }
            frames
        });
        // A byte at a time; the next only once the layer polled the upstream again two
        // heartbeat intervals after taking the last one, so that a heartbeat fell due
        // after every byte.
        for (n, byte) in UPSTREAM.as_bytes().chunks(1).enumerate() {
            feed.send(byte);
            feed.polled_after(n + 1, interval * 2).await;
        }
        drop(feed);
        let frames = timeout(Duration::from_secs(30), reader)
            .await
            .expect("hang guard: the stream ends")
            .unwrap();
        let wire = frames.concat();
        let heartbeats = heartbeats_in(&wire);
        for raw in 1..=UPSTREAM.len() {
            let at = out_position(raw);
            if ends_at_boundary(&upstream_out()[..at]) {
                assert!(
                    heartbeats[at] >= 1,
                    "http2={http2}: no heartbeat after upstream byte {raw}, at a boundary"
                );
            }
        }
        assert_upstream_events(frames).await;
        assert_eq!(
            within("the end report", ends.recv()).await,
            Some(EndReason::Finished)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http1_and_http2_shutdown_waits_for_the_split_event_then_writes_its_event() {
    for http2 in [false, true] {
        let shutdown = CancellationToken::new();
        let (layer, mut ends) = layer(Duration::from_secs(15));
        let layer = layer
            .graceful_shutdown(shutdown.clone())
            .shutdown_event(bye());
        let (server, mut feeds) = upstream_server(layer).await;
        let (mut body, _client) = open(server.addr, http2).await;
        let mut feed = within("the stream's feed", feeds.recv()).await.unwrap();

        feed.send(b"data: hel");
        let mut wire = Vec::new();
        while wire.len() < PRELUDE.len() + 9 {
            let data = within("the prelude and the first part", next_data(&mut body)).await;
            wire.extend_from_slice(&data.unwrap());
        }
        // Shutdown while the event is half sent: the layer looks at the upstream again
        // (the cancellation woke it), and waits for the rest.
        let polls = feed.seen.borrow().pending_polls;
        shutdown.cancel();
        timeout(
            Duration::from_secs(30),
            feed.seen
                .wait_for(|seen| seen.pending_polls > polls || seen.dropped),
        )
        .await
        .expect("hang guard: the layer saw the shutdown")
        .unwrap();
        feed.send_if_there(b"lo\n\n");
        // (The layer may have dropped the upstream by now.)
        feed.send_if_there(b"data: not sent, after the shutdown\n\n");
        within(
            "the rest of the event, the shutdown event and the end",
            async {
                while let Some(data) = next_data(&mut body).await {
                    wire.extend_from_slice(&data);
                }
            },
        )
        .await;
        let bye = bye();
        let expected = [PRELUDE, b"data: hello\n\n", bye.as_bytes()].concat();
        assert_eq!(
            String::from_utf8_lossy(&wire),
            String::from_utf8_lossy(&expected),
            "http2={http2}"
        );
        let events = parse(vec![Bytes::from(wire)]).await;
        let expected = [("message", "hello", ""), ("bye", "", "")];
        assert_eq!(
            events,
            expected.map(|(t, d, i)| (t.to_owned(), d.to_owned(), i.to_owned()))
        );
        assert_eq!(
            within("the end report", ends.recv()).await,
            Some(EndReason::Shutdown)
        );
    }
}

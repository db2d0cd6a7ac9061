//! The core on the wire, read by a real browser: Debian's Chromium, driven by
//! playwright-core from Node (`tests/browser/roundtrip.mjs`), opens an `EventSource`
//! on a tower-sse endpoint and reports every event it dispatched.
//!
//! - `chromium_reads_every_tricky_event_exactly`: a fixed list of awkward events (line
//!   breaks of every kind, empty data, leading spaces, NUL, BOM, emoji and Thai, JSON,
//!   non-ASCII types and ids, comments, `retry`, frames that fire nothing) arrives as
//!   exactly what the HTML standard says each built event means, and nothing else.
//! - `chromium_gets_each_event_live_through_a_compression_layer`: behind tower-http's
//!   `CompressionLayer` set to compress everything, each event is sent only after the
//!   browser acknowledged the previous one, so a stream that a layer buffers fails.
//! - `chromium_reads_a_proxied_stream_cut_anywhere_with_heartbeats_between_as_the_events_built`:
//!   the same events as another server would send them (a BOM, CRLF, LF and lone CR line
//!   ends in turn), passed on by a handler in chunks cut anywhere, with a heartbeat due
//!   after every chunk: the layer writes heartbeats only where an event ended, and the
//!   browser dispatches exactly the events built.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`: `tests/run.sh`
//! installs them, and the feature `test-browser` (without it `cargo test` skips this
//! file). When one is missing these tests fail, saying so; they never skip.
//! Screenshots of the pages go to `target/browser-artifacts/`.

#[path = "browser/driver.rs"]
mod driver;
mod support;

use driver::{artifacts_dir, browser_dir, require_browser_tools};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::Html;
use axum::routing::{get, post};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use http::Request;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use tower::{Layer, ServiceBuilder, service_fn};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::SizeAbove;
use tower_sse::{Event, Sse, SseLayer};

const PAGE: &str = include_str!("browser/eventsource.html");
/// How long the browser may take to receive one event in the live test.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the Node script waits for the page's closing `done` event.
const PAGE_TIMEOUT: Duration = Duration::from_secs(45);

/// One event as the test builds it. What the browser must dispatch for it is derived
/// from these fields by [`expected`], following the HTML standard, never from the
/// encoder's output.
#[derive(Clone, Debug, Default)]
struct Spec {
    label: &'static str,
    comment: Option<&'static str>,
    retry: Option<Duration>,
    event: Option<&'static str>,
    id: Option<&'static str>,
    /// One `.data(..)` call per item.
    data: Vec<String>,
    /// A `.json_data(..)` call after the data calls.
    json: Option<serde_json::Value>,
}

impl Spec {
    fn new(label: &'static str) -> Self {
        Spec {
            label,
            ..Spec::default()
        }
    }
    fn comment(mut self, text: &'static str) -> Self {
        self.comment = Some(text);
        self
    }
    fn retry(mut self, ms: u64) -> Self {
        self.retry = Some(Duration::from_millis(ms));
        self
    }
    fn event(mut self, event_type: &'static str) -> Self {
        self.event = Some(event_type);
        self
    }
    fn id(mut self, id: &'static str) -> Self {
        self.id = Some(id);
        self
    }
    fn data(mut self, data: impl Into<String>) -> Self {
        self.data.push(data.into());
        self
    }
    fn json(mut self, value: serde_json::Value) -> Self {
        self.json = Some(value);
        self
    }

    fn build(&self) -> Event {
        let mut builder = Event::builder();
        if let Some(comment) = self.comment {
            builder = builder.comment(comment);
        }
        if let Some(retry) = self.retry {
            builder = builder.retry(retry);
        }
        if let Some(event_type) = self.event {
            builder = builder.event(event_type);
        }
        if let Some(id) = self.id {
            builder = builder.id(id);
        }
        for data in &self.data {
            builder = builder.data(data);
        }
        if let Some(value) = &self.json {
            #[cfg(feature = "json")]
            {
                builder = builder.json_data(value);
            }
            #[cfg(not(feature = "json"))]
            {
                builder = builder.data(&serde_json::to_string(value).unwrap());
            }
        }
        builder
            .build()
            .unwrap_or_else(|e| panic!("{}: {e:?}", self.label))
    }

    /// Whether a browser dispatches anything for this frame: only when it has data.
    fn fires(&self) -> bool {
        !self.data.is_empty() || self.json.is_some()
    }
}

/// An event as the page recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
struct Received {
    #[serde(rename = "type")]
    event_type: String,
    data: String,
    #[serde(rename = "lastEventId")]
    last_event_id: String,
}

/// What an `EventSource` dispatches for `specs`, in order, by the HTML standard: a frame
/// fires only when it has data; CRLF, CR and LF in data each become one LF, and the data
/// lines are joined by LF; an empty or missing type is `message`; the last event id
/// persists from frame to frame, even through frames that fire nothing, and an empty
/// `id` clears it.
fn expected(specs: &[Spec]) -> Vec<(usize, Received)> {
    let mut last_event_id = String::new();
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if let Some(id) = spec.id {
            last_event_id = id.to_owned();
        }
        if !spec.fires() {
            continue;
        }
        let mut lines: Vec<String> = spec
            .data
            .iter()
            .map(|d| d.replace("\r\n", "\n").replace('\r', "\n"))
            .collect();
        if let Some(value) = &spec.json {
            lines.push(serde_json::to_string(value).unwrap());
        }
        let event_type = match spec.event {
            Some(t) if !t.is_empty() => t.to_owned(),
            _ => "message".to_owned(),
        };
        out.push((
            i,
            Received {
                event_type,
                data: lines.join("\n"),
                last_event_id: last_event_id.clone(),
            },
        ));
    }
    out
}

/// The awkward events both tests send, closed by a `done` event that makes the page
/// stop listening.
fn tricky_events() -> Vec<Spec> {
    vec![
        Spec::new("comment only, with line breaks: fires nothing")
            .comment("tower-sse browser test\r\nsecond line\rthird line\nevent: forged"),
        Spec::new("plain").id("1").data("plain"),
        Spec::new("CRLF in data, custom type")
            .event("custom")
            .data("crlf\r\nline"),
        Spec::new("lone CR in data").data("lone\rcr"),
        Spec::new("LF in data").data("lf\nline"),
        Spec::new("trailing LF").data("trailing newline\n"),
        Spec::new("trailing lone CR").data("trailing cr\r"),
        Spec::new("empty data").data(""),
        Spec::new("only CRLF").data("\r\n"),
        Spec::new("CR, CRLF, LF in a row").data("\r\r\n\n"),
        Spec::new("leading spaces and tab").data("  two leading spaces\n\ttab"),
        Spec::new("unicode, emoji, Thai; Thai type; non-ASCII id")
            .event("เครื่องบิน")
            .id("✈️42")
            .data("สวัสดีครับ ✈️ 🛩 naïve Ελληνικά 日本語 👩‍👩‍👧 e\u{301}"),
        Spec::new("NUL inside data").data("nul\0inside\0"),
        Spec::new("BOM-prefixed data").data("\u{FEFF}bom-prefixed"),
        Spec::new("JSON").event("position").json(json!({
            "flight": "TG 102",
            "lat": 13.69,
            "lon": 100.75,
            "alt": null,
            "note": "line\nbreak \"quoted\" ✈ \u{0}",
        })),
        Spec::new("field-like data")
            .data(": not a comment\ndata: not a field\nid: 666\n\nevent: x"),
        Spec::new("id only: fires nothing but sets the last event id").id("silent-id"),
        Spec::new("type only: fires nothing, type does not carry over").event("ghost"),
        Spec::new("after the silent frames").data("after ghost"),
        Spec::new("retry with data").retry(1234).data("with retry"),
        Spec::new("retry only: fires nothing").retry(2500),
        Spec::new("empty type is message")
            .event("")
            .data("empty type"),
        Spec::new("type with leading space")
            .event(" leading")
            .data("x"),
        Spec::new("type with inner space")
            .event("with space")
            .data("y"),
        Spec::new("explicit message type")
            .event("message")
            .data("explicit message type"),
        Spec::new("comment with a forged field inside an event")
            .comment("a\nevent: forged\ndata: forged")
            .data("real"),
        Spec::new("several data calls")
            .data("first")
            .data("second\r\nthird")
            .data(""),
        Spec::new("id with spaces and non-ASCII")
            .id("id with spaces ünïcödé 🚀")
            .data("z"),
        Spec::new("empty id clears the last event id")
            .id("")
            .data("id cleared"),
        Spec::new("100 kB, more than one 64 KiB frame")
            .id("big")
            .data(format!("{}end", "x".repeat(100_000))),
        Spec::new("2000 lines").data(
            (0..2000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Spec::new("done").event("done").data("bye"),
    ]
}

/// The event types the page listens for.
fn event_types(specs: &[Spec]) -> Vec<&'static str> {
    specs.iter().filter_map(|s| s.event).collect()
}

/// The page, `/events` (an [`SseLayer`] over a tower service that hands out `events`
/// to the first request and an endless empty stream to any later one, so that a
/// reconnect shows up as an extra `open` rather than as replayed events; each request
/// notifies `connected`), and `/ack`, which forwards each acknowledgement body to `acks`.
fn app(
    specs: &[Spec],
    events: BoxStream<'static, Event>,
    acks: mpsc::UnboundedSender<String>,
    connected: Arc<Notify>,
) -> Router {
    let layer = SseLayer::new().retry(Duration::from_millis(1500));
    let first = Sse::new(events).into_response().map(Body::new);
    app_with(specs, layer, first, acks, connected)
}

/// [`app`], with `first` as the answer to the first request for `/events`, under `layer`.
fn app_with(
    specs: &[Spec],
    layer: SseLayer,
    first: http::Response<Body>,
    acks: mpsc::UnboundedSender<String>,
    connected: Arc<Notify>,
) -> Router {
    let page = PAGE.replace(
        "/*EVENT_TYPES*/[]",
        &serde_json::to_string(&event_types(specs)).unwrap(),
    );
    let first = Arc::new(Mutex::new(Some(first)));
    let stream_service = layer.layer(service_fn(move |_request: Request<Body>| {
        let response = first.lock().unwrap().take();
        connected.notify_one();
        let response = response.unwrap_or_else(|| {
            Sse::new(stream::pending::<Event>())
                .into_response()
                .map(Body::new)
        });
        async move { Ok::<_, Infallible>(response) }
    }));
    Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route_service("/events", stream_service)
        .route(
            "/ack",
            post(move |body: String| async move {
                let _ = acks.send(body);
                "ok"
            }),
        )
}

/// What `tests/browser/roundtrip.mjs` reports.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    received: Vec<Received>,
    done: bool,
    timed_out: bool,
    source_errors: Vec<serde_json::Value>,
    opens: u32,
    ack_failures: Vec<String>,
    console_errors: Vec<serde_json::Value>,
    page_errors: Vec<serde_json::Value>,
    failed_requests: Vec<FailedRequest>,
    responses: Vec<SeenResponse>,
    screenshot: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailedRequest {
    url: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SeenResponse {
    url: String,
    status: u16,
    headers: std::collections::HashMap<String, String>,
}

impl Report {
    fn response(&self, path: &str) -> &SeenResponse {
        self.responses
            .iter()
            .find(|r| r.url.ends_with(path))
            .unwrap_or_else(|| {
                panic!(
                    "the browser saw no response for {path}: {:#?}",
                    self.responses
                )
            })
    }
}

/// Runs `roundtrip.mjs` against `url` and returns its report.
async fn run_browser(url: String, name: &'static str) -> Report {
    let mut command = std::process::Command::new("node");
    command
        .current_dir(browser_dir())
        .arg("roundtrip.mjs")
        .arg(&url)
        .arg("--artifacts")
        .arg(artifacts_dir())
        .arg("--name")
        .arg(name)
        .arg("--timeout")
        .arg(PAGE_TIMEOUT.as_millis().to_string())
        .stdin(std::process::Stdio::null());
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(PAGE_TIMEOUT + Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("node roundtrip.mjs {url} did not finish"))
        .expect("node starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node roundtrip.mjs {url} failed ({}):\n{stderr}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("roundtrip.mjs printed no report ({e}):\nstdout: {stdout}\nstderr: {stderr}")
    });
    eprintln!(
        "{name}: Chromium session took {:?}; screenshot {:?}",
        started.elapsed(),
        report.screenshot
    );
    report
}

/// Everything both tests require of what the browser saw.
fn check_report(report: &Report, specs: &[Spec]) {
    assert!(
        !report.timed_out && report.done,
        "the page never got the closing `done` event; it received {} events: {:#?}\n\
         source errors: {:?}",
        report.received.len(),
        report.received.iter().rev().take(3).collect::<Vec<_>>(),
        report.source_errors
    );
    assert!(
        report.page_errors.is_empty(),
        "page errors: {:#?}",
        report.page_errors
    );
    assert!(
        report.console_errors.is_empty(),
        "console errors: {:#?}",
        report.console_errors
    );
    assert!(
        report.source_errors.is_empty(),
        "EventSource error events (a failed or dropped connection): {:?}",
        report.source_errors
    );
    assert_eq!(report.opens, 1, "the EventSource opened more than once");
    assert!(
        report.ack_failures.is_empty(),
        "acks: {:?}",
        report.ack_failures
    );
    // Closing the EventSource cancels its request: that is the one failure expected.
    let failed: Vec<_> = report
        .failed_requests
        .iter()
        .filter(|f| !(f.url.ends_with("/events") && f.error.as_deref() == Some("net::ERR_ABORTED")))
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:#?}");

    let expected = expected(specs);
    for (n, (got, (i, want))) in report.received.iter().zip(&expected).enumerate() {
        assert_eq!(
            got, want,
            "event #{n} (spec {i}: {:?}) is not what was built: {:?}",
            specs[*i].label, specs[*i]
        );
    }
    assert_eq!(
        report.received.len(),
        expected.len(),
        "the browser dispatched {} events, {} were sent; extra: {:#?}",
        report.received.len(),
        expected.len(),
        report.received.get(expected.len()..)
    );

    let stream = report.response("/events");
    assert_eq!(stream.status, 200);
    assert!(
        stream.headers["content-type"].starts_with("text/event-stream"),
        "{stream:?}"
    );
    // tower-sse marks the stream `Content-Encoding: identity` to keep compression layers
    // off it; the events above arriving intact shows that Chromium accepts that.
    assert_eq!(
        stream.headers.get("content-encoding").map(String::as_str),
        Some("identity"),
        "{stream:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reads_every_tricky_event_exactly() {
    require_browser_tools();
    let specs = tricky_events();
    let built: Vec<Event> = specs.iter().map(Spec::build).collect();
    // All events are ready at once, so the body coalesces them into 64 KiB frames; the
    // stream then stays open, and the page closes it on `done`.
    let events = stream::iter(built).chain(stream::pending()).boxed();
    let (acks, _ack_rx) = mpsc::unbounded_channel();
    let server = support::serve(app(&specs, events, acks, Arc::new(Notify::new()))).await;

    let report = run_browser(format!("http://{}/", server.addr), "roundtrip").await;
    check_report(&report, &specs);
}

#[derive(Debug, Deserialize)]
struct Ack {
    index: usize,
    #[serde(flatten)]
    event: Received,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_gets_each_event_live_through_a_compression_layer() {
    require_browser_tools();
    let specs = tricky_events();
    let expected = expected(&specs);
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    let events = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed();
    let (acks, mut ack_rx) = mpsc::unbounded_channel();
    let connected = Arc::new(Notify::new());
    let service = ServiceBuilder::new()
        .layer(CompressionLayer::new().compress_when(SizeAbove::new(0)))
        .service(app(&specs, events, acks, connected.clone()));
    let server = support::serve(service).await;

    let browser = tokio::spawn(run_browser(
        format!("http://{}/?ack", server.addr),
        "live-compressed",
    ));

    // Once the EventSource has connected, send one event, wait until the browser
    // acknowledges it, then send the next. Frames that fire nothing go out together with
    // the next one that does.
    if tokio::time::timeout(PAGE_TIMEOUT, connected.notified())
        .await
        .is_err()
    {
        let report = browser.await.expect("the browser task");
        panic!("the page never requested /events: {report:#?}");
    }
    let mut latencies = Vec::new();
    let mut next = expected.iter();
    let mut stalled = None;
    for (i, spec) in specs.iter().enumerate() {
        tx.send(spec.build()).expect("the stream is open");
        if !spec.fires() {
            continue;
        }
        let (want_i, want) = next.next().expect("an expected event");
        assert_eq!(*want_i, i);
        let sent = Instant::now();
        let ack = match tokio::time::timeout(ACK_TIMEOUT, ack_rx.recv()).await {
            Ok(Some(ack)) => ack,
            Ok(None) => unreachable!("the server holds the ack sender"),
            Err(_) => {
                stalled = Some(format!(
                    "spec {i} ({:?}) did not reach the browser within {ACK_TIMEOUT:?}: \
                     buffered or lost on the way",
                    spec.label
                ));
                break;
            }
        };
        latencies.push(sent.elapsed());
        let ack: Ack = serde_json::from_str(&ack).expect("an ack");
        assert_eq!(ack.index, latencies.len() - 1, "acks out of order: {ack:?}");
        assert_eq!(&ack.event, want, "spec {i} ({:?})", spec.label);
    }

    let report = browser.await.expect("the browser task");
    if let Some(stalled) = stalled {
        panic!(
            "{stalled}; the browser got {} events then: {:#?}",
            report.received.len(),
            report.received.iter().rev().take(3).collect::<Vec<_>>()
        );
    }
    check_report(&report, &specs);

    // The page itself did go through the compression layer.
    let page = report.response("/?ack");
    let encoding = page.headers.get("content-encoding").map(String::as_str);
    assert!(
        matches!(encoding, Some("gzip" | "br" | "zstd" | "deflate")),
        "the compression layer did not compress the page: {page:?}"
    );
    latencies.sort();
    eprintln!(
        "live-compressed: {} events acknowledged one by one; page encoding {encoding:?}; \
         latency median {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
}

/// The bytes of `events` as another server might send them: a BOM first, and each line
/// ended by CRLF, LF or a lone CR in turn (never an LF right after a CR that ended a
/// line, which would join the two into one CRLF).
fn proxied_bytes(events: &[Event]) -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    let mut turn = 0;
    for event in events {
        for &byte in event.as_bytes().iter() {
            if byte != b'\n' {
                out.push(byte);
                continue;
            }
            turn += 1;
            match (turn % 3, out.last()) {
                (0, Some(b'\r')) | (1, _) => out.extend_from_slice(b"\r\n"),
                (0, _) => out.push(b'\n'),
                _ => out.push(b'\r'),
            }
        }
    }
    out
}

/// `bytes` cut into chunks of 1, 2, 3, 5, 8, ... 4,181 bytes, and again: cuts inside
/// lines, inside line ends, inside UTF-8 characters and the BOM, and between events.
fn cut_anywhere(bytes: &[u8]) -> Vec<&[u8]> {
    let mut sizes = (1usize, 2usize);
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(sizes.0.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
        sizes = if sizes.1 > 4181 {
            (1, 2)
        } else {
            (sizes.1, sizes.0 + sizes.1)
        };
    }
    chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reads_a_proxied_stream_cut_anywhere_with_heartbeats_between_as_the_events_built()
{
    require_browser_tools();
    let specs = tricky_events();
    let built: Vec<Event> = specs.iter().map(Spec::build).collect();
    let bytes = proxied_bytes(&built);
    let chunks = cut_anywhere(&bytes);
    // A heartbeat falls due in every gap between two chunks: the layer must write it
    // only where an event ended.
    let heartbeat = Duration::from_millis(2);
    let (upstream, mut feed) = support::upstream::upstream();
    let layer = SseLayer::new()
        .retry(Duration::from_millis(1500))
        .heartbeat(heartbeat);
    let first = support::upstream::event_stream(Body::new(upstream));
    let (acks, _ack_rx) = mpsc::unbounded_channel();
    let connected = Arc::new(Notify::new());
    let server = support::serve(app_with(&specs, layer, first, acks, connected.clone())).await;

    let browser = tokio::spawn(run_browser(
        format!("http://{}/", server.addr),
        "proxied-cut-anywhere",
    ));
    if tokio::time::timeout(PAGE_TIMEOUT, connected.notified())
        .await
        .is_err()
    {
        let report = browser.await.expect("the browser task");
        panic!("the page never requested /events: {report:#?}");
    }
    for (n, chunk) in chunks.iter().enumerate() {
        feed.send(chunk);
        feed.polled_after(n + 1, heartbeat * 2).await;
    }
    let report = browser.await.expect("the browser task");
    check_report(&report, &specs);
    eprintln!(
        "proxied-cut-anywhere: {} bytes in {} chunks, a heartbeat due after each",
        bytes.len(),
        chunks.len()
    );
    drop(feed);
}

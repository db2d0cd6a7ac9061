//! CORS with tower-http's `CorsLayer` in front of `SseLayer`.
//!
//! Over plain HTTP: the preflight that a `Last-Event-ID` header triggers gets its
//! answer from the `CorsLayer` (outside `SseLayer`, so that preflights never reach the
//! event-stream service), and the event stream carries `Access-Control-Allow-Origin`.
//!
//! In Debian's Chromium: a page on one origin opens an `EventSource` on another; the
//! first stream sets an id and ends, the browser reconnects with `Last-Event-ID`, and
//! the server resumes from it. With a long non-ASCII id the reconnection needs a
//! preflight, which must succeed; with a `CorsLayer` that does not allow the header it
//! fails, and the reconnection never reaches the stream (the control that shows the
//! test can fail).
//!
//! The browser tests need `/usr/bin/chromium`, `node` and `tests/browser/node_modules`
//! (`tests/run.sh` installs them) and the feature `test-browser` (a plain `cargo test`
//! lists them as ignored); without the programs they fail, saying so.

#[path = "browser/driver.rs"]
mod driver;
mod support;

use driver::{artifacts_dir, browser_dir, require_browser_tools};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::Html;
use futures_util::stream;
use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ORIGIN};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use support::*;
use tower::{ServiceBuilder, service_fn};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_sse::{Event, LastEventId, Sse, SseLayer};

const PAGE: &str = include_str!("browser/cors.html");
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request as the events server saw it, before any layer.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    origin: Option<String>,
    last_event_id: Option<Vec<u8>>,
    request_headers: Option<String>,
}

/// The recipe: `CorsLayer` outside `SseLayer`, allowing the page's origin, GET, and the
/// `Last-Event-ID` header that reconnections carry.
fn recipe(origin: &str) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::exact(HeaderValue::from_str(origin).unwrap()))
        .allow_methods([Method::GET])
        .allow_headers([LastEventId::HEADER])
        .max_age(Duration::from_secs(600))
}

/// The events server: records every request, then `cors`, then the SSE layer. A first
/// connection gets one event with id `id` and a short `retry`, and ends (so the browser
/// reconnects); a reconnection gets `resumed after <its Last-Event-ID>` and `done`.
async fn events_server(cors: CorsLayer, id: &'static str) -> (TestServer, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let service = ServiceBuilder::new()
        .map_request({
            let seen = seen.clone();
            move |request: Request<Incoming>| {
                let header = |name| {
                    request
                        .headers()
                        .get(name)
                        .map(|v: &HeaderValue| v.to_str().unwrap_or("<non-ASCII>").to_owned())
                };
                seen.lock().unwrap().push(Seen {
                    method: request.method().clone(),
                    origin: header(ORIGIN),
                    last_event_id: request
                        .headers()
                        .get(LastEventId::HEADER)
                        .map(|v| v.as_bytes().to_vec()),
                    request_headers: header(ACCESS_CONTROL_REQUEST_HEADERS),
                });
                request
            }
        })
        .layer(cors)
        .layer(SseLayer::new())
        .service(service_fn(move |request: Request<Incoming>| async move {
            let events = match request.extensions().get::<LastEventId>() {
                None => vec![
                    Event::builder()
                        .id(id)
                        .data("first")
                        .retry(Duration::from_millis(100))
                        .build()
                        .unwrap(),
                ],
                Some(last) => vec![
                    Event::data(&format!("resumed after {last}")),
                    Event::builder().event("done").data("").build().unwrap(),
                ],
            };
            Ok::<_, Infallible>(Sse::new(stream::iter(events)).into_response())
        }));
    (serve(service).await, seen)
}

#[tokio::test]
async fn the_preflight_is_answered_by_the_cors_layer_and_the_stream_allows_the_origin() {
    let origin = "http://app.example";
    let (server, seen) = events_server(recipe(origin), "1").await;
    for http2 in [false, true] {
        let preflight = Request::options("/events")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "last-event-id")
            .body(empty())
            .unwrap();
        let response = if http2 {
            h2_connect(server.addr).await.send(preflight).await
        } else {
            h1_connect(server.addr).await.send(preflight).await
        };
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], origin);
        assert_eq!(headers["access-control-allow-headers"], "last-event-id");
        assert_eq!(headers["access-control-allow-methods"], "GET");
        assert_eq!(headers["access-control-max-age"], "600");

        let request = get("/events")
            .header("origin", origin)
            .header(
                "last-event-id",
                HeaderValue::from_bytes("ก-7".as_bytes()).unwrap(),
            )
            .body(empty())
            .unwrap();
        let response = if http2 {
            h2_connect(server.addr).await.send(request).await
        } else {
            h1_connect(server.addr).await.send(request).await
        };
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["access-control-allow-origin"], origin);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let body = within("the two events and the end", response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, "data: resumed after ก-7\n\nevent: done\ndata:\n\n");
    }
    assert_eq!(seen.lock().unwrap().len(), 4);
}

// ---- in Chromium ----

#[derive(Debug, Deserialize)]
struct Run {
    report: PageReport,
    done: bool,
    #[serde(rename = "consoleErrors")]
    console_errors: Vec<serde_json::Value>,
    #[serde(rename = "pageErrors")]
    page_errors: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct PageReport {
    opens: u32,
    events: Vec<PageEvent>,
    errors: Vec<PageError>,
    finished: Option<String>,
    fetch: Option<FetchResult>,
}

#[derive(Debug, Deserialize)]
struct FetchResult {
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct PageEvent {
    #[serde(rename = "type")]
    event_type: String,
    data: String,
    #[serde(rename = "lastEventId")]
    last_event_id: String,
}

#[derive(Debug, Deserialize)]
struct PageError {
    #[serde(rename = "readyState")]
    ready_state: u8,
}

/// Serves the page on its own origin, and an events server on another with the CORS
/// layer `cors(page origin)`, the first stream setting `id`; runs `cors.mjs` on the page
/// and returns what the page and the events server saw.
async fn cross_origin(
    id: &'static str,
    cors: impl FnOnce(&str) -> CorsLayer,
    page_query: &str,
    name: &'static str,
) -> (Run, Vec<Seen>) {
    require_browser_tools();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { Html(PAGE) }));
    let page = serve(app).await;
    let origin = format!("http://{}", page.addr);
    let (events, seen) = events_server(cors(&origin), id).await;
    let url = format!("{origin}/?src=http://{}/events{page_query}", events.addr);
    let run = run_url(url, name).await;
    let seen = seen.lock().unwrap().clone();
    (run, seen)
}

/// Runs `cors.mjs` on `url` and returns its report.
async fn run_url(url: String, name: &'static str) -> Run {
    let mut command = tokio::process::Command::new("node");
    command
        .current_dir(browser_dir())
        .arg("cors.mjs")
        .arg(&url)
        .arg("--artifacts")
        .arg(artifacts_dir())
        .arg("--name")
        .arg(name)
        .arg("--timeout")
        .arg(PAGE_TIMEOUT.as_millis().to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(PAGE_TIMEOUT + Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("node cors.mjs {url} did not finish"))
        .expect("node starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cors.mjs failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}\n{stderr}"))
}

/// 193 bytes of UTF-8: too long and not ASCII for a CORS-safelisted header value.
const LONG_ID: &str = "รหัส-✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈✈";

fn gets(seen: &[Seen]) -> Vec<Option<Vec<u8>>> {
    seen.iter()
        .filter(|s| s.method == Method::GET)
        .map(|s| s.last_event_id.clone())
        .collect()
}

fn preflights(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.method == Method::OPTIONS)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn chromium_eventsource_reconnects_cross_origin_with_a_long_non_ascii_id() {
    let (run, seen) = cross_origin(LONG_ID, recipe, "", "cors-eventsource").await;
    assert!(
        run.done,
        "the page never finished: {run:#?}\nserver saw {seen:#?}"
    );
    assert_eq!(
        run.report.finished.as_deref(),
        Some("done event"),
        "{run:#?}"
    );
    assert!(run.page_errors.is_empty(), "{:#?}", run.page_errors);
    assert!(run.console_errors.is_empty(), "{:#?}", run.console_errors);
    let event = |event_type: &str, data: String| PageEvent {
        event_type: event_type.into(),
        data,
        last_event_id: LONG_ID.into(),
    };
    assert_eq!(
        run.report.events,
        [
            event("message", "first".into()),
            event("message", format!("resumed after {LONG_ID}")),
            event("done", String::new()),
        ]
    );
    // Two opens, and between them one error while reconnecting (readyState CONNECTING).
    assert_eq!(run.report.opens, 2);
    let states: Vec<_> = run.report.errors.iter().map(|e| e.ready_state).collect();
    assert_eq!(states, [0]);
    // The server got the reconnection, with the id byte for byte, from the page's origin.
    assert_eq!(gets(&seen), [None, Some(LONG_ID.as_bytes().to_vec())]);
    assert!(seen.iter().all(|s| s.origin.is_some()), "{seen:#?}");
    // Whether the browser asks first is its own business: Chromium 156 sends the
    // `Last-Event-ID` an EventSource sets without a preflight. Any preflight it sends is
    // answered by the CorsLayer, or the reconnection above would not have arrived.
    eprintln!(
        "EventSource reconnection with a {}-byte non-ASCII Last-Event-ID: {} preflight(s)",
        LONG_ID.len(),
        preflights(&seen).len()
    );
}

/// 200 ASCII bytes: a fetch-based client may set it (a header value cannot hold
/// non-ASCII text in `fetch`), and at this length it is not CORS-safelisted.
fn long_ascii_id() -> String {
    "id-".repeat(66) + "42"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn chromium_fetch_client_with_a_long_last_event_id_passes_the_preflight() {
    let id: &'static str = long_ascii_id().leak();
    let query = format!("&mode=fetch&id={id}");
    let (run, seen) = cross_origin("unused", recipe, &query, "cors-fetch").await;
    assert!(
        run.done,
        "the page never finished: {run:#?}\nserver saw {seen:#?}"
    );
    let fetched = run.report.fetch.as_ref().expect("the page fetched");
    assert_eq!(fetched.error, None, "{run:#?}\n{seen:#?}");
    assert_eq!(fetched.status, Some(200));
    assert_eq!(
        fetched.body.as_deref(),
        Some(format!("data: resumed after {id}\n\nevent: done\ndata:\n\n").as_str())
    );
    // The preflight came first, asked for `last-event-id`, and was answered.
    let preflights = preflights(&seen);
    assert_eq!(preflights.len(), 1, "{seen:#?}");
    assert_eq!(
        preflights[0].request_headers.as_deref(),
        Some("last-event-id")
    );
    assert_eq!(seen[0].method, Method::OPTIONS, "{seen:#?}");
    assert_eq!(gets(&seen), [Some(id.as_bytes().to_vec())]);
    assert!(run.console_errors.is_empty(), "{:#?}", run.console_errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn without_last_event_id_allowed_the_preflight_fails_and_nothing_reaches_the_stream() {
    // The control: the origin is allowed, the header is not.
    let without_header = |origin: &str| {
        CorsLayer::new()
            .allow_origin(AllowOrigin::exact(HeaderValue::from_str(origin).unwrap()))
            .allow_methods([Method::GET])
    };
    let id: &'static str = long_ascii_id().leak();
    let query = format!("&mode=fetch&id={id}");
    let (run, seen) = cross_origin("unused", without_header, &query, "cors-refused").await;
    assert!(run.done, "the page never finished: {run:#?}");
    let fetched = run.report.fetch.as_ref().expect("the page fetched");
    assert!(fetched.error.is_some(), "{run:#?}\n{seen:#?}");
    assert_eq!(preflights(&seen).len(), 1, "{seen:#?}");
    assert_eq!(gets(&seen), Vec::<Option<Vec<u8>>>::new(), "{seen:#?}");
}

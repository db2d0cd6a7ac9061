//! The metrics (feature `metrics`) over real connections, recorded by
//! `metrics-exporter-prometheus` as an application installs it, and read back from its
//! Prometheus text.
//!
//! - `streams_count_what_their_clients_saw`: streams over HTTP/1.1 and HTTP/2 (and one
//!   compressed with gzip, when built): opened, open, ended by reason (client gone,
//!   finished, error, shutdown), events and bytes on the wire (and before compression)
//!   equal to what the clients read, the time to the first byte once per stream, and the
//!   gauges back where they started once every body is dropped.
//! - `refusals_are_counted_by_reason`: the limit (server, per client), 405, the
//!   service's 204 stop, 400 and 403 from the hub.
//! - `a_stalled_stream_is_counted_until_its_connection_lets_go`: an HTTP/2 stream
//!   granted no window ends as stalled and stays on the stalled gauge until the
//!   connection drops it.
//! - `the_hub_counts_publishes_subscribers_topics_lag_resets_and_replays`: in memory,
//!   with a topic label for the topics named by `metric_topics` and `other` for the rest.
//! - `serve_counts_connections_and_deadlines`: accepted, open, and closed at the
//!   first-request and header-read deadlines.
//! - `the_registry_does_not_grow_with_topics_or_clients`: a million distinct topics
//!   published and subscribed to, a million distinct client addresses (and a few
//!   hundred real connections from distinct loopback addresses): the number of series
//!   exported stays the same.
//! - `redis_counts_writes_queue_and_failures` (feature `redis`): the write latency,
//!   the queue back to 0, and once Redis is gone, publishes refused as unreachable and
//!   the writer's retries.
//!
//! The recorder is the process's global one, so the tests take turns (`SERIAL`). A test
//! waits for the server to drop every response body it served (a wrapper body counts
//! them), since a stream hands its last sums to the recorder when it is dropped; never
//! for a duration.

#![cfg(all(feature = "metrics", feature = "serve"))]

mod support;
mod support_metrics;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_sse::{
    EndReason, Event, Hub, LastEventId, Refusal, Sse, SseLayer, StreamEnd, StreamLimit,
};

use support::{H1, empty, get, h1_connect, h1_from, h2_connect};
use support_metrics::Scrape;

/// A hang guard, never a duration the test asserts.
const GUARD: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxBody = UnsyncBoxBody<Bytes, BoxError>;
type Boxed = BoxCloneService<Request<Incoming>, Response<BoxBody>, Infallible>;

/// The tests share the process's recorder: one at a time, each on a runtime of its
/// own that is dropped (with every task and connection it ran) before the next starts.
fn serial<F: std::future::Future<Output = ()>>(body: F) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    recorder();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(body);
    drop(runtime);
}

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this binary");
        tower_sse::metrics::describe();
        handle
    })
}

fn scrape() -> Scrape {
    Scrape::parse(&recorder().render())
}

/// What changed between two scrapes.
struct Delta<'a> {
    before: &'a Scrape,
    after: &'a Scrape,
}

impl Delta<'_> {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.after.get(name, labels) - self.before.get(name, labels)
    }
}

// ---- A server that says when it dropped each response body -----------------------------

/// A response body that counts, once it is dropped, in `dropped`: the inner body (and
/// the stream it runs, which hands its last sums to the recorder) goes first.
struct Counted<B> {
    inner: Pin<Box<B>>,
    _dropped: Dropped,
}

struct Dropped(watch::Sender<usize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n += 1);
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Response bodies dropped so far by a [`counted`] service.
#[derive(Clone)]
struct Drops(watch::Receiver<usize>);

impl Drops {
    async fn reach(&mut self, n: usize) {
        let seen = *self.0.borrow();
        timeout(GUARD, self.0.wait_for(|dropped| *dropped >= n))
            .await
            .unwrap_or_else(|_| panic!("the server dropped {seen} bodies, never {n}"))
            .unwrap();
    }
}

/// `layer` over `inner`, every response body counted when the server drops it.
fn counted<S>(layer: SseLayer, inner: S) -> (Boxed, Drops)
where
    S: Service<Request<Incoming>, Response = Response<BoxBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let (dropped, drops) = watch::channel(0);
    let dropped = Arc::new(dropped);
    let service = ServiceBuilder::new()
        .layer(BoxCloneService::layer())
        .map_response(move |response: Response<_>| {
            let dropped = Dropped(watch::Sender::clone(&dropped));
            response.map(|body| {
                Counted {
                    inner: Box::pin(body),
                    _dropped: dropped,
                }
                .boxed_unsync()
            })
        })
        .layer(layer)
        .service(inner);
    (service, Drops(drops))
}

fn boxed<B>(response: Response<B>) -> Response<BoxBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}

/// The application below the layer: `/finite` (five events, then the end), `/fail` (an
/// event, then an error), `/stop` (204), anything else the hub's topics.
fn app(
    hub: Hub,
) -> impl Service<
    Request<Incoming>,
    Response = Response<BoxBody>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<BoxBody>, Infallible>>,
> + Clone
+ Send
+ 'static {
    service_fn(move |request: Request<Incoming>| {
        let response = match request.uri().path() {
            "/finite" => {
                let events = stream::iter((0..5).map(|n| Event::data(&n.to_string())));
                boxed(Sse::new(events).into_response())
            }
            "/fail" => {
                let events = stream::iter([
                    Ok(Event::data("one")),
                    Err(std::io::Error::other("the feed broke")),
                ]);
                boxed(Sse::new(events).into_response())
            }
            "/stop" => boxed(Refusal::stop().into_response()),
            _ => match hub.subscribe_request(&request) {
                Ok(subscription) => boxed(Sse::new(subscription).into_response()),
                Err(refused) => boxed(Refusal::from(refused).into_response()),
            },
        };
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

async fn serve_on(service: Boxed) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(tower_sse::serve(listener, service).into_future());
    (addr, task)
}

// ---- A client that counts what it reads ------------------------------------------------

/// What one client read of a stream: the bytes on the wire, the bytes once decoded, and
/// the events (blocks with a `data` field).
#[derive(Debug, Default)]
struct Seen {
    wire: usize,
    decoded: Vec<u8>,
    events: usize,
    ended: bool,
}

impl Seen {
    fn count_events(&mut self) {
        let text = String::from_utf8_lossy(&self.decoded);
        let blocks: Vec<&str> = text.split("\n\n").collect();
        // The last piece is what follows the last blank line: not a whole block yet.
        self.events = blocks[..blocks.len() - 1]
            .iter()
            .filter(|block| block.lines().any(|line| line.starts_with("data:")))
            .count();
    }
}

/// Reads `body` until it has `events` events (or, with `None`, to its end).
async fn read(body: &mut Incoming, gzip: bool, events: Option<usize>) -> Seen {
    let mut seen = Seen::default();
    let mut decoder = gzip.then(|| flate2::write::GzDecoder::new(Vec::new()));
    loop {
        if events.is_some_and(|n| seen.events >= n) {
            return seen;
        }
        let frame = timeout(GUARD, body.frame()).await.expect("a frame in time");
        let Some(frame) = frame else {
            seen.ended = true;
            if let Some(decoder) = decoder.take() {
                seen.decoded = decoder.finish().unwrap();
                seen.count_events();
            }
            return seen;
        };
        let Ok(data) = frame.expect("a frame").into_data() else {
            continue;
        };
        seen.wire += data.len();
        match &mut decoder {
            Some(decoder) => {
                decoder.write_all(&data).unwrap();
                decoder.flush().unwrap();
                seen.decoded = decoder.get_ref().clone();
            }
            None => seen.decoded.extend_from_slice(&data),
        }
        seen.count_events();
    }
}

async fn open(client: &mut H1, uri: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
    let mut request = get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    timeout(GUARD, client.send(request.body(empty()).unwrap()))
        .await
        .expect("an answer in time")
}

// ---- The tests -------------------------------------------------------------------------

#[test]
fn streams_count_what_their_clients_saw() {
    serial(async {
        let gzip = cfg!(feature = "compression-gzip");
        let hub = Hub::new();
        let shutdown = CancellationToken::new();
        let layer = SseLayer::new()
            .no_heartbeat()
            .compression(tower_sse::StreamCompression::new())
            .graceful_shutdown(shutdown.clone());
        let (service, mut drops) = counted(layer, app(hub.clone()));
        let (addr, _server) = serve_on(service).await;
        let before = scrape();

        // Live streams over HTTP/1.1, HTTP/2, and one compressed.
        let mut h1s = Vec::new();
        for _ in 0..3 {
            let mut client = h1_connect(addr).await;
            let response = open(&mut client, "/events?topic=news", &[]).await;
            h1s.push((client, response));
        }
        let mut h2 = h2_connect(addr).await;
        let mut h2_responses = Vec::new();
        for _ in 0..2 {
            let request = get(&format!("http://{addr}/events?topic=news"))
                .body(empty())
                .unwrap();
            let response = timeout(GUARD, h2.send(request)).await;
            h2_responses.push(response.expect("an answer over HTTP/2 in time"));
        }
        let mut zipped = None;
        if gzip {
            let mut client = h1_connect(addr).await;
            let response = open(
                &mut client,
                "/events?topic=news",
                &[("accept-encoding", "gzip")],
            )
            .await;
            assert_eq!(response.headers()["content-encoding"], "gzip");
            zipped = Some((client, response));
        }
        let live = 5 + usize::from(gzip);
        assert_eq!(hub.stats("news").unwrap().subscribers, live);
        let during = scrape();
        let opened = Delta {
            before: &before,
            after: &during,
        };
        assert_eq!(opened.get("tower_sse_streams_open", &[]), live as f64);
        assert_eq!(opened.get("tower_sse_hub_subscriptions", &[]), live as f64);

        const PUBLISHED: usize = 50;
        for n in 0..PUBLISHED {
            let data = format!("{{\"n\":{n},\"text\":\"the same words again and again\"}}");
            hub.publish("news", Event::data(&data)).unwrap();
        }
        let mut plain = Vec::new();
        for (_, response) in &mut h1s {
            plain.push(read(response.body_mut(), false, Some(PUBLISHED)).await);
        }
        for response in &mut h2_responses {
            plain.push(read(response.body_mut(), false, Some(PUBLISHED)).await);
        }
        let compressed = match &mut zipped {
            Some((_, response)) => Some(read(response.body_mut(), true, Some(PUBLISHED)).await),
            None => None,
        };
        // The clients leave: their streams end as `client_gone`.
        for (client, response) in h1s {
            drop(response);
            client.close();
        }
        drop(h2_responses);
        h2.close();
        if let Some((client, response)) = zipped {
            drop(response);
            client.close();
        }

        // A stream that finishes, one that fails, and one that a shutdown ends.
        let mut client = h1_connect(addr).await;
        let mut response = open(&mut client, "/finite", &[]).await;
        let finite = read(response.body_mut(), false, None).await;
        assert!(finite.ended);
        let mut response = open(&mut client, "/fail", &[]).await;
        let failed = read(response.body_mut(), false, None).await;
        let mut last = h1_connect(addr).await;
        let mut response = open(&mut last, "/events?topic=news", &[]).await;
        hub.publish("news", Event::data("the last one")).unwrap();
        let before_shutdown = read(response.body_mut(), false, Some(1)).await;
        shutdown.cancel();
        let mut shut = read(response.body_mut(), false, None).await;
        assert!(shut.ended);
        shut.wire += before_shutdown.wire;
        shut.events += before_shutdown.events;

        let streams = live + 3;
        drops.reach(streams).await;
        let after = scrape();
        let delta = Delta {
            before: &before,
            after: &after,
        };
        let context = after.ours().join("\n");
        let count = |name: &str, labels: &[(&str, &str)]| delta.get(name, labels) as usize;
        assert_eq!(
            count("tower_sse_streams_opened_total", &[]),
            streams,
            "{context}"
        );
        assert_eq!(delta.get("tower_sse_streams_open", &[]), 0.0, "{context}");
        assert_eq!(
            delta.get("tower_sse_hub_subscriptions", &[]),
            0.0,
            "{context}"
        );
        let ended = |reason| count("tower_sse_streams_ended_total", &[("reason", reason)]);
        assert_eq!(ended("client_gone"), live, "{context}");
        assert_eq!(ended("finished"), 1, "{context}");
        assert_eq!(ended("error"), 1, "{context}");
        assert_eq!(ended("shutdown"), 1, "{context}");
        assert_eq!(ended("stalled"), 0, "{context}");

        // Events and bytes: what the clients read, exactly.
        let all = plain
            .iter()
            .chain([&finite, &failed, &shut])
            .chain(compressed.iter());
        let events: usize = all.clone().map(|seen| seen.events).sum();
        assert_eq!(events, live * PUBLISHED + 5 + 1 + 1);
        assert_eq!(
            count("tower_sse_stream_events_total", &[]),
            events,
            "{context}"
        );
        let plain_bytes: usize = plain
            .iter()
            .chain([&finite, &failed, &shut])
            .map(|seen| seen.wire)
            .sum();
        let written = |compression| {
            count(
                "tower_sse_stream_written_bytes_total",
                &[("compression", compression)],
            )
        };
        assert_eq!(written("none"), plain_bytes, "{context}");
        if let Some(compressed) = &compressed {
            assert_eq!(written("gzip"), compressed.wire, "{context}");
            let before = count(
                "tower_sse_stream_uncompressed_bytes_total",
                &[("compression", "gzip")],
            );
            assert_eq!(before, compressed.decoded.len(), "{context}");
            assert!(
                compressed.wire < compressed.decoded.len(),
                "gzip saves bytes here"
            );
        }
        let writes = count("tower_sse_stream_writes_total", &[]);
        assert!(
            writes >= streams && writes <= events + streams,
            "{writes} writes: {context}"
        );
        assert!(count("tower_sse_stream_batched_writes_total", &[]) <= writes);
        assert_eq!(count("tower_sse_stream_heartbeats_total", &[]), 0);
        assert_eq!(
            count("tower_sse_stream_first_byte_seconds_count", &[]),
            streams,
            "one first byte per stream: {context}"
        );
        assert_eq!(count("tower_sse_hub_published_total", &[]), PUBLISHED + 1);
    });
}

#[test]
fn refusals_are_counted_by_reason() {
    serial(async {
        let hub = Hub::builder()
            .authorize(|topic, _| topic != "secret")
            .build();
        let layer = SseLayer::new().limit(StreamLimit::new(2).per_client(1));
        let (service, mut drops) = counted(layer, app(hub));
        let (addr, _server) = serve_on(service).await;
        let before = scrape();

        let from = |last: u8| IpAddr::from([127, 0, 0, last]);
        let mut first = h1_from(from(2), addr).await;
        let held = open(&mut first, "/events?topic=a", &[]).await;
        assert_eq!(held.status(), StatusCode::OK);
        let mut again = h1_from(from(2), addr).await;
        let per_client = open(&mut again, "/events?topic=a", &[]).await;
        assert_eq!(per_client.status(), StatusCode::SERVICE_UNAVAILABLE);
        let mut second = h1_from(from(3), addr).await;
        let held_too = open(&mut second, "/events?topic=a", &[]).await;
        assert_eq!(held_too.status(), StatusCode::OK);
        let mut third = h1_from(from(4), addr).await;
        let over = open(&mut third, "/events?topic=a", &[]).await;
        assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop((held, held_too));
        first.close();
        second.close();
        // Both places are free once both bodies are gone (and the refusals' bodies too).
        drops.reach(4).await;

        let mut client = h1_from(from(5), addr).await;
        let post = Request::post("/finite")
            .header("accept", "text/event-stream")
            .body(empty())
            .unwrap();
        assert_eq!(
            timeout(GUARD, client.send(post))
                .await
                .expect("an answer to the POST in time")
                .status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let stop = open(&mut client, "/stop", &[]).await;
        assert_eq!(stop.status(), StatusCode::NO_CONTENT);
        let bad = open(&mut client, "/events", &[]).await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let forbidden = open(&mut client, "/events?topic=secret", &[]).await;
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        drops.reach(8).await;

        let after = scrape();
        let delta = Delta {
            before: &before,
            after: &after,
        };
        let refused = |reason| delta.get("tower_sse_streams_refused_total", &[("reason", reason)]);
        let context = after.ours().join("\n");
        for (reason, n) in [
            ("limit", 1.0),
            ("per_client", 1.0),
            ("method", 1.0),
            ("stop", 1.0),
            ("bad_request", 1.0),
            ("forbidden", 1.0),
            ("unavailable", 0.0),
            ("other", 0.0),
        ] {
            assert_eq!(refused(reason), n, "{reason}: {context}");
        }
        assert_eq!(delta.get("tower_sse_streams_opened_total", &[]), 2.0);
        assert_eq!(delta.get("tower_sse_streams_open", &[]), 0.0);
    });
}

#[test]
fn a_stalled_stream_is_counted_until_its_connection_lets_go() {
    serial(async {
        let hub = Hub::new();
        let (ends, mut ended) = mpsc::unbounded_channel();
        let layer = SseLayer::new()
            .stall_timeout(Duration::from_millis(200))
            .on_end(move |end: &StreamEnd| {
                let _ = ends.send(end.reason);
            });
        let (service, mut drops) = counted(layer, app(hub.clone()));
        let (addr, _server) = serve_on(service).await;
        let before = scrape();

        let mut stuck = support::ZeroWindow::connect(addr).await;
        let response = stuck.get("/events?topic=t").await;
        assert_eq!(response.status(), StatusCode::OK);
        hub.publish("t", Event::data("never read")).unwrap();
        let reason = timeout(GUARD, ended.recv())
            .await
            .expect("the end report of the stalled stream")
            .unwrap();
        assert_eq!(reason, EndReason::Stalled);
        let stalled = scrape();
        let delta = Delta {
            before: &before,
            after: &stalled,
        };
        assert_eq!(delta.get("tower_sse_streams_stalled", &[]), 1.0);
        assert_eq!(delta.get("tower_sse_streams_open", &[]), 1.0);
        assert_eq!(
            delta.get("tower_sse_streams_ended_total", &[("reason", "stalled")]),
            1.0
        );

        // The connection polls the stream again once it has a window: it is reset, and the
        // connection lets go of it.
        stuck.open_window();
        drops.reach(1).await;
        let after = scrape();
        let delta = Delta {
            before: &before,
            after: &after,
        };
        assert_eq!(delta.get("tower_sse_streams_stalled", &[]), 0.0);
        assert_eq!(delta.get("tower_sse_streams_open", &[]), 0.0);
        drop(response);
    });
}

#[test]
fn the_hub_counts_publishes_subscribers_topics_lag_resets_and_replays() {
    serial(async {
        let before = scrape();
        let hub = Hub::builder()
            .metric_topics(["a"])
            .history_events(3)
            .queue_events(2)
            .build();
        let first = hub.publish("a", Event::data("1")).unwrap().id().unwrap();
        hub.publish("b", Event::data("1")).unwrap();
        hub.publish("c", Event::data("1")).unwrap();
        assert!(matches!(
            hub.publish("", Event::data("nowhere")),
            Err(tower_sse::hub::PublishError::EmptyTopic)
        ));
        let during = scrape();
        let delta = Delta {
            before: &before,
            after: &during,
        };
        assert_eq!(
            delta.get("tower_sse_hub_published_total", &[("topic", "a")]),
            1.0
        );
        assert_eq!(
            delta.get("tower_sse_hub_published_total", &[("topic", "other")]),
            2.0
        );
        assert_eq!(
            delta.get(
                "tower_sse_hub_publish_errors_total",
                &[("kind", "empty_topic")]
            ),
            1.0
        );
        assert_eq!(delta.get("tower_sse_hub_topics", &[]), 3.0);

        // Subscribers, per named topic and `other`.
        let live = hub.subscribe(["a", "b"], None);
        let also = hub.subscribe(["c"], None);
        let during = scrape();
        let delta = Delta {
            before: &before,
            after: &during,
        };
        assert_eq!(delta.get("tower_sse_hub_subscriptions", &[]), 2.0);
        assert_eq!(
            delta.get("tower_sse_hub_topic_subscribers", &[("topic", "a")]),
            1.0
        );
        assert_eq!(
            delta.get("tower_sse_hub_topic_subscribers", &[("topic", "other")]),
            2.0
        );
        drop(also);

        // A subscriber that falls behind its window of 2 is cut off.
        let mut lagging = live;
        for n in 0..5 {
            hub.publish("a", Event::data(&n.to_string())).unwrap();
        }
        let item = timeout(GUARD, lagging.next())
            .await
            .expect("the lag of the subscriber")
            .unwrap();
        assert!(item.is_err(), "lagged: {item:?}");
        drop(lagging);

        // Resets: malformed, unknown, evicted; replay from memory.
        let mut malformed = hub.subscribe(["a"], Some(&LastEventId::new("not-an-id")));
        let mut unknown = hub.subscribe(["a"], Some(&LastEventId::new("1")));
        let mut evicted = hub.subscribe(["a"], Some(&LastEventId::new(first.to_string())));
        for subscription in [&mut malformed, &mut unknown, &mut evicted] {
            let reset = timeout(GUARD, subscription.next())
                .await
                .expect("the reset")
                .unwrap()
                .unwrap();
            assert!(String::from_utf8_lossy(reset.as_bytes()).contains("stream-reset"));
        }
        let newest = hub.last_id();
        let resumed = hub.subscribe(["a"], Some(&LastEventId::new((newest - 2).to_string())));
        drop((malformed, unknown, evicted, resumed));

        let after = scrape();
        let delta = Delta {
            before: &before,
            after: &after,
        };
        let context = after.ours().join("\n");
        assert_eq!(
            delta.get(
                "tower_sse_hub_lagged_total",
                &[("policy", "disconnect"), ("topic", "a")]
            ),
            1.0,
            "{context}"
        );
        for reason in ["malformed", "unknown", "evicted"] {
            assert_eq!(
                delta.get("tower_sse_hub_resets_total", &[("reason", reason)]),
                1.0,
                "{reason}: {context}"
            );
        }
        assert_eq!(
            delta.get(
                "tower_sse_hub_replayed_events_total",
                &[("source", "memory")]
            ),
            2.0,
            "{context}"
        );
        assert_eq!(delta.get("tower_sse_hub_subscriptions", &[]), 0.0);
        assert_eq!(
            delta.get("tower_sse_hub_topic_subscribers", &[("topic", "a")]),
            0.0
        );
        assert_eq!(
            delta.get("tower_sse_hub_topic_subscribers", &[("topic", "other")]),
            0.0
        );
        assert!(
            after.get("tower_sse_hub_history_bytes", &[]) > 0.0,
            "{context}"
        );

        // A hub over its budget evicts the topics nobody reads; a dropped hub takes its
        // topics off the gauge.
        let small = Hub::builder().budget(0, 0).build();
        small.publish("gone", Event::data("x")).unwrap();
        let evicted = scrape();
        let delta = Delta {
            before: &after,
            after: &evicted,
        };
        assert_eq!(
            delta.get(
                "tower_sse_hub_topics_dropped_total",
                &[("reason", "evicted")]
            ),
            1.0
        );
        assert_eq!(delta.get("tower_sse_hub_topics", &[]), 0.0);
        // The gauge of held bytes shows what is held after the eviction, not before it:
        // a thousand more one-event topics (about 16 of them publish an id that is a
        // multiple of 64, on which the bytes were reported before the eviction), and
        // the hub, still alive, holds none.
        for n in 0..1000 {
            small
                .publish(&format!("gone{n}"), Event::data("x"))
                .unwrap();
        }
        let evicted = scrape();
        let delta = Delta {
            before: &after,
            after: &evicted,
        };
        assert_eq!(delta.get("tower_sse_hub_topics", &[]), 0.0);
        assert_eq!(delta.get("tower_sse_hub_history_bytes", &[]), 0.0);
        drop(hub);
        let dropped = scrape();
        let delta = Delta {
            before: &before,
            after: &dropped,
        };
        assert_eq!(delta.get("tower_sse_hub_topics", &[]), 0.0);
        assert_eq!(delta.get("tower_sse_hub_history_bytes", &[]), 0.0);
    });
}

#[test]
fn serve_counts_connections_and_deadlines() {
    serial(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from("hi"))))
        });
        // hyper's header read timeout starts at the first byte: a connection that sends
        // nothing meets the (longer) first-request deadline.
        let _server = tokio::spawn(
            tower_sse::serve(listener, app)
                .first_request_timeout(Duration::from_millis(1000))
                .header_read_timeout(Duration::from_millis(100))
                .into_future(),
        );
        let before = scrape();

        // A request on a connection the server closes after it.
        let mut client = h1_connect(addr).await;
        let request = Request::get("/")
            .header("connection", "close")
            .body(empty())
            .unwrap();
        let answer = timeout(GUARD, client.send(request))
            .await
            .expect("an answer in time");
        assert_eq!(answer.status(), StatusCode::OK);

        // One connection says nothing, one sends half a request head: each is closed at its
        // deadline (the server closes, the client reads the end).
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 256];
        for socket in [&mut silent, &mut half] {
            let read = timeout(GUARD, socket.read(&mut buffer))
                .await
                .expect("the server closes the connection at its deadline");
            assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
        }
        drop(answer);
        client.close();
        let after = timeout(GUARD, async {
            loop {
                let after = scrape();
                if after.get("tower_sse_connections_open", &[])
                    == before.get("tower_sse_connections_open", &[])
                {
                    return after;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every connection closed");
        let delta = Delta {
            before: &before,
            after: &after,
        };
        assert_eq!(delta.get("tower_sse_connections_accepted_total", &[]), 3.0);
        assert_eq!(
            delta.get(
                "tower_sse_connections_timed_out_total",
                &[("deadline", "first_request")]
            ),
            1.0
        );
        assert_eq!(
            delta.get(
                "tower_sse_connections_timed_out_total",
                &[("deadline", "header_read")]
            ),
            1.0
        );
    });
}

#[test]
fn the_registry_does_not_grow_with_topics_or_clients() {
    serial(async {
        // The same kinds of things, first once each, then a million times with distinct
        // topics and client addresses.
        // Small enough a budget that topics are evicted (and dropped when idle) from the
        // warm-up on.
        let hub = Hub::builder()
            .metric_topics(["named"])
            .budget(1 << 20, 50)
            .build();
        let layer = SseLayer::new()
            .no_heartbeat()
            .limit(StreamLimit::new(10_000_000).per_client(1));
        let mut service = layer.layer(hub.clone());
        let mut run = |topics: std::ops::Range<u32>| {
            for n in topics {
                let topic = format!("t{n}");
                hub.publish(&topic, Event::data("x")).unwrap();
                hub.publish("named", Event::data("x")).unwrap();
                let client = SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 1));
                let mut request = Request::get(format!("/?topic={topic}&topic=named"))
                    .header("accept", "text/event-stream")
                    .header("last-event-id", n.to_string())
                    .body(())
                    .unwrap();
                request.extensions_mut().insert(client);
                let response = futures_util::FutureExt::now_or_never(service.call(request))
                    .expect("the hub answers at once")
                    .unwrap();
                drop(response);
            }
        };
        run(0..100);
        let served = support::serve(layer.layer(hub.clone())).await;
        let addr = served.addr;
        let real = |from: u32| async move {
            let ip = IpAddr::from([127, 1, (from >> 8) as u8, from as u8]);
            let mut client = h1_from(ip, addr).await;
            let topic = format!("/?topic=real{from}");
            let response = open(&mut client, &topic, &[]).await;
            assert_eq!(response.status(), StatusCode::OK);
            drop(response);
            client.close();
        };
        for from in 1..10 {
            real(from).await;
        }
        let warm = wait_for_streams_closed().await;

        run(100..1_000_000);
        for from in 10..300 {
            real(from).await;
        }
        let after = wait_for_streams_closed().await;
        assert_eq!(
            after.len(),
            warm.len(),
            "series before: {:#?}\nafter: {:#?}",
            warm.ours(),
            after.ours()
        );
        let topics = after.label_values("tower_sse_hub_published_total", "topic");
        assert_eq!(
            topics,
            warm.label_values("tower_sse_hub_published_total", "topic")
        );
        assert!(topics.iter().any(|t| t == "named") && topics.iter().any(|t| t == "other"));
        let opened = after.get("tower_sse_streams_opened_total", &[])
            - warm.get("tower_sse_streams_opened_total", &[]);
        assert_eq!(opened, (999_900 + 290) as f64);
        drop(served);
    });
}

/// The next scrape at which every stream of the test is over (the gauge back to 0).
async fn wait_for_streams_closed() -> Scrape {
    timeout(GUARD, async {
        loop {
            let now = scrape();
            if now.get("tower_sse_streams_open", &[]) == 0.0 {
                return now;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every stream closed")
}

#[cfg(feature = "redis")]
#[test]
#[cfg_attr(
    not(feature = "test-redis"),
    ignore = "needs redis-server: cargo test --features test-redis"
)]
fn redis_counts_writes_queue_and_failures() {
    serial(async {
        let mut redis = support::redis::RedisServer::start();
        let storage = tower_sse::hub::RedisStorage::new(&redis.url()).unwrap();
        let hub = Hub::builder().redis(storage).build();
        let before = scrape();
        for n in 0..20 {
            let published = hub.publish("t", Event::data(&n.to_string())).unwrap();
            timeout(GUARD, published.acknowledged())
                .await
                .expect("Redis acknowledges the event")
                .unwrap();
        }
        let written = scrape();
        let delta = Delta {
            before: &before,
            after: &written,
        };
        assert!(delta.get("tower_sse_redis_write_seconds_count", &[]) >= 1.0);
        assert_eq!(delta.get("tower_sse_hub_published_total", &[]), 20.0);
        // The writer samples its queue once its round is over, just after the acks.
        timeout(GUARD, async {
            while scrape().get("tower_sse_redis_write_queue", &[]) != 0.0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the write queue is back to empty");

        // Redis goes away: the writer fails, retries, and publishing fails at once as
        // unreachable (the counter moves once the writer marked Redis unreachable).
        redis.kill();
        let _ = hub.publish("t", Event::data("taken before the writer knows"));
        timeout(GUARD, async {
            while scrape().get("tower_sse_redis_reconnects_total", &[("task", "writer")])
                == before.get("tower_sse_redis_reconnects_total", &[("task", "writer")])
            {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the writer retries once Redis is gone");
        let failing = hub.publish("t", Event::data("refused")).unwrap_err();
        assert!(matches!(
            failing,
            tower_sse::hub::PublishError::Unreachable(_)
        ));
        let after = scrape();
        let delta = Delta {
            before: &before,
            after: &after,
        };
        assert!(delta.get("tower_sse_redis_reconnects_total", &[("task", "writer")]) >= 1.0);
        assert!(
            delta.get(
                "tower_sse_hub_publish_errors_total",
                &[("kind", "unreachable")]
            ) >= 1.0
        );
        drop(hub);
    });
}

#[test]
fn describe_gives_every_metric_a_help_line() {
    serial(async {
        let _hub = Hub::new();
        let text = recorder().render();
        assert!(
            text.contains("# HELP tower_sse_hub_published_total Events published and taken"),
            "{text}"
        );
    });
}

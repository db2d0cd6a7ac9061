//! axum 0.8 over real sockets: `route_service` with `SseLayer`, handlers returning
//! `Sse`, the `LastEventId` and hub `Subscription` extractors with a `Hub` as router
//! state, and `Router::layer(SseLayer)` over ordinary handlers (settings, heartbeats,
//! limits by `ConnectInfo`, disconnect reports, axum's own `Sse`, responses that are not
//! streams). Graceful shutdown is in `tests/shutdown.rs`.

#![cfg(feature = "axum")]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{self, post};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::*;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tower::{Layer, service_fn};
use tower_sse::{
    EndReason, Event, Hub, LastEventId, Refusal, Sse, SseLayer, StreamEnd, StreamLimit,
    Subscription,
};

const GUARD: Duration = Duration::from_secs(20);

async fn send(
    addr: SocketAddr,
    request: Request<http_body_util::Empty<Bytes>>,
    http2: bool,
) -> http::Response<Incoming> {
    if http2 {
        h2_connect(addr).await.send(request).await
    } else {
        h1_connect(addr).await.send(request).await
    }
}

async fn text(response: http::Response<Incoming>) -> String {
    let bytes = timeout(GUARD, response.into_body().collect())
        .await
        .expect("hang guard: the whole body")
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn with_id(request: http::request::Builder, id: &[u8]) -> http::request::Builder {
    request.header("last-event-id", http::HeaderValue::from_bytes(id).unwrap())
}

#[tokio::test]
async fn route_service_with_the_layer_serves_events_and_reads_last_event_id() {
    let service = SseLayer::new().layer(service_fn(|request: Request<Body>| async move {
        let id = request.extensions().get::<LastEventId>().cloned();
        let from = id.map_or(0, |id| id.parse::<u32>().unwrap() + 1);
        let events = (from..from + 3).map(|n| {
            Event::builder()
                .id(&n.to_string())
                .data(&format!("n{n}"))
                .build()
                .unwrap()
        });
        Ok::<_, Infallible>(Sse::new(stream::iter(events)).into_response())
    }));
    let app = Router::new().route_service("/events", service);
    let server = serve(app).await;
    for http2 in [false, true] {
        let response = send(server.addr, get("/events").body(empty()).unwrap(), http2).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(
            response.headers()["cache-control"],
            "no-cache, no-transform"
        );
        assert_eq!(
            response.headers().get("connection").is_some(),
            !http2,
            "Connection: keep-alive on HTTP/1.1 only"
        );
        let ids: Vec<_> = timeout(GUARD, events(response).map(|e| e.id).collect())
            .await
            .expect("hang guard: the 3 events and the end");
        assert_eq!(ids, ["0", "1", "2"]);

        let resumed = send(
            server.addr,
            with_id(get("/events"), b"41").body(empty()).unwrap(),
            http2,
        )
        .await;
        let ids: Vec<_> = timeout(GUARD, events(resumed).map(|e| e.id).collect())
            .await
            .expect("hang guard: the 3 events after 41 and the end");
        assert_eq!(ids, ["42", "43", "44"]);
        let by_query = send(
            server.addr,
            get("/events?lastEventId=9").body(empty()).unwrap(),
            http2,
        )
        .await;
        let ids: Vec<_> = timeout(GUARD, events(by_query).map(|e| e.id).collect())
            .await
            .expect("hang guard: the 3 events after 9 and the end");
        assert_eq!(ids, ["10", "11", "12"]);

        let post = Request::post("/events").body(empty()).unwrap();
        let refused = send(server.addr, post, http2).await;
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()["allow"], "GET");
    }
}

async fn echo_optional(last: Option<LastEventId>) -> Sse<stream::Iter<std::vec::IntoIter<Event>>> {
    let data = last.map_or("<none>".to_owned(), |id| format!("[{id}]"));
    Sse::new(stream::iter(vec![Event::data(&data)]))
}

async fn echo_required(last: LastEventId) -> Sse<stream::Iter<std::vec::IntoIter<Event>>> {
    Sse::new(stream::iter(vec![Event::data(&format!("[{last}]"))]))
}

#[tokio::test]
async fn handlers_return_sse_and_extract_last_event_id() {
    let app = Router::new()
        .route("/optional", routing::get(echo_optional))
        .route("/required", routing::get(echo_required));
    let server = serve(app).await;
    let long = vec![b'7'; 2000];
    let cases: Vec<(&str, Option<&[u8]>, &str)> = vec![
        ("/optional", None, "<none>"),
        ("/optional", Some("ก๊าซ-42".as_bytes()), "[ก๊าซ-42]"),
        ("/optional?lastEventId=%E2%9C%88", None, "[✈]"),
        ("/optional", Some(b"\xff"), "<none>"),
        ("/optional", Some(&long), "<none>"),
        ("/required", Some(b"5"), "[5]"),
    ];
    for http2 in [false, true] {
        for (uri, id, expected) in &cases {
            let mut request = get(uri);
            if let Some(id) = id {
                request = with_id(request, id);
            }
            let response = send(server.addr, request.body(empty()).unwrap(), http2).await;
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            let parsed: Vec<_> = timeout(GUARD, events(response).collect())
                .await
                .expect("hang guard: the echoed event and the end");
            assert_eq!(parsed.len(), 1);
            assert_eq!(&parsed[0].data, expected, "{uri} {id:?}");
        }
        // Required, but absent or malformed: a clear 400, never a 500.
        for id in [None, Some(&b"\xc3\x28"[..])] {
            let mut request = get("/required");
            if let Some(id) = id {
                request = with_id(request, id);
            }
            let response = send(server.addr, request.body(empty()).unwrap(), http2).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert_eq!(
                text(response).await,
                "the request has no valid Last-Event-ID\n"
            );
        }
    }
}

async fn publish(
    State(hub): State<Hub>,
    axum::extract::Path(topic): axum::extract::Path<String>,
    body: String,
) -> impl IntoResponse {
    let published = hub.publish(&topic, Event::data(&body)).unwrap();
    published.id().unwrap().to_string()
}

async fn subscribe(subscription: Subscription) -> Sse<Subscription> {
    Sse::new(subscription)
}

#[tokio::test]
async fn a_hub_as_router_state_with_the_subscription_extractor() {
    let hub = Hub::new();
    let app = Router::new()
        .route("/events", routing::get(subscribe))
        .route("/publish/{topic}", post(publish))
        .with_state(hub.clone())
        .layer(SseLayer::new());
    let server = serve(app).await;

    for http2 in [false, true] {
        let response = send(
            server.addr,
            get("/events?topic=news&topic=weather")
                .body(empty())
                .unwrap(),
            http2,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut live = events(response);
        let mut ids = Vec::new();
        for (topic, body) in [("news", "one"), ("sports", "skipped"), ("weather", "two")] {
            let request = Request::post(format!("/publish/{topic}"))
                .body(http_body_util::Full::new(Bytes::from(body)))
                .unwrap();
            let mut client = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(
                tokio::net::TcpStream::connect(server.addr).await.unwrap(),
            ))
            .await
            .unwrap();
            tokio::spawn(client.1);
            let answer = client.0.send_request(request).await.unwrap();
            let id = timeout(GUARD, answer.into_body().collect())
                .await
                .expect("hang guard: the id the publish answers with")
                .unwrap()
                .to_bytes();
            ids.push(String::from_utf8(id.to_vec()).unwrap());
        }
        let first = timeout(GUARD, live.next())
            .await
            .expect("hang guard: the first event")
            .unwrap();
        let second = timeout(GUARD, live.next())
            .await
            .expect("hang guard: the second event")
            .unwrap();
        assert_eq!(
            (first.id.as_str(), first.data.as_str()),
            (ids[0].as_str(), "one")
        );
        assert_eq!(
            (second.id.as_str(), second.data.as_str()),
            (ids[2].as_str(), "two")
        );

        // Reconnecting after the first event replays the second, and only it.
        let resumed = send(
            server.addr,
            with_id(get("/events?topic=news&topic=weather"), ids[0].as_bytes())
                .body(empty())
                .unwrap(),
            http2,
        )
        .await;
        let mut replay = events(resumed);
        let again = timeout(GUARD, replay.next())
            .await
            .expect("hang guard: the replayed event")
            .unwrap();
        assert_eq!(
            (again.id.as_str(), again.data.as_str()),
            (ids[2].as_str(), "two")
        );

        // A request the hub cannot make sense of: 400 with the reason.
        let bad = send(server.addr, get("/events").body(empty()).unwrap(), http2).await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(!text(bad).await.is_empty());
    }
}

// With tokio's clock paused and moved only by the test: every wait on the sockets is
// under `within_real`, which holds the clock still while frames are in flight (else it
// runs ahead to the next timer whenever the runtime idles), and the test advances to
// the heartbeat once the event has arrived.
#[tokio::test(start_paused = true)]
async fn the_router_layer_applies_its_settings_to_every_handlers_stream() {
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let (senders_tx, mut senders) = mpsc::unbounded_channel::<mpsc::UnboundedSender<Event>>();
    let ours = {
        let senders_tx = senders_tx.clone();
        move || {
            let senders_tx = senders_tx.clone();
            async move {
                let (tx, rx) = mpsc::unbounded_channel();
                senders_tx.send(tx).unwrap();
                Sse::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            }
        }
    };
    // axum's own `Sse`, without a keep-alive of its own: the layer's heartbeat serves it.
    let native = move || {
        let senders_tx = senders_tx.clone();
        async move {
            let (tx, rx) = mpsc::unbounded_channel::<Event>();
            senders_tx.send(tx).unwrap();
            let events = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(|event| {
                let text = std::str::from_utf8(event.as_bytes()).unwrap();
                let data = text.strip_prefix("data: ").unwrap().trim_end();
                Ok::<_, Infallible>(axum::response::sse::Event::default().data(data))
            });
            axum::response::Sse::new(events)
        }
    };
    let layer = SseLayer::new()
        .retry(Duration::from_secs(3))
        .heartbeat(Duration::from_secs(10))
        .heartbeat_event(Event::comment("hb"))
        .on_end(move |end: &StreamEnd| {
            let _ = reports_tx.send((end.reason, end.events));
        });
    let app = Router::new()
        .route("/events", routing::get(ours))
        .route("/native", routing::get(native))
        .layer(layer);
    let server = serve(app).await;

    for (path, http2) in [
        ("/events", false),
        ("/events", true),
        ("/native", false),
        ("/native", true),
    ] {
        let mut client_h1 = None;
        let mut client_h2 = None;
        let response = within_real(&format!("the response to {path}"), async {
            if http2 {
                let client = client_h2.insert(h2_connect(server.addr).await);
                client.send(get(path).body(empty()).unwrap()).await
            } else {
                let client = client_h1.insert(h1_connect(server.addr).await);
                client.send(get(path).body(empty()).unwrap()).await
            }
        })
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let version = if http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        assert_eq!(response.version(), version);
        assert_eq!(response.headers().get("connection").is_some(), !http2);
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        let mut body = response.into_body();
        let sender = within_real("the handler", senders.recv()).await.unwrap();

        let start = Instant::now();
        let prelude = within_real("the prelude", next_data(&mut body)).await;
        assert_eq!(prelude.unwrap(), "retry: 3000\n\n");
        sender.send(Event::data("one")).unwrap();
        let event = within_real("the event", next_data(&mut body)).await;
        assert_eq!(event.unwrap(), "data: one\n\n", "{path}");
        // Nothing in flight: the clock moves to the heartbeat, ten seconds after the
        // last write, which the layer writes in the handler's stream.
        tokio::time::advance(Duration::from_secs(10)).await;
        let beat = within_real("the heartbeat", next_data(&mut body)).await;
        assert_eq!(beat.unwrap(), ": hb\n\n", "{path}");
        assert_eq!(start.elapsed(), Duration::from_secs(10));

        // The client goes away: the end is reported, with what was sent.
        drop(body);
        if let Some(client) = client_h1 {
            client.close();
        }
        let report = within_real("the end report", reports.recv()).await;
        assert_eq!(report.unwrap(), (EndReason::ClientGone, 1));
        assert!(sender.is_closed());
        drop(client_h2);
    }
}

#[tokio::test]
async fn the_router_layer_refuses_over_the_limit_before_the_handler_runs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Sse::new(stream::pending::<Event>()) }
        }
    };
    // axum puts the peer address in `ConnectInfo`; the limit is told where to look.
    let limit = StreamLimit::new(100)
        .per_client(2)
        .retry_after(Duration::from_secs(9))
        .client_key(|parts| {
            let info = parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()?;
            Some(info.0.ip())
        });
    let app = Router::new()
        .route("/events", routing::get(handler.clone()).post(handler))
        .route("/health", routing::get(|| async { "ok" }))
        .layer(SseLayer::new().limit(limit.clone()));

    // axum's own server, with the peer address as `ConnectInfo`, which the limit reads.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .into_future(),
    );
    let from = |ip: &'static str| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        h1_over(socket.connect(addr).await.unwrap()).await
    };

    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = from("127.0.0.4").await;
        let response = client.send(get("/events").body(empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push((client, response));
    }
    let mut client = from("127.0.0.4").await;
    let refused = client.send(get("/events").body(empty()).unwrap()).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "9");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the handler never ran");

    let mut other = from("127.0.0.5").await;
    let response = other.send(get("/events").body(empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(limit.open_streams(), 3);

    // A POST routed to the same handler: the layer answers its stream with 405.
    let post = Request::post("/events").body(empty()).unwrap();
    let response = from("127.0.0.6").await.send(post).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The handler ran (only an answer tells the layer a route is a stream); its stream
    // was dropped unread.
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(limit.open_streams(), 3, "the refused stream took no place");

    // Routes that are not streams are not counted, even from a client at its cap
    // (a request that does not ask for an event stream takes a place only once its
    // answer turns out to be one).
    for _ in 0..3 {
        let response = from("127.0.0.4")
            .await
            .send(Request::get("/health").body(empty()).unwrap())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, "ok");
    }

    // A client leaves: its place is free again.
    let (client, response) = held.pop().unwrap();
    drop(response);
    client.close();
    timeout(GUARD, async {
        while limit.open_streams_from("127.0.0.4".parse().unwrap()) != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the place is freed");
    let response = from("127.0.0.4")
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    server.abort();
}

#[tokio::test]
async fn the_router_layer_completes_the_headers_of_axums_own_sse_and_leaves_the_rest() {
    async fn native() -> impl IntoResponse {
        let events = stream::iter([Ok::<_, Infallible>(
            axum::response::sse::Event::default().data("native"),
        )]);
        axum::response::Sse::new(events)
    }
    async fn plain() -> &'static str {
        "not a stream"
    }
    async fn gone() -> StatusCode {
        StatusCode::GONE
    }
    async fn response() -> axum::response::Response {
        (StatusCode::ACCEPTED, [("x-kind", "raw")], "raw response").into_response()
    }
    async fn maybe(
        last: Option<LastEventId>,
    ) -> Result<Sse<stream::Iter<std::vec::IntoIter<Event>>>, Refusal> {
        match last {
            Some(_) => Err(Refusal::stop()),
            None => Ok(Sse::new(stream::iter(vec![Event::data("first visit")]))),
        }
    }
    let app = Router::new()
        .route("/native", routing::get(native))
        .route("/plain", routing::get(plain))
        .route("/gone", routing::get(gone))
        .route("/response", routing::get(response))
        .route("/maybe", routing::get(maybe))
        .layer(SseLayer::new().retry(Duration::from_secs(2)));
    let server = serve(app).await;
    for http2 in [false, true] {
        let response = send(server.addr, get("/native").body(empty()).unwrap(), http2).await;
        let headers = response.headers();
        assert_eq!(headers["x-accel-buffering"], "no");
        assert_eq!(headers["content-encoding"], "identity");
        // What the handler set stays.
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers.get("connection").is_some(), !http2);
        let parsed: Vec<_> = timeout(GUARD, events(response).collect())
            .await
            .expect("hang guard: axum's own stream and its end");
        assert_eq!(parsed[0].data, "native");

        // Other responses are left alone.
        let response = send(server.addr, get("/plain").body(empty()).unwrap(), http2).await;
        assert!(!response.headers().contains_key("x-accel-buffering"));
        assert!(!response.headers().contains_key("content-encoding"));
        assert_eq!(text(response).await, "not a stream");
        let response = send(server.addr, get("/gone").body(empty()).unwrap(), http2).await;
        assert_eq!(response.status(), StatusCode::GONE);
        let response = send(server.addr, get("/response").body(empty()).unwrap(), http2).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["x-kind"], "raw");
        assert_eq!(text(response).await, "raw response");

        // `Result<Sse, Refusal>`: the stream, with the layer's prelude, or the refusal.
        let response = send(server.addr, get("/maybe").body(empty()).unwrap(), http2).await;
        let body = text(response).await;
        assert_eq!(body, "retry: 2000\n\ndata: first visit\n\n");
        let again = with_id(get("/maybe"), b"1").body(empty()).unwrap();
        let response = send(server.addr, again, http2).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn the_subscription_extractor_shows_the_authorize_hook_the_whole_request() {
    // Private topics need a token header; the hook sees the request's headers.
    let hub = Hub::builder()
        .authorize(|topic, parts| {
            !topic.starts_with("private/")
                || parts.headers.get("x-token").is_some_and(|t| t == "secret")
        })
        .build();
    let app = Router::new()
        .route("/events", routing::get(subscribe))
        .with_state(hub.clone())
        .layer(SseLayer::new());
    let server = serve(app).await;

    let refused = send(
        server.addr,
        get("/events?topic=private/a").body(empty()).unwrap(),
        false,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let allowed = get("/events?topic=private/a").header("x-token", "secret");
    let response = send(server.addr, allowed.body(empty()).unwrap(), false).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut live = events(response);
    hub.publish("private/a", Event::data("for your eyes"))
        .unwrap();
    let event = timeout(GUARD, live.next())
        .await
        .expect("hang guard: the private event")
        .unwrap();
    assert_eq!(event.data, "for your eyes");

    let public = send(
        server.addr,
        get("/events?topic=news").body(empty()).unwrap(),
        false,
    )
    .await;
    assert_eq!(public.status(), StatusCode::OK);
}

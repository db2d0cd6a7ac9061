//! warp 0.4 over real sockets: `Sse` and `Refusal` as `warp::Reply`s and the
//! `last_event_id` filter, served by warp's own server; then `warp::service(filter)`
//! behind `SseLayer`, served by hyper, with the layer's heartbeats, disconnect report,
//! per-client limit, its `Last-Event-ID` handed to the filter, and graceful shutdown.

#![cfg(feature = "warp")]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use http::{StatusCode, Version};
use http_body_util::BodyExt;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_sse::{EndReason, Event, LastEventId, Refusal, Sse, SseLayer, StreamEnd, StreamLimit};
use warp::Filter;

const GUARD: Duration = Duration::from_secs(20);

/// Serves a filter with warp's server on a free loopback port until the returned
/// sender fires. (A macro: warp's bound on filter errors is not nameable.)
macro_rules! serve_warp {
    ($filter:expr) => {{
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(
            warp::serve($filter)
                .incoming(listener)
                .graceful(async move {
                    stop_rx.await.ok();
                })
                .run(),
        );
        (addr, stop, server)
    }};
}

#[tokio::test]
async fn sse_is_a_reply_and_the_filter_reads_the_last_event_id() {
    let route = warp::path("events")
        .and(tower_sse::warp::last_event_id())
        .map(|last: Option<LastEventId>| {
            let data = last.map_or("<none>".to_owned(), |id| format!("[{id}]"));
            // A stream that is not `Sync`: the reply must still work.
            let events: BoxStream<'static, Event> =
                stream::iter([Event::data(&data), Event::data("second")]).boxed();
            Sse::new(events)
        });
    let (addr, _stop, _server) = serve_warp!(route);
    let cases: Vec<(&str, Option<&[u8]>, &str)> = vec![
        ("/events", None, "<none>"),
        ("/events", Some(b"42"), "[42]"),
        ("/events", Some("ก๊าซ-42 ✈".as_bytes()), "[ก๊าซ-42 ✈]"),
        ("/events?lastEventId=%E0%B8%81", None, "[ก]"),
        ("/events?lastEventId=9", Some(b"10"), "[10]"),
        ("/events", Some(b"\xff\xfe"), "<none>"),
        ("/events?lastEventId=%FF", None, "<none>"),
    ];
    for http2 in [false, true] {
        for (uri, id, expected) in &cases {
            let mut request = get(uri);
            if let Some(id) = id {
                request =
                    request.header("last-event-id", http::HeaderValue::from_bytes(id).unwrap());
            }
            let request = request.body(empty()).unwrap();
            let response = if http2 {
                h2_connect(addr).await.send(request).await
            } else {
                h1_connect(addr).await.send(request).await
            };
            assert_eq!(response.status(), StatusCode::OK);
            let headers = response.headers();
            assert_eq!(headers["content-type"], "text/event-stream");
            assert_eq!(headers["cache-control"], "no-cache, no-transform");
            assert_eq!(headers["x-accel-buffering"], "no");
            // warp has no request version at hand for `Sse`: no Connection header, which
            // HTTP/1.1 does not need and HTTP/2 forbids.
            assert!(!headers.contains_key("connection"));
            assert_eq!(
                response.version(),
                if http2 {
                    Version::HTTP_2
                } else {
                    Version::HTTP_11
                }
            );
            let parsed: Vec<_> = timeout(GUARD, events(response).collect())
                .await
                .expect("hang guard: the 2 events and the end");
            let data: Vec<_> = parsed.iter().map(|e| e.data.as_str()).collect();
            assert_eq!(data, [*expected, "second"], "{uri} {id:?} http2={http2}");
        }
    }
}

// With tokio's clock paused and moved only by the test: every wait on the socket is
// under `within_real`, which holds the clock still while bytes are in flight, and the
// test advances to the heartbeat once the event has arrived.
#[tokio::test(start_paused = true)]
async fn behind_the_layer_heartbeats_and_the_disconnect_report() {
    let (senders_tx, mut senders) = mpsc::unbounded_channel::<mpsc::UnboundedSender<Event>>();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let route = warp::path("events").map(move || {
        let (tx, rx) = mpsc::unbounded_channel();
        senders_tx.send(tx).unwrap();
        Sse::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    });
    let layer =
        SseLayer::new()
            .heartbeat(Duration::from_secs(15))
            .on_end(move |end: &StreamEnd| {
                let _ = reports_tx.send((end.reason, end.events));
            });
    let server = serve(layer.layer(warp::service(route))).await;
    let (client, response, sender) = within_real("the stream", async {
        let mut client = h1_connect(server.addr).await;
        let response = client.send(get("/events").body(empty()).unwrap()).await;
        (client, response, senders.recv().await.unwrap())
    })
    .await;
    assert_eq!(response.headers()["connection"], "keep-alive");
    let mut body = response.into_body();
    let start = Instant::now();
    sender.send(Event::data("one")).unwrap();
    let event = within_real("the event", next_data(&mut body)).await;
    assert_eq!(event.unwrap(), "data: one\n\n");
    // Nothing in flight: the clock moves to the heartbeat, 15 s after the last write.
    tokio::time::advance(Duration::from_secs(15)).await;
    let beat = within_real("the heartbeat", next_data(&mut body)).await;
    assert_eq!(beat.unwrap(), ":\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(15));

    drop(body);
    client.close();
    let report = within_real("the end report", reports.recv()).await;
    assert_eq!(report.unwrap(), (EndReason::ClientGone, 1));
    assert!(sender.is_closed());
}

#[tokio::test]
async fn behind_the_layer_the_filter_gets_the_layers_last_event_id() {
    // The layer reads `?since=`; the filter finds what it read in the extensions.
    let route = warp::path("events")
        .and(tower_sse::warp::last_event_id())
        .map(|last: Option<LastEventId>| {
            let data = last.map_or("<none>".to_owned(), |id| format!("[{id}]"));
            Sse::new(stream::iter([Event::data(&data)]))
        });
    let layer = SseLayer::new().last_event_id_query("since");
    let server = serve(layer.layer(warp::service(route))).await;
    for (uri, expected) in [("/events?since=7", "[7]"), ("/events", "<none>")] {
        let response = h1_connect(server.addr)
            .await
            .send(get(uri).body(empty()).unwrap())
            .await;
        let parsed: Vec<_> = timeout(GUARD, events(response).collect())
            .await
            .expect("hang guard: the echoed event and the end");
        assert_eq!(parsed[0].data, expected, "{uri}");
    }
}

#[tokio::test]
async fn behind_the_layer_a_per_client_limit_and_refusals_as_replies() {
    let limit = StreamLimit::new(100).per_client(1);
    let events = warp::path("events").map(|| Sse::new(stream::pending::<Event>()));
    let done = warp::path("done").map(Refusal::stop);
    let layer = SseLayer::new().limit(limit.clone());
    // The test server puts each connection's peer address in the request extensions.
    let server = serve(layer.layer(warp::service(events.or(done)))).await;
    let alice: IpAddr = "127.0.0.7".parse().unwrap();
    let bob: IpAddr = "127.0.0.8".parse().unwrap();

    let mut first = h1_from(alice, server.addr).await;
    let open = first.send(get("/events").body(empty()).unwrap()).await;
    assert_eq!(open.status(), StatusCode::OK);
    let refused = h1_from(alice, server.addr)
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");
    let other = h1_from(bob, server.addr)
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(limit.open_streams(), 2);

    // A 204 refusal is a reply, passed through by the layer: it takes no place.
    let stop = h1_from("127.0.0.9".parse().unwrap(), server.addr)
        .await
        .send(get("/done").body(empty()).unwrap())
        .await;
    assert_eq!(stop.status(), StatusCode::NO_CONTENT);
    assert!(
        timeout(GUARD, stop.into_body().collect())
            .await
            .expect("hang guard: the end of the 204")
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    assert_eq!(limit.open_streams(), 2);
}

#[tokio::test]
async fn behind_the_layer_graceful_shutdown_ends_the_streams() {
    let shutdown = CancellationToken::new();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let route = warp::path("events")
        .map(|| Sse::new(stream::iter([Event::data("hello")]).chain(stream::pending())));
    let layer = SseLayer::new()
        .graceful_shutdown(shutdown.clone())
        .shutdown_event(
            Event::builder()
                .retry(Duration::from_millis(300))
                .build()
                .unwrap(),
        )
        .on_end(move |end: &StreamEnd| {
            let _ = reports_tx.send(end.reason);
        });
    let server = serve(layer.layer(warp::service(route))).await;
    let mut bodies = Vec::new();
    for http2 in [false, true, true] {
        let request = get("/events").body(empty()).unwrap();
        let response = if http2 {
            h2_connect(server.addr).await.send(request).await
        } else {
            h1_connect(server.addr).await.send(request).await
        };
        let mut body = response.into_body();
        let hello = timeout(GUARD, next_data(&mut body))
            .await
            .expect("hang guard: the first event");
        assert_eq!(hello.unwrap(), "data: hello\n\n");
        bodies.push(body);
    }
    shutdown.cancel();
    for body in bodies {
        // The rest of each body: the final frame, then a clean end.
        let rest = timeout(GUARD, body.collect())
            .await
            .expect("hang guard: the shutdown event and the end")
            .unwrap();
        assert_eq!(rest.to_bytes(), "retry: 300\n\n");
        assert_eq!(
            within("the end report", reports.recv()).await,
            Some(EndReason::Shutdown)
        );
    }
}

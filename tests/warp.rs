//! warp 0.4 over real sockets, served by warp's own server: `Sse` as a `warp::Reply`,
//! the `last_event_id` filter, heartbeats, the disconnect report, a per-client limit
//! from `warp::addr::remote()`, and warp's graceful shutdown with `Shutdown::trigger_on`.

#![cfg(feature = "warp")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use http::{StatusCode, Version};
use http_body_util::BodyExt;
use support::*;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};
use tower_sse::{
    EndReason, Event, KeepAlive, LastEventId, Refusal, Shutdown, Sse, StreamEnd, StreamLimit,
};
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
            let parsed: Vec<_> = events(response).collect().await;
            let data: Vec<_> = parsed.iter().map(|e| e.data.as_str()).collect();
            assert_eq!(data, [*expected, "second"], "{uri} {id:?} http2={http2}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_and_the_disconnect_report() {
    let (senders_tx, mut senders) = mpsc::unbounded_channel::<mpsc::UnboundedSender<Event>>();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let route = warp::path("events").map(move || {
        let (tx, rx) = mpsc::unbounded_channel();
        senders_tx.send(tx).unwrap();
        let reports_tx = reports_tx.clone();
        Sse::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .on_end(move |end: &StreamEnd| {
                let _ = reports_tx.send((end.reason, end.events));
            })
    });
    let (addr, _stop, _server) = serve_warp!(route);
    let mut client = h1_connect(addr).await;
    let mut body = client
        .send(get("/events").body(empty()).unwrap())
        .await
        .into_body();
    let sender = senders.recv().await.unwrap();
    let start = Instant::now();
    sender.send(Event::data("one")).unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "data: one\n\n");
    assert_eq!(next_data(&mut body).await.unwrap(), ":\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(15));

    drop(body);
    client.close();
    let report = timeout(GUARD, reports.recv()).await.unwrap().unwrap();
    assert_eq!(report, (EndReason::ClientGone, 1));
    assert!(sender.is_closed());
}

#[tokio::test]
async fn a_per_client_limit_from_the_remote_address() {
    let limit = StreamLimit::new(100).per_client(1);
    let route = warp::path("events").and(warp::addr::remote()).map({
        let limit = limit.clone();
        move |addr: Option<SocketAddr>| match limit.try_acquire(addr.map(|a| a.ip())) {
            Ok(permit) => {
                warp::Reply::into_response(Sse::new(stream::pending::<Event>()).permit(permit))
            }
            Err(reached) => warp::Reply::into_response(reached),
        }
    });
    let (addr, _stop, _server) = serve_warp!(route);
    let from = |ip: &'static str| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        h1_over(socket.connect(addr).await.unwrap()).await
    };
    let mut first = from("127.0.0.7").await;
    let open = first.send(get("/events").body(empty()).unwrap()).await;
    assert_eq!(open.status(), StatusCode::OK);
    let refused = from("127.0.0.7")
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");
    let other = from("127.0.0.8")
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(limit.open_streams(), 2);

    // A 204 refusal is a reply too.
    let stop = warp::Reply::into_response(Refusal::stop());
    assert_eq!(stop.status(), StatusCode::NO_CONTENT);
    assert!(
        stop.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}

#[tokio::test]
async fn warps_graceful_shutdown_completes_once_the_streams_end() {
    let shutdown = Shutdown::new();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let route = warp::path("events").map({
        let shutdown = shutdown.clone();
        move || {
            let reports_tx = reports_tx.clone();
            Sse::new(stream::iter([Event::data("hello")]).chain(stream::pending()))
                .graceful_shutdown(shutdown.clone())
                .shutdown_event(
                    Event::builder()
                        .retry(Duration::from_millis(300))
                        .build()
                        .unwrap(),
                )
                .on_end(move |end: &StreamEnd| {
                    let _ = reports_tx.send(end.reason);
                })
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal, signal_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        warp::serve(route)
            .incoming(listener)
            .graceful(shutdown.trigger_on(async move {
                signal_rx.await.ok();
            }))
            .run(),
    );
    let mut bodies = Vec::new();
    for http2 in [false, true, true] {
        let request = get("/events").body(empty()).unwrap();
        let response = if http2 {
            h2_connect(addr).await.send(request).await
        } else {
            h1_connect(addr).await.send(request).await
        };
        let mut body = response.into_body();
        assert_eq!(next_data(&mut body).await.unwrap(), "data: hello\n\n");
        bodies.push(body);
    }
    signal.send(()).unwrap();
    for body in bodies {
        // The rest of each body: the final frame, then a clean end.
        let rest = timeout(GUARD, body.collect()).await.unwrap().unwrap();
        assert_eq!(rest.to_bytes(), "retry: 300\n\n");
        assert_eq!(reports.recv().await, Some(EndReason::Shutdown));
    }
    timeout(GUARD, server)
        .await
        .expect("warp's graceful shutdown completes")
        .unwrap();
}

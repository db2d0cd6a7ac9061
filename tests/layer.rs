//! The layer end to end: a real hyper server on loopback, real HTTP/1.1 and HTTP/2
//! clients, events parsed by an independent spec parser.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_sse::{EndReason, Event, LastEventId, Refusal, Sse, SseLayer, StreamEnd};

/// What the `on_end` callback saw.
#[derive(Debug, PartialEq)]
struct Report {
    reason: EndReason,
    error: Option<String>,
    events: u64,
    bytes: u64,
}

fn reporting(layer: SseLayer) -> (SseLayer, mpsc::UnboundedReceiver<Report>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let layer = layer.on_end(move |end: &StreamEnd| {
        let _ = tx.send(Report {
            reason: end.reason,
            error: end.error.as_ref().map(|e| e.to_string()),
            events: end.events,
            bytes: end.bytes,
        });
    });
    (layer, rx)
}

/// A server whose every stream is fed by a channel the test holds: each request hands
/// the test its sender.
async fn channel_server(
    layer: SseLayer,
) -> (
    TestServer,
    mpsc::UnboundedReceiver<mpsc::UnboundedSender<Event>>,
) {
    let (senders_tx, senders_rx) = mpsc::unbounded_channel();
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_request: Request<Incoming>| {
            let (tx, rx) = mpsc::unbounded_channel();
            senders_tx.send(tx).unwrap();
            let events = UnboundedReceiverStream::new(rx);
            async move { Ok::<_, Infallible>(Sse::new(events).into_response()) }
        },
    ));
    (serve(service).await, senders_rx)
}

/// A server streaming `events` to every request.
async fn fixed_server(layer: SseLayer, events: Vec<Event>) -> TestServer {
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_request: Request<Incoming>| {
            let events = stream::iter(events.clone());
            async move { Ok::<_, Infallible>(Sse::new(events).into_response()) }
        },
    ));
    serve(service).await
}

fn numbered(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::builder()
                .id(&i.to_string())
                .event("n")
                .data(&format!("event {i}"))
                .build()
                .unwrap()
        })
        .collect()
}

fn text(bytes: &Bytes) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn http1_headers_and_events_in_order() {
    let server = fixed_server(SseLayer::new(), numbered(1000)).await;
    let mut client = h1_connect(server.addr).await;
    let response = client.send(get("/events").body(empty()).unwrap()).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_11);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert_eq!(headers["connection"], "keep-alive");

    let parsed: Vec<_> = within("the 1,000 events and the end", events(response).collect()).await;
    assert_eq!(parsed.len(), 1000);
    for (i, event) in parsed.iter().enumerate() {
        assert_eq!(event.id, i.to_string());
        assert_eq!(event.event, "n");
        assert_eq!(event.data, format!("event {i}"));
    }
}

#[tokio::test]
async fn http2_has_no_connection_header_and_events_in_order() {
    let server = fixed_server(SseLayer::new(), numbered(1000)).await;
    let mut client = h2_connect(server.addr).await;
    let response = client.send(get("/events").body(empty()).unwrap()).await;

    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(
        response.headers()["cache-control"],
        "no-cache, no-transform"
    );
    for name in ["connection", "keep-alive", "transfer-encoding"] {
        assert!(!response.headers().contains_key(name), "{name} on HTTP/2");
    }
    let parsed: Vec<_> = within("the 1,000 events and the end", events(response).collect()).await;
    let ids: Vec<_> = parsed
        .iter()
        .map(|e| e.id.parse::<usize>().unwrap())
        .collect();
    assert_eq!(ids, (0..1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_service_writes_connection_only_for_http1_requests() {
    let service = ServiceBuilder::new()
        .layer(SseLayer::new())
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Sse::new(stream::empty::<Event>()).into_response())
        }));
    for (version, expected) in [
        (Version::HTTP_10, Some("keep-alive")),
        (Version::HTTP_11, Some("keep-alive")),
        (Version::HTTP_2, None),
        (Version::HTTP_3, None),
    ] {
        let request = Request::get("/").version(version).body(()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let connection = response
            .headers()
            .get("connection")
            .map(|v| v.to_str().unwrap());
        assert_eq!(connection, expected, "{version:?}");
    }
}

#[tokio::test]
async fn requests_other_than_get_get_405() {
    let server = fixed_server(SseLayer::new(), numbered(1)).await;
    let mut client = h1_connect(server.addr).await;
    let request = Request::post("/events").body(empty()).unwrap();
    let response = client.send(request).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
    let body = within("the body of the 405", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert!(!body.is_empty());
}

// On the body in memory: tokio's paused clock runs ahead whenever the runtime waits,
// over a socket too, so only without one is every instant below exact.
#[tokio::test(start_paused = true)]
async fn retry_goes_first_then_heartbeats_after_idle_time_reset_by_each_event() {
    let layer = SseLayer::new()
        .retry(Duration::from_millis(2500))
        .heartbeat(Duration::from_secs(15));
    let (mut body, sender) = layered_channel(layer).await;
    let start = Instant::now();

    let first = in_memory_data(&mut body).await;
    assert_eq!(text(&first), "retry: 2500\n\n");
    assert_eq!(start.elapsed(), Duration::ZERO);

    let beat = in_memory_data(&mut body).await;
    assert_eq!(text(&beat), ":\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(15));

    // An event at 20 s pushes the next heartbeat to 35 s, not 30 s, rounded up to the
    // layer's heartbeat slots (every 15/16 s from when it wrapped the service, here at
    // `start`): 38 slots, 35.625 s.
    tokio::time::sleep_until(start + Duration::from_secs(20)).await;
    sender.send(Event::data("tick")).unwrap();
    let event = in_memory_data(&mut body).await;
    assert_eq!(text(&event), "data: tick\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(20));

    let beat = in_memory_data(&mut body).await;
    assert_eq!(text(&beat), ":\n\n");
    assert_eq!(start.elapsed(), Duration::from_millis(35_625));
}

/// A stream of `layer` read in memory, fed by the sender it gives.
async fn layered_channel(
    layer: SseLayer,
) -> (
    tower_sse::layer::ResponseBody<Sse<UnboundedReceiverStream<Event>>>,
    mpsc::UnboundedSender<Event>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = std::sync::Mutex::new(Some(rx));
    let body = layered(layer, || {
        UnboundedReceiverStream::new(rx.lock().unwrap().take().expect("one stream"))
    })
    .await;
    (body, tx)
}

/// The next data frame of a body read in memory; on tokio's clock, fails after a
/// minute (paused, that is only reached when nothing else is due).
async fn in_memory_data<B>(body: &mut B) -> Bytes
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let frame = timeout(Duration::from_secs(60), body.frame())
        .await
        .expect("a frame within a minute")
        .expect("the body goes on");
    frame.unwrap().into_data().expect("a data frame")
}

/// A heartbeat interval or a stall timeout beyond what the clock can add is taken as
/// "never": no panic, and the stream serves its events.
#[tokio::test]
async fn an_interval_of_centuries_is_no_panic() {
    for layer in [
        SseLayer::new().heartbeat(Duration::MAX),
        SseLayer::new()
            .heartbeat(Duration::from_secs(15))
            .stall_timeout(Duration::MAX),
    ] {
        let events = || stream::iter([Event::data("one")]).chain(stream::pending());
        let mut body = layered(layer, events).await;
        let frame = within("the event", body.frame()).await;
        let frame = frame.unwrap().unwrap().into_data().unwrap();
        assert_eq!(text(&frame), "data: one\n\n");
    }
}

#[tokio::test(start_paused = true)]
async fn a_late_poll_writes_one_heartbeat_not_a_burst() {
    let layer = SseLayer::new()
        .heartbeat(Duration::from_secs(1))
        .heartbeat_event(Event::comment("hb"));
    let mut body = layered(layer, stream::pending::<Event>).await;
    let start = Instant::now();
    let frame = within("the first heartbeat", body.frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(text(&frame), ": hb\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(1));

    // Nobody polls for ten intervals; then one heartbeat, and the next a full interval later.
    tokio::time::advance(Duration::from_secs(10)).await;
    let late = Instant::now();
    assert!(
        within("the late heartbeat", body.frame())
            .await
            .unwrap()
            .unwrap()
            .is_data()
    );
    assert_eq!(late.elapsed(), Duration::ZERO);
    assert!(
        timeout(Duration::from_millis(999), body.frame())
            .await
            .is_err(),
        "no catch-up heartbeat"
    );
    assert!(
        within("the heartbeat after the late one", body.frame())
            .await
            .unwrap()
            .unwrap()
            .is_data()
    );
    assert_eq!(late.elapsed(), Duration::from_secs(1));
}

#[tokio::test]
async fn ready_events_are_coalesced_into_few_frames_up_to_the_bound() {
    let events = numbered(10_000);
    let total: usize = events.iter().map(|e| e.as_bytes().len()).sum();
    let layer = SseLayer::new().max_frame_size(16 * 1024);
    let mut body = layered(layer, || stream::iter(events.clone())).await;
    let mut frames = Vec::new();
    within("every frame of the body in memory and its end", async {
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
    })
    .await;
    let expected: Vec<u8> = events.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
    assert_eq!(frames.concat(), expected);
    assert!(frames.iter().all(|f| f.len() <= 16 * 1024));
    assert!(
        frames.len() <= total / (16 * 1024 - 64) + 1,
        "{} frames",
        frames.len()
    );

    // Over a real connection too: 10,000 events arrive in a handful of reads.
    let server = fixed_server(SseLayer::new(), events).await;
    let mut client = h1_connect(server.addr).await;
    let mut body = client
        .send(get("/events").body(empty()).unwrap())
        .await
        .into_body();
    let (mut reads, mut received) = (0, Vec::new());
    within("the 10,000 events and the end over HTTP/1.1", async {
        while let Some(data) = next_data(&mut body).await {
            reads += 1;
            received.extend_from_slice(&data);
        }
    })
    .await;
    assert_eq!(received, expected);
    assert!(reads <= 64, "{reads} reads for {total} bytes");
}

// On the body in memory, so that the instants are exact (see above).
#[tokio::test(start_paused = true)]
async fn a_slow_producer_gets_each_event_written_at_once() {
    let (mut body, sender) = layered_channel(SseLayer::new()).await;
    let start = Instant::now();
    for i in 1..=5u64 {
        tokio::time::sleep_until(start + Duration::from_secs(2 * i)).await;
        sender.send(Event::data(&i.to_string())).unwrap();
        let data = in_memory_data(&mut body).await;
        assert_eq!(text(&data), format!("data: {i}\n\n"));
        assert_eq!(start.elapsed(), Duration::from_secs(2 * i));
    }
}

// In real time (the paused clock would run ahead while the close crosses the socket),
// with no heartbeat: a write is not what finds the close, and no duration is asserted.
#[tokio::test]
async fn a_clean_close_is_reported_while_idle() {
    let (layer, mut reports) = reporting(SseLayer::new().no_heartbeat());
    let (server, mut senders) = channel_server(layer).await;

    // HTTP/1.1: the client closes its socket while the stream is idle.
    let mut client = within("the connection", h1_connect(server.addr)).await;
    let mut body = within(
        "the response",
        client.send(get("/events").body(empty()).unwrap()),
    )
    .await
    .into_body();
    let sender = within("the stream", senders.recv()).await.unwrap();
    sender.send(Event::data("only")).unwrap();
    within("the event", next_data(&mut body)).await.unwrap();
    drop(body);
    client.close();
    let report = within("the report of the close", reports.recv())
        .await
        .unwrap();
    assert_eq!(
        report,
        Report {
            reason: EndReason::ClientGone,
            error: None,
            events: 1,
            bytes: 12,
        }
    );
    assert!(sender.is_closed(), "the stream was dropped");

    // HTTP/2: the client resets one stream while its connection stays open.
    let mut client = within("the h2 connection", h2_connect(server.addr)).await;
    let mut body = within(
        "the h2 response",
        client.send(get("/events").body(empty()).unwrap()),
    )
    .await
    .into_body();
    let sender = within("the h2 stream", senders.recv()).await.unwrap();
    sender.send(Event::data("h2")).unwrap();
    within("the h2 event", next_data(&mut body)).await.unwrap();
    drop(body);
    let report = within("the report of the reset", reports.recv())
        .await
        .unwrap();
    assert_eq!(report.reason, EndReason::ClientGone);
    assert_eq!(report.events, 1);
    assert!(sender.is_closed());
    client.close();
}

/// A TCP proxy that, once cut, forwards nothing more and answers the server's next
/// write with a reset: the server sees a peer that vanished without closing and can only
/// learn it by writing.
/// The proxy says on `cut_done` when it has stopped forwarding.
async fn vanishing_proxy(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    mpsc::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut_tx, mut cut_rx) = mpsc::channel::<()>(1);
    let (cut_done_tx, cut_done) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = TcpStream::connect(upstream).await.unwrap();
        let (mut a, mut b) = ([0u8; 16384], [0u8; 16384]);
        loop {
            tokio::select! {
                _ = cut_rx.recv() => break,
                n = client.read(&mut a) => match n { Ok(0) | Err(_) => return, Ok(n) => server.write_all(&a[..n]).await.unwrap() },
                n = server.read(&mut b) => match n { Ok(0) | Err(_) => return, Ok(n) => client.write_all(&b[..n]).await.unwrap() },
            }
        }
        // Cut: the client side stays silent; the server's next bytes get a reset.
        let _ = cut_done_tx.send(());
        let _ = server.read(&mut b).await;
        #[allow(deprecated)] // linger 0 resets at once; it never blocks
        server.set_linger(Some(Duration::ZERO)).unwrap();
        drop(server);
        std::future::pending::<()>().await;
        drop(client);
    });
    (addr, cut_tx, cut_done)
}

// With tokio's clock paused, moved only by the test: every wait on the sockets is under
// `within_real`, which holds the clock still while bytes are in flight, so no heartbeat
// or deadline of the server can fire early.
#[tokio::test(start_paused = true)]
async fn a_vanished_client_is_noticed_at_the_next_heartbeat() {
    let heartbeat = Duration::from_secs(15);
    let (layer, mut reports) = reporting(SseLayer::new().heartbeat(heartbeat));
    let (server, mut senders) = channel_server(layer).await;
    let (proxy, cut, cut_done) = vanishing_proxy(server.addr).await;

    let (_client, mut body, sender) = within_real("the stream through the proxy", async {
        let mut client = h1_over(TcpStream::connect(proxy).await.unwrap()).await;
        let request = get("/events").body(empty()).unwrap();
        let body = client.send(request).await.into_body();
        (client, body, senders.recv().await.unwrap())
    })
    .await;
    sender.send(Event::data("before")).unwrap();
    within_real("the event", next_data(&mut body))
        .await
        .unwrap();
    let cut_at = Instant::now();
    cut.send(()).await.unwrap();
    within_real("the cut", cut_done).await.unwrap();

    // Nothing crosses the cut until the server writes: nothing can be noticed before
    // the heartbeat.
    tokio::time::advance(heartbeat - Duration::from_secs(1)).await;
    assert!(
        reports.try_recv().is_err(),
        "nothing can be noticed before the heartbeat"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let report = within_real("the report after the heartbeat", reports.recv())
        .await
        .unwrap();
    assert_eq!(report.reason, EndReason::ClientGone);
    assert_eq!(cut_at.elapsed(), heartbeat);
    assert!(sender.is_closed());
}

#[tokio::test]
async fn a_stream_error_ends_the_response_cleanly_and_is_reported() {
    let (layer, mut reports) = reporting(SseLayer::new());
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_: Request<Incoming>| async {
                let items: Vec<Result<Event, std::io::Error>> = vec![
                    Ok(Event::data("one")),
                    Ok(Event::data("two")),
                    Err(std::io::Error::other("database went away")),
                    Ok(Event::data("never")),
                ];
                Ok::<_, Infallible>(Sse::new(stream::iter(items)).into_response())
            }));
    let server = serve(service).await;
    for http2 in [false, true] {
        let response = if http2 {
            h2_connect(server.addr)
                .await
                .send(get("/").body(empty()).unwrap())
                .await
        } else {
            h1_connect(server.addr)
                .await
                .send(get("/").body(empty()).unwrap())
                .await
        };
        // The body ends without an error: no torn frame, nothing after the failure.
        let body = within("the body up to the error", response.into_body().collect())
            .await
            .expect("clean end")
            .to_bytes();
        assert_eq!(text(&body), "data: one\n\ndata: two\n\n");
        let report = within("the end report", reports.recv()).await.unwrap();
        assert_eq!(
            report,
            Report {
                reason: EndReason::Error,
                error: Some("database went away".into()),
                events: 2,
                bytes: body.len() as u64,
            }
        );
    }
}

#[tokio::test]
async fn a_finished_stream_is_reported_with_what_it_sent() {
    let (layer, mut reports) = reporting(SseLayer::new().retry(Duration::from_secs(1)));
    let events = numbered(3);
    let server = fixed_server(layer, events.clone()).await;
    let mut client = h1_connect(server.addr).await;
    let response = client.send(get("/").body(empty()).unwrap()).await;
    let body = within("the whole stream", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    let report = within("the end report", reports.recv()).await.unwrap();
    assert_eq!(report.reason, EndReason::Finished);
    assert_eq!(report.events, 3);
    assert_eq!(report.bytes, body.len() as u64);
    assert!(text(&body).starts_with("retry: 1000\n\n"));
}

#[tokio::test]
async fn shutdown_ends_every_stream_after_its_final_event() {
    let shutdown = CancellationToken::new();
    let bye = Event::builder()
        .retry(Duration::from_millis(100))
        .event("bye")
        .data("")
        .build()
        .unwrap();
    let (layer, mut reports) = reporting(
        SseLayer::new()
            .graceful_shutdown(shutdown.clone())
            .shutdown_event(bye),
    );
    let (server, mut senders) = channel_server(layer).await;

    let mut h1 = h1_connect(server.addr).await;
    let mut h2 = h2_connect(server.addr).await;
    let responses = vec![
        h1.send(get("/").body(empty()).unwrap()).await,
        h2.send(get("/").body(empty()).unwrap()).await,
        h2.send(get("/").body(empty()).unwrap()).await,
    ];
    let mut senders_held = Vec::new();
    for _ in 0..3 {
        let sender = within("the stream's sender", senders.recv()).await.unwrap();
        sender.send(Event::data("hello")).unwrap();
        senders_held.push(sender);
    }
    let readers: Vec<_> = responses
        .into_iter()
        .map(|r| tokio::spawn(async move { events(r).collect::<Vec<_>>().await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.cancel();

    for reader in readers {
        let parsed = within("the stream to end after the shutdown event", reader)
            .await
            .unwrap();
        let got: Vec<_> = parsed
            .iter()
            .map(|e| (e.event.as_str(), e.data.as_str()))
            .collect();
        assert_eq!(got, [("message", "hello"), ("bye", "")]);
        assert_eq!(parsed[1].retry, Some(Duration::from_millis(100)));
    }
    for _ in 0..3 {
        assert_eq!(
            within("the end report", reports.recv())
                .await
                .unwrap()
                .reason,
            EndReason::Shutdown
        );
    }
    assert!(senders_held.iter().all(|s| s.is_closed()));
}

#[tokio::test]
async fn an_outer_compress_everything_layer_neither_compresses_nor_buffers() {
    use tower_http::compression::{CompressionLayer, predicate::SizeAbove};

    let (senders_tx, mut senders) = mpsc::unbounded_channel();
    let sse = ServiceBuilder::new()
        .layer(SseLayer::new())
        .service(service_fn(move |_: Request<Incoming>| {
            let (tx, rx) = mpsc::unbounded_channel();
            senders_tx.send(tx).unwrap();
            let events = UnboundedReceiverStream::new(rx);
            async move { Ok::<_, Infallible>(Sse::new(events).into_response()) }
        }))
        .map_response(|r| r.map(|b| b.boxed()));
    let plain = service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(
            Full::new(Bytes::from("plain text ".repeat(100)))
                .map_err(|never| match never {})
                .boxed(),
        ))
    });
    let router = service_fn(move |request: Request<Incoming>| {
        let (sse, plain) = (sse.clone(), plain);
        async move {
            if request.uri().path() == "/plain" {
                plain.oneshot(request).await
            } else {
                sse.oneshot(request).await
            }
        }
    });
    let service = ServiceBuilder::new()
        .layer(CompressionLayer::new().compress_when(SizeAbove::new(0)))
        .service(router);
    let server = serve(service).await;
    let mut client = h1_connect(server.addr).await;

    // The layer is live: a plain response is compressed.
    let request = get("/plain")
        .header("accept-encoding", "gzip")
        .body(empty())
        .unwrap();
    let response = client.send(request).await;
    assert_eq!(response.headers()["content-encoding"], "gzip");
    within("the gzipped page", response.into_body().collect())
        .await
        .unwrap();

    // The event stream is neither compressed nor held back: each event arrives before
    // the next one is produced.
    let request = get("/events")
        .header("accept-encoding", "gzip, br, zstd")
        .body(empty())
        .unwrap();
    let response = client.send(request).await;
    assert_eq!(response.headers()["content-encoding"], "identity");
    let mut body = response.into_body();
    let sender = within("the stream's sender", senders.recv()).await.unwrap();
    for i in 0..20 {
        sender.send(Event::data(&format!("live {i}"))).unwrap();
        let data = timeout(Duration::from_secs(5), next_data(&mut body))
            .await
            .expect("the event arrives without the next one")
            .unwrap();
        assert_eq!(text(&data), format!("data: live {i}\n\n"));
    }
}

/// A server that answers with one event whose data is the last event id it was given.
async fn echo_id_server(layer: SseLayer) -> TestServer {
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        |request: Request<Incoming>| async move {
            let id = request.extensions().get::<LastEventId>();
            let data = id.map_or("<none>".to_owned(), |id| format!("[{id}]"));
            Ok::<_, Infallible>(Sse::new(stream::iter([Event::data(&data)])).into_response())
        },
    ));
    serve(service).await
}

async fn echoed(
    server: &TestServer,
    request: Request<http_body_util::Empty<Bytes>>,
    http2: bool,
) -> String {
    let response = if http2 {
        h2_connect(server.addr).await.send(request).await
    } else {
        h1_connect(server.addr).await.send(request).await
    };
    assert_eq!(response.status(), StatusCode::OK);
    let parsed: Vec<_> = within("the echoed event and the end", events(response).collect()).await;
    assert_eq!(parsed.len(), 1);
    parsed[0].data.clone()
}

#[tokio::test]
async fn last_event_id_from_header_and_query_and_malformed_values() {
    let server = echo_id_server(SseLayer::new()).await;
    let thai = "ก๊าซ-42".as_bytes();
    let long = "7".repeat(2000);
    let cases: Vec<(&str, Option<&[u8]>, &str)> = vec![
        ("/e", None, "<none>"),
        ("/e", Some(b"42"), "[42]"),
        ("/e", Some(thai), "[ก๊าซ-42]"),
        ("/e?lastEventId=9", None, "[9]"),
        ("/e?lastEventId=%E0%B8%81%20x", None, "[ก x]"),
        ("/e?lastEventId=9", Some(b"10"), "[10]"),
        ("/e", Some(b"\xff\xfe"), "<none>"),
        ("/e", Some(long.as_bytes()), "<none>"),
        ("/e?lastEventId=%FF", None, "<none>"),
        ("/e?lastEventId=%", None, "[%]"),
        ("/e?lastEventId=5", Some(b"\xc3"), "[5]"),
    ];
    for http2 in [false, true] {
        for (uri, header, expected) in &cases {
            let mut request = get(uri);
            if let Some(value) = header {
                request = request.header(
                    "last-event-id",
                    http::HeaderValue::from_bytes(value).unwrap(),
                );
            }
            let got = echoed(&server, request.body(empty()).unwrap(), http2).await;
            assert_eq!(&got, expected, "{uri} {header:?} http2={http2}");
        }
    }

    let renamed = echo_id_server(SseLayer::new().last_event_id_query("since")).await;
    assert_eq!(
        echoed(&renamed, get("/e?since=3").body(empty()).unwrap(), false).await,
        "[3]"
    );
    assert_eq!(
        echoed(
            &renamed,
            get("/e?lastEventId=3").body(empty()).unwrap(),
            false
        )
        .await,
        "<none>"
    );
    let header_only = echo_id_server(SseLayer::new().no_last_event_id_query()).await;
    assert_eq!(
        echoed(
            &header_only,
            get("/e?lastEventId=3").body(empty()).unwrap(),
            false
        )
        .await,
        "<none>"
    );
}

#[tokio::test]
async fn every_id_the_builder_accepts_comes_back_as_the_last_event_id() {
    use tower_sse::EventError;

    let longest = "7".repeat(LastEventId::MAX_LEN);
    let event = Event::builder().id(&longest).data("x").build().unwrap();
    let server = fixed_server(SseLayer::new(), vec![event]).await;
    let response = h1_connect(server.addr)
        .await
        .send(get("/").body(empty()).unwrap())
        .await;
    let held = within(
        "the event and the end",
        events(response).collect::<Vec<_>>(),
    )
    .await[0]
        .id
        .clone();
    assert_eq!(held, longest, "the client holds the id");

    // It reconnects with it, over HTTP/1.1 and HTTP/2: the layer reads it back.
    let echo = echo_id_server(SseLayer::new()).await;
    for http2 in [false, true] {
        let request = get("/").header("last-event-id", held.as_str());
        let got = echoed(&echo, request.body(empty()).unwrap(), http2).await;
        assert_eq!(got, format!("[{longest}]"), "http2={http2}");
    }

    // One byte more would be ignored when it came back: the builder refuses it.
    let longer = "7".repeat(LastEventId::MAX_LEN + 1);
    let refused = Event::builder().id(&longer).data("x").build();
    assert!(
        matches!(refused, Err(EventError::IdTooLong)),
        "a 1,025-byte id: {:?}",
        refused.map(|_| "built")
    );
}

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

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
}

/// Sends `count` requests with a malformed last event id (in the header or the query,
/// not UTF-8 or too long) over one connection, while `level` and above are written to
/// what it returns. (A current-thread runtime: the server's tasks run on this thread,
/// under this thread's subscriber.)
async fn log_of_malformed_requests(level: tracing::Level, count: usize) -> Vec<String> {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let server = echo_id_server(SseLayer::new()).await;
    let mut client = h1_connect(server.addr).await;
    let too_long = "7".repeat(LastEventId::MAX_LEN + 1);
    for n in 0..count {
        let request = match n % 3 {
            0 => get("/e").header(
                "last-event-id",
                http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
            ),
            1 => get("/e").header("last-event-id", too_long.as_str()),
            _ => get("/e?lastEventId=%FF"),
        };
        let response = client.send(request.body(empty()).unwrap()).await;
        let parsed: Vec<_> =
            within("the echoed event and the end", events(response).collect()).await;
        assert_eq!(parsed[0].data, "<none>");
    }
    captured.lines()
}

#[tokio::test]
async fn malformed_last_event_ids_write_no_line_at_info_level() {
    let lines = log_of_malformed_requests(tracing::Level::INFO, 1000).await;
    assert!(
        lines.is_empty(),
        "1,000 malformed requests wrote {} lines at INFO and above, such as {:?}",
        lines.len(),
        lines.first()
    );
    // At debug level each is traced: the capture does see the layer's lines.
    let lines = log_of_malformed_requests(tracing::Level::DEBUG, 30).await;
    let malformed = lines.iter().filter(|l| l.contains("malformed")).count();
    assert_eq!(malformed, 30, "{lines:#?}");
}

#[tokio::test]
async fn sse_alone_serves_one_stream_with_its_headers() {
    // Without the layer: the headers of an event stream, one frame per event, and no
    // connection header (the layer adds it for HTTP/1.x only).
    let service = service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Sse::new(stream::iter(numbered(5))).into_response())
    });
    let server = serve(service).await;
    for http2 in [false, true] {
        let response = if http2 {
            h2_connect(server.addr)
                .await
                .send(get("/").body(empty()).unwrap())
                .await
        } else {
            h1_connect(server.addr)
                .await
                .send(get("/").body(empty()).unwrap())
                .await
        };
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["cache-control"], "no-cache, no-transform");
        assert_eq!(headers["content-encoding"], "identity");
        assert!(!headers.contains_key("connection"));
        let ids: Vec<_> = within(
            "the 5 events and the end",
            events(response).map(|e| e.id).collect(),
        )
        .await;
        assert_eq!(ids, ["0", "1", "2", "3", "4"]);
    }
}

#[tokio::test]
async fn other_responses_pass_through_untouched() {
    // One layer over a whole "router": a page, a JSON answer to a POST, an error and a
    // refusal go through as they are; only the event stream is wrapped.
    let (layer, mut reports) = reporting(SseLayer::new().retry(Duration::from_secs(1)));
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        |request: Request<Incoming>| async move {
            let response = match request.uri().path() {
                "/page" => {
                    let mut response = Response::new(Full::new(Bytes::from("<h1>hi</h1>")));
                    response
                        .headers_mut()
                        .insert("content-type", "text/html".parse().unwrap());
                    response
                }
                "/publish" => {
                    let mut response = Response::new(Full::new(Bytes::from("{\"id\":7}")));
                    *response.status_mut() = StatusCode::CREATED;
                    response
                }
                "/missing" => {
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                }
                "/later" => Refusal::reconnect_after(Duration::from_secs(3)).into_response(),
                _ => {
                    let (parts, _) = Sse::new(stream::iter(numbered(2)))
                        .into_response()
                        .into_parts();
                    let mut bytes = Vec::new();
                    for event in numbered(2) {
                        bytes.extend_from_slice(event.as_bytes());
                    }
                    Response::from_parts(parts, Full::new(Bytes::from(bytes)))
                }
            };
            Ok::<_, Infallible>(response)
        },
    ));
    let server = serve(service).await;
    let mut client = h1_connect(server.addr).await;

    let response = client.send(get("/page").body(empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/html");
    for name in [
        "connection",
        "cache-control",
        "x-accel-buffering",
        "content-encoding",
    ] {
        assert!(!response.headers().contains_key(name), "{name} on a page");
    }
    let body = within("the page", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(text(&body), "<h1>hi</h1>");

    let request = Request::post("/publish").body(empty()).unwrap();
    let response = client.send(request).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "a POST that is no stream is not 405"
    );
    let body = within("the answer to the POST", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(text(&body), "{\"id\":7}");

    let response = client.send(get("/missing").body(empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    within("the body of the 404", response.into_body().collect())
        .await
        .unwrap();

    // A refusal that is an event stream is not wrapped: no prelude, no report.
    let response = client.send(get("/later").body(empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = within("the refusal", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(text(&body), ": come back later\nretry: 3000\n\n");

    // A body made by hand, with the content type of an event stream, is wrapped: the
    // prelude goes first and its frame is reported.
    let response = client.send(get("/events").body(empty()).unwrap()).await;
    assert_eq!(response.headers()["connection"], "keep-alive");
    let body = within("the stream made by hand", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert!(text(&body).starts_with("retry: 1000\n\nid: 0\n"));
    let report = within("the end report", reports.recv()).await.unwrap();
    assert_eq!((report.reason, report.events), (EndReason::Finished, 1));
    assert!(reports.try_recv().is_err(), "only the stream was reported");
}

/// The body of the layer's response to one request, for tests that poll it directly.
async fn layered<S, F>(layer: SseLayer, events: F) -> tower_sse::layer::ResponseBody<Sse<S>>
where
    S: futures_util::Stream<Item = Event>,
    F: Fn() -> S,
{
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: Request<()>| {
            let response = Sse::new(events()).into_response();
            async move { Ok::<_, Infallible>(response) }
        }));
    service
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap()
        .into_body()
}

#[tokio::test]
async fn an_outer_layer_passes_through_a_stream_an_inner_layer_serves() {
    // A router-wide layer around a route that has its own: the route's settings win,
    // and the stream is served once (one prelude, one report).
    let (inner, mut inner_reports) = reporting(SseLayer::new().retry(Duration::from_secs(1)));
    let (outer, mut outer_reports) = reporting(SseLayer::new().retry(Duration::from_secs(9)));
    let service = ServiceBuilder::new()
        .layer(outer)
        .layer(inner)
        .service(service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Sse::new(stream::iter(numbered(2))).into_response())
        }));
    let server = serve(service).await;
    let response = h1_connect(server.addr)
        .await
        .send(get("/").body(empty()).unwrap())
        .await;
    let body = within("the whole stream", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert!(
        text(&body).starts_with("retry: 1000\n\nid: 0\n"),
        "{}",
        text(&body)
    );
    assert_eq!(text(&body).matches("retry:").count(), 1);
    let report = within("the inner layer's end report", inner_reports.recv())
        .await
        .unwrap();
    assert_eq!((report.reason, report.events), (EndReason::Finished, 2));
    assert!(
        outer_reports.try_recv().is_err(),
        "the outer layer reported nothing"
    );
}

//! Write batching (`SseLayer::batch_delay`) and stalled streams (`stall_timeout`).
//!
//! The delays are checked on the layer's response body read in memory, with tokio's
//! clock paused so that every delay is exact: the paused clock runs ahead whenever the
//! runtime waits, so over a socket it would reach a tick while a frame is still in
//! flight. Over real HTTP/1.1 and HTTP/2 connections, in real time, the tests check
//! what arrives and in how many frames, never how long it took.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::*;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_sse::layer::ResponseBody;
use tower_sse::{EndReason, Event, Sse, SseLayer, StreamEnd, StreamLimit};

const DELAY: Duration = Duration::from_millis(20);

type Senders = mpsc::UnboundedReceiver<mpsc::UnboundedSender<Event>>;
type Reports = mpsc::UnboundedReceiver<(EndReason, u64)>;

/// A server whose every stream is fed by a channel the test holds; `reports` gets each
/// stream's end and the events it wrote.
async fn channel_server(layer: SseLayer) -> (TestServer, Senders, Reports) {
    let (senders_tx, senders) = mpsc::unbounded_channel();
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let layer = layer.on_end(move |end: &StreamEnd| {
        let _ = reports_tx.send((end.reason, end.events));
    });
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(move |_: Request<Incoming>| {
                let (tx, rx) = mpsc::unbounded_channel();
                senders_tx.send(tx).unwrap();
                let events = Sse::new(UnboundedReceiverStream::new(rx));
                async move { Ok::<_, Infallible>(events.into_response()) }
            }));
    (serve(service).await, senders, reports)
}

fn numbered(n: usize) -> Event {
    Event::builder()
        .id(&n.to_string())
        .data(&format!("event {n}"))
        .build()
        .unwrap()
}

fn frame_of(events: &[Event]) -> Bytes {
    let mut bytes = Vec::new();
    for event in events {
        bytes.extend_from_slice(event.as_bytes());
    }
    Bytes::from(bytes)
}

/// A stream of `layer` read in memory: its body, the sender that feeds it, and the
/// reports of its end (with the events it wrote).
type Layered = ResponseBody<Sse<UnboundedReceiverStream<Event>>>;

async fn layered(layer: SseLayer) -> (Layered, mpsc::UnboundedSender<Event>, Reports) {
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let layer = layer.on_end(move |end: &StreamEnd| {
        let _ = reports_tx.send((end.reason, end.events));
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let mut rx = Some(rx);
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |_: Request<()>| {
            let events = Sse::new(UnboundedReceiverStream::new(rx.take().unwrap()));
            async move { Ok::<_, Infallible>(events.into_response()) }
        }));
    let response = service
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    (response.into_body(), tx, reports)
}

/// The next data frame of a body read in memory, or `None` at its end.
async fn next_frame(body: &mut Layered) -> Option<Bytes> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            return Some(data);
        }
    }
    None
}

/// Opens a stream over HTTP/1.1 or HTTP/2 and gives its body and its sender.
async fn open(
    server: &TestServer,
    senders: &mut Senders,
    http2: bool,
) -> (
    Incoming,
    mpsc::UnboundedSender<Event>,
    Box<dyn std::any::Any>,
) {
    let request = get("/events").body(empty()).unwrap();
    let (response, client): (_, Box<dyn std::any::Any>) = if http2 {
        let mut client = h2_connect(server.addr).await;
        (client.send(request).await, Box::new(client))
    } else {
        let mut client = h1_connect(server.addr).await;
        (client.send(request).await, Box::new(client))
    };
    let sender = senders.recv().await.unwrap();
    (response.into_body(), sender, client)
}

/// Reads `body` as a connection would, in a task of its own: each data frame with the
/// instant it came, until the body ends. Aborting the task drops the body.
fn reading(mut body: Layered) -> (Frames, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(data) = next_frame(&mut body).await {
            if tx.send((Instant::now(), data)).is_err() {
                return;
            }
        }
    });
    (rx, task)
}

type Frames = mpsc::UnboundedReceiver<(Instant, Bytes)>;

/// The next frame `reading` saw, and when; fails with `what` if none comes within the
/// deadline or the body ended.
async fn arrival(frames: &mut Frames, what: &str) -> (Instant, Bytes) {
    within(what, frames.recv())
        .await
        .unwrap_or_else(|| panic!("the body ended before {what}"))
}

#[tokio::test(start_paused = true)]
async fn events_inside_the_delay_arrive_in_one_frame_in_order() {
    let (body, sender, _reports) = layered(SseLayer::new().batch_delay(DELAY)).await;
    let (mut frames, _reader) = reading(body);
    let first_at = Instant::now();
    let events: Vec<Event> = (0..4).map(numbered).collect();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        sender.send(event.clone()).unwrap();
    }
    let (arrived, frame) = arrival(&mut frames, "the batched frame").await;
    assert_eq!(frame, frame_of(&events));
    assert!(
        arrived - first_at <= DELAY,
        "waited {:?}",
        arrived - first_at
    );
}

/// Over real connections, in real time: events sent together arrive once each, in
/// order, over HTTP/1.1 and HTTP/2.
#[tokio::test]
async fn batched_events_arrive_in_order_over_http1_and_http2() {
    let (server, mut senders, _reports) = channel_server(SseLayer::new().batch_delay(DELAY)).await;
    for http2 in [false, true] {
        let (mut body, sender, _client) = within(
            &format!("the response (http2={http2})"),
            open(&server, &mut senders, http2),
        )
        .await;
        let events: Vec<Event> = (0..4).map(numbered).collect();
        for event in &events {
            sender.send(event.clone()).unwrap();
        }
        let expected = frame_of(&events);
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let what = format!("the events (http2={http2}, {} bytes so far)", got.len());
            let frame = within(&what, next_data(&mut body)).await;
            got.extend_from_slice(&frame.unwrap_or_else(|| panic!("the body ended: {what}")));
        }
        assert_eq!(Bytes::from(got), expected, "http2={http2}");
    }
}

#[tokio::test(start_paused = true)]
async fn no_event_waits_longer_than_the_delay() {
    let (body, sender, _reports) = layered(SseLayer::new().batch_delay(DELAY)).await;
    let (mut frames, _reader) = reading(body);
    // Events at uneven times, some alone, some in groups: each arrives at most one
    // delay after it was sent, and everything arrives once, in order.
    let gaps_ms = [0, 1, 3, 25, 2, 60, 19, 21, 0, 0, 7, 40];
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
    let sending = tokio::spawn(async move {
        for (n, gap) in gaps_ms.into_iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(gap)).await;
            sent_tx.send(Instant::now()).unwrap();
            sender.send(numbered(n)).unwrap();
        }
        sender
    });
    let mut received = Vec::new();
    let mut count = 0;
    while received.len() < gaps_ms.len() {
        let what = format!("event {}", received.len());
        let (arrived, frame) = arrival(&mut frames, &what).await;
        count += 1;
        let mut events = parse(&frame).await;
        for _ in &events {
            let sent = within("the instant the event was sent", sent_rx.recv())
                .await
                .unwrap();
            assert!(
                arrived - sent <= DELAY,
                "an event waited {:?}",
                arrived - sent
            );
        }
        received.append(&mut events);
    }
    let expected: Vec<String> = (0..gaps_ms.len()).map(|n| format!("event {n}")).collect();
    assert_eq!(received, expected);
    assert!(
        count < gaps_ms.len(),
        "{count} frames: some events were batched"
    );
    drop(within("the sender task", sending).await.unwrap());
}

/// The data of each event in a frame, read by the independent parser.
async fn parse(frame: &Bytes) -> Vec<String> {
    use eventsource_stream::Eventsource;
    let stream = futures_util::stream::iter([Ok::<_, Infallible>(frame.clone())]).eventsource();
    stream.map(|e| e.unwrap().data).collect().await
}

#[tokio::test(start_paused = true)]
async fn zero_is_off_and_each_event_is_written_at_once() {
    let (body, sender, _reports) = layered(SseLayer::new().batch_delay(Duration::ZERO)).await;
    let (mut frames, _reader) = reading(body);
    let start = Instant::now();
    for n in 0..3 {
        sender.send(numbered(n)).unwrap();
        let (arrived, frame) = arrival(&mut frames, &format!("event {n}")).await;
        assert_eq!(frame, frame_of(&[numbered(n)]));
        assert_eq!(arrived, start);
    }
}

#[test]
#[should_panic(expected = "longer than the most a frame may wait")]
fn a_delay_over_one_second_is_refused_when_the_layer_is_built() {
    let _ = SseLayer::new().batch_delay(Duration::from_millis(1001));
}

#[tokio::test(start_paused = true)]
async fn heartbeats_and_the_prelude_are_as_without_batching() {
    let layer = SseLayer::new()
        .batch_delay(Duration::from_millis(50))
        .retry(Duration::from_secs(3))
        .heartbeat(Duration::from_secs(5));
    let (body, sender, _reports) = layered(layer).await;
    let start = Instant::now();
    let (mut frames, _reader) = reading(body);
    let (arrived, prelude) = arrival(&mut frames, "the prelude").await;
    assert_eq!(prelude, "retry: 3000\n\n");
    assert_eq!(arrived, start, "the prelude does not wait");
    let (arrived, beat) = arrival(&mut frames, "the first heartbeat").await;
    assert_eq!(beat, ":\n\n");
    assert_eq!(arrived - start, Duration::from_secs(5));
    sender.send(numbered(1)).unwrap();
    let (wrote, event) = arrival(&mut frames, "the event").await;
    assert_eq!(event, frame_of(&[numbered(1)]));
    assert!(wrote - start <= Duration::from_millis(5_050));
    // The next heartbeat is due a full interval after that write, rounded up to the
    // layer's heartbeat slots (every sixteenth of the interval from the layer's start).
    let (arrived, beat) = arrival(&mut frames, "the heartbeat after the event").await;
    assert_eq!(beat, ":\n\n");
    // (tokio's timer fires on whole milliseconds).
    let slot = Duration::from_secs(5) / 16;
    let after = arrived - wrote;
    assert!(after >= Duration::from_secs(5), "{after:?}");
    assert!(
        after <= Duration::from_secs(5) + slot + Duration::from_millis(1),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_the_end_of_the_stream_write_what_is_held_first() {
    let shutdown = CancellationToken::new();
    let bye = Event::builder().event("bye").data("").build().unwrap();
    let layer = SseLayer::new()
        .batch_delay(Duration::from_millis(500))
        .graceful_shutdown(shutdown.clone())
        .shutdown_event(bye.clone());

    // Shutdown while an event is held: the event, then the shutdown event, then the end.
    let (body, sender, mut reports) = layered(layer).await;
    let (mut frames, reader) = reading(body);
    sender.send(numbered(1)).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(frames.try_recv().is_err(), "the event waits for the tick");
    shutdown.cancel();
    within("the end of the body", reader).await.unwrap();
    let mut rest = Vec::new();
    while let Ok((_, frame)) = frames.try_recv() {
        rest.extend_from_slice(&frame);
    }
    assert_eq!(Bytes::from(rest), frame_of(&[numbered(1), bye]));
    let report = within("the end report", reports.recv()).await;
    assert_eq!(report.unwrap(), (EndReason::Shutdown, 1));

    // A stream that ends while an event is held writes it, then ends.
    let (body, sender, mut reports) =
        layered(SseLayer::new().batch_delay(Duration::from_millis(500))).await;
    sender.send(numbered(2)).unwrap();
    sender.send(numbered(3)).unwrap();
    drop(sender);
    let rest = within("the end of the body", body.collect()).await;
    assert_eq!(
        rest.unwrap().to_bytes(),
        frame_of(&[numbered(2), numbered(3)])
    );
    let report = within("the end report", reports.recv()).await;
    assert_eq!(report.unwrap(), (EndReason::Finished, 2));
}

#[tokio::test(start_paused = true)]
async fn a_client_gone_while_events_wait_is_reported_with_what_was_written() {
    let (body, sender, mut reports) =
        layered(SseLayer::new().batch_delay(Duration::from_millis(200))).await;
    let (mut frames, reader) = reading(body);
    sender.send(numbered(1)).unwrap();
    let (_, frame) = arrival(&mut frames, "the first event").await;
    assert_eq!(frame, frame_of(&[numbered(1)]));
    // Two more wait for the tick when the connection lets go of the body.
    sender.send(numbered(2)).unwrap();
    sender.send(numbered(3)).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(frames.try_recv().is_err(), "the events wait for the tick");
    reader.abort();
    let report = within("the end report", reports.recv()).await;
    assert_eq!(report.unwrap(), (EndReason::ClientGone, 1));
}

#[tokio::test(start_paused = true)]
async fn a_burst_larger_than_a_frame_goes_out_without_waiting_again() {
    let layer = SseLayer::new().batch_delay(DELAY).max_frame_size(64);
    let (body, sender, _reports) = layered(layer).await;
    let (mut frames, _reader) = reading(body);
    let events: Vec<Event> = (0..10).map(numbered).collect();
    let start = Instant::now();
    for event in &events {
        sender.send(event.clone()).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < frame_of(&events).len() {
        let (arrived, frame) = arrival(&mut frames, &format!("byte {}", got.len())).await;
        assert!(frame.len() <= 64 || frame.len() == events[0].as_bytes().len());
        assert!(
            arrived - start <= DELAY,
            "the rest of the burst waited: {:?}",
            arrived - start
        );
        got.extend_from_slice(&frame);
    }
    assert_eq!(Bytes::from(got), frame_of(&events));
}

// ---- stalled streams ----

/// The next frame that is not a heartbeat.
async fn next_event(body: &mut Incoming) -> Bytes {
    loop {
        let frame = next_data(body).await.unwrap();
        if frame != ":\n\n" {
            return frame;
        }
    }
}

// In real time: tokio's paused clock runs ahead while frames cross the loopback
// socket, which would make the stuck streams' age depend on the test's own pace. The
// timeout is long enough that setting up the streams never comes near it, and nothing
// below asserts a duration.
#[tokio::test]
async fn http2_streams_given_no_window_are_reported_stalled_and_hold_their_place_until_reset() {
    let heartbeat = Duration::from_secs(1);
    let limit = StreamLimit::new(10);
    let layer = SseLayer::new()
        .heartbeat(heartbeat)
        .stall_timeout(3 * heartbeat)
        .limit(limit.clone());
    let (server, mut senders, mut reports) = channel_server(layer).await;

    // A healthy client alongside, on its own connection.
    let (mut healthy, healthy_sender, _healthy_client) =
        within("the healthy stream", open(&server, &mut senders, true)).await;

    // Nine streams on one connection that never opens its window: the cap is full.
    let mut stuck = ZeroWindow::connect(server.addr).await;
    let mut stuck_bodies = Vec::new();
    let mut stuck_senders = Vec::new();
    for n in 0..9 {
        let response = within(&format!("stuck stream {n}"), stuck.get("/events")).await;
        assert_eq!(response.status(), 200);
        stuck_bodies.push(response.into_body());
        let sender = within(&format!("stuck stream {n}'s sender"), senders.recv()).await;
        stuck_senders.push(sender.unwrap());
    }
    assert_eq!(limit.open_streams(), 10);
    let refused = within("the refusal", async {
        h1_connect(server.addr)
            .await
            .send(get("/events").body(empty()).unwrap())
            .await
    })
    .await;
    assert_eq!(refused.status(), 503);

    // Events flow: the healthy client takes each one; the stuck streams cannot.
    for n in 0..5 {
        for sender in &stuck_senders {
            sender.send(numbered(n)).unwrap();
        }
        healthy_sender.send(numbered(n)).unwrap();
        let event = within(&format!("healthy event {n}"), next_event(&mut healthy)).await;
        assert_eq!(event, frame_of(&[numbered(n)]));
    }

    // The stuck streams are found: each reported once, as stalled; the healthy one
    // untouched.
    for _ in 0..9 {
        let (reason, _) = timeout(Duration::from_secs(60), reports.recv())
            .await
            .expect("the stuck streams are found")
            .unwrap();
        assert_eq!(reason, EndReason::Stalled);
    }
    // The connection does not poll them, so they cannot end: they still hold their
    // stream state and events on the connection, and so their places.
    assert_eq!(limit.open_streams(), 10);
    let still_full = within("the second refusal", async {
        h1_connect(server.addr)
            .await
            .send(get("/events").body(empty()).unwrap())
            .await
    })
    .await;
    assert_eq!(still_full.status(), 503, "a stalled stream keeps its place");
    healthy_sender.send(numbered(99)).unwrap();
    let event = within("healthy event 99", next_event(&mut healthy)).await;
    assert_eq!(event, frame_of(&[numbered(99)]));

    // Once the client opens the window, the connection polls the stuck streams again,
    // and each is reset, alone: its body ends with an error, the connection serves on,
    // and the places come back.
    stuck.open_window();
    for mut body in stuck_bodies {
        let end = timeout(Duration::from_secs(30), async {
            loop {
                match body.data().await {
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return Some(error),
                    None => return None,
                }
            }
        })
        .await
        .expect("the stream ends");
        let error = end.expect("the stream was reset, not ended cleanly");
        assert!(error.is_reset(), "{error}");
    }
    timeout(Duration::from_secs(30), async {
        while limit.open_streams() > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the reset streams give their places back");
    let again = within("a new stream on the reset connection", stuck.get("/events")).await;
    assert_eq!(
        again.status(),
        200,
        "the connection still serves new streams"
    );
    assert!(reports.try_recv().is_err(), "each stream was reported once");
    drop(stuck_senders);
}

//! Write batching (`SseLayer::batch_delay`) and stalled streams (`stall_timeout`) over
//! real connections, with tokio's clock paused so that every delay is exact.

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
use tower::{ServiceBuilder, service_fn};
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

#[tokio::test(start_paused = true)]
async fn events_inside_the_delay_arrive_in_one_frame_in_order() {
    let (server, mut senders, _reports) = channel_server(SseLayer::new().batch_delay(DELAY)).await;
    for http2 in [false, true] {
        let (mut body, sender, _client) = open(&server, &mut senders, http2).await;
        let first_at = Instant::now();
        let events: Vec<Event> = (0..4).map(numbered).collect();
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            sender.send(event.clone()).unwrap();
        }
        let frame = next_data(&mut body).await.unwrap();
        assert_eq!(frame, frame_of(&events), "http2={http2}");
        assert!(
            first_at.elapsed() <= DELAY,
            "waited {:?}",
            first_at.elapsed()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn no_event_waits_longer_than_the_delay() {
    let (server, mut senders, _reports) = channel_server(SseLayer::new().batch_delay(DELAY)).await;
    let (mut body, sender, _client) = open(&server, &mut senders, false).await;
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
    let mut frames = 0;
    while received.len() < gaps_ms.len() {
        let frame = next_data(&mut body).await.unwrap();
        let arrived = Instant::now();
        frames += 1;
        let mut events = parse(&frame).await;
        for _ in &events {
            let sent = sent_rx.recv().await.unwrap();
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
        frames < gaps_ms.len(),
        "{frames} frames: some events were batched"
    );
    drop(sending.await.unwrap());
}

/// The data of each event in a frame, read by the independent parser.
async fn parse(frame: &Bytes) -> Vec<String> {
    use eventsource_stream::Eventsource;
    let stream = futures_util::stream::iter([Ok::<_, Infallible>(frame.clone())]).eventsource();
    stream.map(|e| e.unwrap().data).collect().await
}

#[tokio::test(start_paused = true)]
async fn zero_is_off_and_each_event_is_written_at_once() {
    let (server, mut senders, _reports) =
        channel_server(SseLayer::new().batch_delay(Duration::ZERO)).await;
    let (mut body, sender, _client) = open(&server, &mut senders, false).await;
    let start = Instant::now();
    for n in 0..3 {
        sender.send(numbered(n)).unwrap();
        assert_eq!(
            next_data(&mut body).await.unwrap(),
            frame_of(&[numbered(n)])
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
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
        .heartbeat(Duration::from_secs(10));
    let (server, mut senders, _reports) = channel_server(layer).await;
    let (mut body, sender, _client) = open(&server, &mut senders, false).await;
    let start = Instant::now();
    assert_eq!(next_data(&mut body).await.unwrap(), "retry: 3000\n\n");
    assert_eq!(start.elapsed(), Duration::ZERO, "the prelude does not wait");
    assert_eq!(next_data(&mut body).await.unwrap(), ":\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    sender.send(numbered(1)).unwrap();
    assert_eq!(
        next_data(&mut body).await.unwrap(),
        frame_of(&[numbered(1)])
    );
    assert!(start.elapsed() <= Duration::from_millis(10_050));
    // The next heartbeat is due a full interval after that write.
    let wrote = Instant::now();
    assert_eq!(next_data(&mut body).await.unwrap(), ":\n\n");
    assert_eq!(wrote.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_the_end_of_the_stream_write_what_is_held_first() {
    let shutdown = CancellationToken::new();
    let bye = Event::builder().event("bye").data("").build().unwrap();
    let layer = SseLayer::new()
        .batch_delay(Duration::from_millis(500))
        .graceful_shutdown(shutdown.clone())
        .shutdown_event(bye.clone());
    let (server, mut senders, mut reports) = channel_server(layer).await;

    // Shutdown while an event is held: the event, then the shutdown event, then the end.
    let (body, sender, _client) = open(&server, &mut senders, false).await;
    sender.send(numbered(1)).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    let rest = timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, frame_of(&[numbered(1), bye]));
    assert_eq!(reports.recv().await.unwrap(), (EndReason::Shutdown, 1));

    // A stream that ends while an event is held writes it, then ends.
    let (server, mut senders, mut reports) =
        channel_server(SseLayer::new().batch_delay(Duration::from_millis(500))).await;
    let (body, sender, _client) = open(&server, &mut senders, true).await;
    sender.send(numbered(2)).unwrap();
    sender.send(numbered(3)).unwrap();
    drop(sender);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, frame_of(&[numbered(2), numbered(3)]));
    assert_eq!(reports.recv().await.unwrap(), (EndReason::Finished, 2));
}

#[tokio::test(start_paused = true)]
async fn a_client_gone_while_events_wait_is_reported_with_what_was_written() {
    let (server, mut senders, mut reports) =
        channel_server(SseLayer::new().batch_delay(Duration::from_millis(200))).await;
    let mut client = h1_connect(server.addr).await;
    let mut body = client
        .send(get("/events").body(empty()).unwrap())
        .await
        .into_body();
    let sender = senders.recv().await.unwrap();
    sender.send(numbered(1)).unwrap();
    assert_eq!(
        next_data(&mut body).await.unwrap(),
        frame_of(&[numbered(1)])
    );
    // Two more wait for the tick when the client goes away.
    sender.send(numbered(2)).unwrap();
    sender.send(numbered(3)).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(body);
    client.close();
    let report = timeout(Duration::from_secs(5), reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report, (EndReason::ClientGone, 1));
}

#[tokio::test(start_paused = true)]
async fn a_burst_larger_than_a_frame_goes_out_without_waiting_again() {
    let layer = SseLayer::new().batch_delay(DELAY).max_frame_size(64);
    let (server, mut senders, _reports) = channel_server(layer).await;
    let (mut body, sender, _client) = open(&server, &mut senders, false).await;
    let events: Vec<Event> = (0..10).map(numbered).collect();
    let start = Instant::now();
    for event in &events {
        sender.send(event.clone()).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < frame_of(&events).len() {
        let frame = next_data(&mut body).await.unwrap();
        assert!(frame.len() <= 64 || frame.len() == events[0].as_bytes().len());
        got.extend_from_slice(&frame);
    }
    assert_eq!(Bytes::from(got), frame_of(&events));
    assert!(
        start.elapsed() <= DELAY,
        "the rest of the burst waited: {:?}",
        start.elapsed()
    );
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
    let (mut healthy, healthy_sender, _healthy_client) = open(&server, &mut senders, true).await;

    // Nine streams on one connection that never opens its window: the cap is full.
    let mut stuck = ZeroWindow::connect(server.addr).await;
    let mut stuck_bodies = Vec::new();
    let mut stuck_senders = Vec::new();
    for _ in 0..9 {
        let response = stuck.get("/events").await;
        assert_eq!(response.status(), 200);
        stuck_bodies.push(response.into_body());
        stuck_senders.push(senders.recv().await.unwrap());
    }
    assert_eq!(limit.open_streams(), 10);
    let refused = h1_connect(server.addr)
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    assert_eq!(refused.status(), 503);

    // Events flow: the healthy client takes each one; the stuck streams cannot.
    for n in 0..5 {
        for sender in &stuck_senders {
            sender.send(numbered(n)).unwrap();
        }
        healthy_sender.send(numbered(n)).unwrap();
        assert_eq!(next_event(&mut healthy).await, frame_of(&[numbered(n)]));
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
    let still_full = h1_connect(server.addr)
        .await
        .send(get("/events").body(empty()).unwrap())
        .await;
    assert_eq!(still_full.status(), 503, "a stalled stream keeps its place");
    healthy_sender.send(numbered(99)).unwrap();
    assert_eq!(next_event(&mut healthy).await, frame_of(&[numbered(99)]));

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
    let again = stuck.get("/events").await;
    assert_eq!(
        again.status(),
        200,
        "the connection still serves new streams"
    );
    assert!(reports.try_recv().is_err(), "each stream was reported once");
    drop(stuck_senders);
}

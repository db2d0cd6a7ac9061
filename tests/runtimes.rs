//! One `SseLayer` value used by one tokio runtime, then by another (as tests do, each
//! `#[tokio::test]` having its own runtime, or a program that builds its layer once):
//! the background tasks the layer starts on the first runtime, the batching clock and
//! the stall sweep, are dropped with it in the middle of their run, and the second
//! runtime still gets its batched events written and its stalled streams found.
//!
//! Each runtime runs with tokio's clock paused: no socket is involved, the body is
//! polled directly.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_sse::layer::ResponseBody;
use tower_sse::{EndReason, Event, Sse, SseLayer, StreamEnd};

type Body = ResponseBody<Sse<UnboundedReceiverStream<Event>>>;

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// A stream under `layer` fed by the returned sender, and its body.
async fn open(layer: &SseLayer) -> (mpsc::UnboundedSender<Event>, Body) {
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = std::sync::Mutex::new(Some(rx));
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(move |_: Request<()>| {
            let events = UnboundedReceiverStream::new(rx.lock().unwrap().take().unwrap());
            async move { Ok::<_, Infallible>(Sse::new(events).into_response()) }
        }));
    let body = service
        .oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap()
        .into_body();
    (tx, body)
}

/// Polls `body` once, with a waker that does nothing.
fn poll_once(body: &mut Body) -> Option<Bytes> {
    use futures_util::FutureExt;
    body.frame()
        .now_or_never()
        .map(|frame| frame.unwrap().unwrap().into_data().unwrap())
}

/// The layer of these tests, reporting each stream's end on `ends`.
fn layer() -> (SseLayer, mpsc::UnboundedReceiver<EndReason>) {
    let (ends_tx, ends) = mpsc::unbounded_channel();
    let layer = SseLayer::new()
        .heartbeat(Duration::from_secs(1))
        .stall_timeout(Duration::from_secs(3))
        .batch_delay(Duration::from_millis(20))
        .on_end(move |end: &StreamEnd| {
            let _ = ends_tx.send(end.reason);
        });
    (layer, ends)
}

/// The first runtime: a stream takes an event and waits for the batching clock's tick,
/// so the clock runs; the stream is watched, so the sweep runs. Then the runtime goes,
/// with both tasks waiting for their next tick.
fn use_and_drop_a_runtime(layer: &SseLayer, ends: &mut mpsc::UnboundedReceiver<EndReason>) {
    let first = paused_runtime();
    first.block_on(async {
        let (tx, mut body) = open(layer).await;
        tx.send(Event::data("held")).unwrap();
        assert_eq!(poll_once(&mut body), None, "the event waits for the tick");
    });
    drop(first);
    assert_eq!(ends.try_recv(), Ok(EndReason::ClientGone));
}

#[test]
fn batched_events_are_written_after_the_runtime_that_ran_the_clock_is_gone() {
    let (layer, mut ends) = layer();
    use_and_drop_a_runtime(&layer, &mut ends);
    paused_runtime().block_on(async {
        let (tx, mut body) = open(&layer).await;
        for n in 0..3 {
            tx.send(Event::data(&n.to_string())).unwrap();
        }
        let frame = timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("hang guard: batched events were never written (no clock ticks)")
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(frame, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
    });
}

#[test]
fn stalled_streams_are_found_after_the_runtime_that_ran_the_sweep_is_gone() {
    let (layer, mut ends) = layer();
    use_and_drop_a_runtime(&layer, &mut ends);
    paused_runtime().block_on(async {
        // A stream the connection polls once, then never again.
        let (_tx, mut stuck) = open(&layer).await;
        assert_eq!(poll_once(&mut stuck), None);
        let reason = timeout(Duration::from_secs(60), ends.recv())
            .await
            .expect("hang guard: the stalled stream was never found (no sweep runs)");
        assert_eq!(reason, Some(EndReason::Stalled));
    });
}

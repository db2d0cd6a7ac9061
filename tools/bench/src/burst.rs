//! Burst: N ready events streamed to one loopback HTTP/1.1 client, each stack served as
//! its users serve it: `tower-sse` (`SseLayer::new()` over `Sse::new(stream)` of
//! `Event::builder().id(n).data(PAYLOAD).build()`, by `tower_sse::serve`), `axum`
//! (`Sse::new(..).keep_alive(KeepAlive::default())`, by `axum::serve`), `warp`
//! (`warp::sse::reply(warp::sse::keep_alive().stream(..))`, by `warp::serve`; it writes
//! `data:` and `id:` without the optional space), and `ceiling`: the same bytes encoded
//! before the clock starts, in 64 KiB chunks of a plain body on hyper.
//!
//! Every event is `id: <n>` and 81 bytes of JSON data (about 100 bytes a frame). The
//! servers run on tokio with 2 workers, the client (hyper's) on the calling thread; it
//! counts frames (each ends at a blank line; one that starts with `:` is a heartbeat),
//! and every run checks that exactly N events and at least their bytes arrived.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::header::CONTENT_TYPE;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::client::{self, Target};

/// The data of every event: 81 bytes of compact JSON.
pub const PAYLOAD: &str =
    r#"{"icao":"4b1805","lat":47.46472,"lon":8.54917,"alt":36000,"gs":452.3,"trk":271.4}"#;

/// The stacks, in the order they run.
pub const STACKS: [&str; 4] = ["tower-sse", "axum", "warp", "ceiling (pre-encoded)"];

/// Bytes of events `1..=events` as `stack` writes them (warp: 2 spaces fewer each).
pub fn expected_bytes(stack: &str, events: u64) -> u64 {
    let fixed = ("id: \ndata: \n\n".len() + PAYLOAD.len()) as u64;
    let digits: u64 = (1..=events).map(|n| u64::from(n.ilog10()) + 1).sum();
    events * fixed + digits - if stack == "warp" { 2 * events } else { 0 }
}

/// Serves `events` ready events on `listener` with `stack`.
async fn serve(listener: TcpListener, stack: &'static str, events: u64) {
    let ids = move || stream::iter(1..=events).map(|n| n.to_string());
    match stack {
        "tower-sse" => {
            let service = tower::service_fn(move |_: Request<Incoming>| {
                let events =
                    ids().map(|n| tower_sse::Event::builder().id(&n).data(PAYLOAD).build());
                std::future::ready(Ok::<_, Infallible>(
                    tower_sse::Sse::new(events).into_response(),
                ))
            });
            let service = tower::ServiceBuilder::new()
                .layer(tower_sse::SseLayer::new())
                .service(service);
            tower_sse::serve(listener, service).await
        }
        "axum" => {
            use axum::response::sse::{Event, KeepAlive, Sse};
            let handler = move || async move {
                let events =
                    ids().map(|n| Ok::<_, Infallible>(Event::default().id(n).data(PAYLOAD)));
                Sse::new(events).keep_alive(KeepAlive::default())
            };
            let router = axum::Router::new().route("/", axum::routing::get(handler));
            let _ = axum::serve(listener, router).await;
        }
        "warp" => {
            use warp::Filter;
            let filter = warp::get().map(move || {
                let events = ids()
                    .map(|n| Ok::<_, Infallible>(warp::sse::Event::default().id(n).data(PAYLOAD)));
                warp::sse::reply(warp::sse::keep_alive().stream(events))
            });
            warp::serve(filter).incoming(listener).run().await
        }
        _ => {
            let all: Vec<u8> = (1..=events)
                .flat_map(|n| format!("id: {n}\ndata: {PAYLOAD}\n\n").into_bytes())
                .collect();
            let all = Bytes::from(all);
            let service = tower::service_fn(move |_: Request<Incoming>| {
                let all = all.clone();
                let chunks = (0..all.len()).step_by(1 << 16);
                let chunks = chunks.map(move |at| {
                    Ok::<_, Infallible>(Frame::data(all.slice(at..all.len().min(at + (1 << 16)))))
                });
                let response = Response::builder().header(CONTENT_TYPE, "text/event-stream");
                std::future::ready(Ok(response
                    .body(StreamBody::new(stream::iter(chunks)))
                    .expect("a response")))
            });
            crate::server::serve_http1(listener, service).await
        }
    }
}

/// Frames in a stream read piece by piece: events, heartbeats, bytes; whether the next
/// byte starts a frame, and the last byte read.
#[derive(Debug, Default)]
struct Frames {
    events: u64,
    heartbeats: u64,
    bytes: u64,
    at_start: bool,
    last: u8,
}

impl Frames {
    fn feed(&mut self, chunk: &[u8]) {
        let Some(&last) = chunk.last() else { return };
        let mut starts = Vec::from_iter((self.at_start || self.bytes == 0).then_some(0));
        starts.extend((self.last == b'\n' && chunk[0] == b'\n').then_some(1));
        starts.extend(memchr::memmem::find_iter(chunk, b"\n\n").map(|at| at + 2));
        self.at_start = starts.last() == Some(&chunk.len());
        for &start in starts.iter().filter(|&&start| start < chunk.len()) {
            *if chunk[start] == b':' {
                &mut self.heartbeats
            } else {
                &mut self.events
            } += 1;
        }
        (self.bytes, self.last) = (self.bytes + chunk.len() as u64, last);
    }
}

/// One burst of `events` events through `stack`, checked: its duration and bytes.
fn run(rt: &Runtime, stack: &'static str, events: u64) -> Result<(Duration, u64), String> {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let target = Target::parse(&format!(
        "http://{}/",
        listener.local_addr().map_err(|e| e.to_string())?
    ))?;
    let server = tokio_util::task::AbortOnDropHandle::new(rt.spawn(serve(listener, stack, events)));
    let (started, mut frames) = (Instant::now(), Frames::default());
    rt.block_on(async {
        let mut response = client::event_stream(&target, &client::Options::default()).await?;
        while let Some(frame) = response.body.frame().await {
            let frame = frame.map_err(|e| client::Failure::new("body", e))?;
            frames.feed(frame.data_ref().map_or(&[][..], |d| &d[..]));
        }
        Ok::<_, client::Failure>(())
    })
    .map_err(|f| format!("{stack}: {f}"))?;
    let elapsed = started.elapsed();
    drop(server);
    let least = expected_bytes(stack, events);
    if frames.events != events || frames.bytes < least {
        let (got, bytes) = (frames.events, frames.bytes);
        return Err(format!(
            "{stack}: {got} events in {bytes} bytes, expected {events} in {least}"
        ));
    }
    Ok((elapsed, frames.bytes))
}

/// Every stack, `runs` times, interleaved, after one untimed warm-up each: the median
/// run of each, as (stack, events per second, MB per second).
pub fn bench(events: u64, runs: usize) -> Result<Vec<(String, f64, f64)>, String> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    let rt = rt
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    for stack in STACKS {
        run(&rt, stack, events.min(100_000))?;
    }
    let mut all = vec![Vec::new(); STACKS.len()];
    for _ in 0..runs.max(1) {
        for (stack, runs) in STACKS.iter().zip(&mut all) {
            runs.push(run(&rt, stack, events)?);
        }
    }
    let medians = STACKS.iter().zip(all).map(|(stack, mut runs)| {
        runs.sort();
        let (elapsed, bytes) = runs[runs.len() / 2];
        let secs = elapsed.as_secs_f64();
        (
            stack.to_string(),
            events as f64 / secs,
            bytes as f64 / secs / 1e6,
        )
    });
    Ok(medians.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_across_any_split() {
        let frame = |n: u64| match n % 7 {
            0 => ":\n\n".to_string(),
            _ => format!("id: {n}\ndata: {PAYLOAD}\n\n"),
        };
        let stream: Vec<u8> = (1..=30).flat_map(|n| frame(n).into_bytes()).collect();
        for size in [1, 2, 3, 5, 64, 4096] {
            let mut frames = Frames::default();
            stream.chunks(size).for_each(|c| frames.feed(c));
            assert_eq!(
                (frames.events, frames.heartbeats),
                (26, 4),
                "pieces of {size}"
            );
        }
        let bytes: u64 = (1..=120)
            .map(|n| format!("id: {n}\ndata: {PAYLOAD}\n\n").len() as u64)
            .sum();
        assert_eq!(expected_bytes("axum", 120), bytes);
    }
}

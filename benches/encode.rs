//! Events per second encoding typical events, tower-sse against axum 0.8 and warp 0.4,
//! and allocations per event on each side.
//!
//! Run with `cargo bench --bench encode --features json`.
//!
//! # What is measured
//!
//! Every case measures the time from the caller's input (a struct, or a string) to the
//! final bytes of the frame, blank line included: the bytes a server writes.
//!
//! - `tower-sse`: `EventBuilder ... build()` then `Event::into_bytes()`. A tower-sse
//!   `Event` already is its frame, so this is the whole encoding.
//! - `axum`: axum's `Event` is encoded into a `BytesMut` as its fields are set, but its
//!   frame is only finished (`finalize`: the closing `\n`, then `freeze`) inside the body
//!   of axum's `Sse`, and `finalize` is private. So the axum side is measured through the
//!   shortest public path to the bytes: the body of `axum::response::sse::Sse` over
//!   `stream::repeat_with(build)`, one `poll_frame` per event (no keep-alive). That is
//!   exactly what `Sse` does when it writes an event.
//! - `tower-sse/body`: the same path on the tower-sse side, so that the comparison
//!   with axum is like for like: `tower_sse::Sse` over `stream::repeat_with(build)`,
//!   which is itself the response body and yields exactly one event per `poll_frame`
//!   (heartbeats and the coalescing of a burst of ready events into 64 KiB frames
//!   belong to `SseLayer`; the latter is measured by the `burst` tool of `tools/bench`).
//!
//! - `warp`: warp's `Event` is a struct of `String`s written out by its `Display` impl
//!   inside the body of `warp::sse::reply`, so it is measured the same way: the body of
//!   `warp::sse::reply(stream::repeat_with(build))`, one `poll_frame` per event.
//!
//! Before timing, each case checks that tower-sse and axum produce the same bytes, and
//! that warp's frame holds the same fields (warp writes `data:x` without the optional
//! space, and its fields in an order of its own).
//!
//! Allocations are counted by a `#[global_allocator]` wrapper around `System`, switched
//! on only outside criterion's timings, over 10,000 events per side after a warm-up,
//! and printed as one plain line per case (`alloc` and `realloc` calls are both
//! counted; frees are not).
//!
//! Criterion prints its own figures; `benches/run.sh` (the suite's `encode` section)
//! reads them from criterion's `--output-format bencher` lines (the median of the
//! samples) and writes events/s and the ratios against axum to `benches/results/`.

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::response::IntoResponse;
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use futures_util::stream;
use serde::Serialize;

// ---------------------------------------------------------------------------------------
// Counting allocator: `System`, with relaxed atomic counters that count only while
// switched on (outside criterion's timings, which then pay one relaxed load per
// allocation). `alloc`, `alloc_zeroed` and `realloc` calls count as allocations. The
// library forbids unsafe code (`#![forbid(unsafe_code)]` in src/lib.rs); a global
// allocator cannot be written without it, so this bench allows it for this one item.

mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    pub(crate) struct CountingAllocator {
        tracking: AtomicBool,
        allocs: AtomicUsize,
    }

    impl CountingAllocator {
        pub(crate) const fn new() -> Self {
            CountingAllocator {
                tracking: AtomicBool::new(false),
                allocs: AtomicUsize::new(0),
            }
        }

        pub(crate) fn reset(&self) {
            self.allocs.store(0, Ordering::Relaxed);
        }

        pub(crate) fn set_tracking(&self, on: bool) {
            self.tracking.store(on, Ordering::Relaxed);
        }

        pub(crate) fn alloc_count(&self) -> usize {
            self.allocs.load(Ordering::Relaxed)
        }

        fn count(&self) {
            if self.tracking.load(Ordering::Relaxed) {
                self.allocs.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    // SAFETY: every call is forwarded unchanged to `System`; the counters are atomics.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.count();
            // SAFETY: the caller's contract is passed on to `System`.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            self.count();
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            self.count();
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

#[global_allocator]
static ALLOC: counting::CountingAllocator = counting::CountingAllocator::new();

/// Allocations (`alloc` and `realloc` calls) per call of `f`, averaged over `n` calls.
fn allocs_per_call(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..100 {
        f();
    }
    ALLOC.reset();
    ALLOC.set_tracking(true);
    for _ in 0..n {
        f();
    }
    ALLOC.set_tracking(false);
    ALLOC.alloc_count() as f64 / n as f64
}

fn fmt_allocs(allocs: f64) -> String {
    trim(allocs)
}

fn trim(x: f64) -> String {
    if (x - x.round()).abs() < 0.005 {
        format!("{}", x.round())
    } else {
        format!("{x:.2}")
    }
}

// ---------------------------------------------------------------------------------------
// Inputs.

/// A typical aircraft position report: 140 bytes of compact JSON.
#[derive(Serialize, Clone)]
struct Position {
    icao: &'static str,
    callsign: &'static str,
    lat: f64,
    lon: f64,
    alt_ft: u32,
    gs_kt: f64,
    track: f64,
    vs_fpm: i32,
    ts: u64,
}

const POSITION: Position = Position {
    icao: "4b1805",
    callsign: "SWR12K",
    lat: 47.4647,
    lon: 8.54917,
    alt_ft: 36000,
    gs_kt: 452.3,
    track: 271.4,
    vs_fpm: -64,
    ts: 1_732_180_000_123,
};

const EVENT_TYPE: &str = "position";
const EVENT_ID: &str = "1732180000123-4b1805";

/// Five lines of text, ~200 bytes.
const MULTILINE: &str = "METAR LSZH 211150Z 24012KT 9999 FEW030 SCT080 08/03 Q1012 NOSIG\n\
                         TAF LSZH 211100Z 2112/2218 24010KT 9999 FEW030\n\
                         TEMPO 2112/2116 SHRA\n\
                         BECMG 2200/2203 VRB03KT\n\
                         PROB30 2206/2209 4000 BR";

/// A 64 KiB single-line payload (a large JSON snapshot, say).
fn big_payload() -> String {
    let unit = "{\"icao\":\"4b1805\",\"lat\":47.46472,\"lon\":8.54917},";
    let mut s = String::with_capacity(64 * 1024);
    while s.len() + unit.len() <= 64 * 1024 {
        s.push_str(unit);
    }
    while s.len() < 64 * 1024 {
        s.push(' ');
    }
    s
}

// ---------------------------------------------------------------------------------------
// Measurement paths.

/// Polls a body once with a no-op waker and returns the data of the frame it yields.
fn next_frame<B>(body: Pin<&mut B>) -> Bytes
where
    B: http_body::Body<Data = Bytes> + ?Sized,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match body.poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().expect("a data frame"),
        other => panic!(
            "expected a data frame, got {:?}",
            other.map(|o| o.map(|r| r.is_ok()))
        ),
    }
}

/// The body of tower-sse's `Sse` over an endless stream of `build()`, one event per frame.
fn tower_body<F>(build: F) -> Pin<Box<tower_sse::Sse<stream::RepeatWith<F>>>>
where
    F: FnMut() -> tower_sse::Event,
{
    Box::pin(tower_sse::Sse::new(stream::repeat_with(build)))
}

/// The body of axum's `Sse` over an endless stream of `build()`: one event per frame,
/// each finished by axum exactly as when it is written to a connection.
fn axum_body<F>(mut build: F) -> axum::body::Body
where
    F: FnMut() -> axum::response::sse::Event + Send + 'static,
{
    axum::response::sse::Sse::new(stream::repeat_with(move || Ok::<_, Infallible>(build())))
        .into_response()
        .into_body()
}

/// The body of warp's `sse::reply` over an endless stream of `build()`: one event per
/// frame, each written by warp exactly as when it goes to a connection.
fn warp_body<F>(mut build: F) -> warp::reply::Response
where
    F: FnMut() -> warp::sse::Event + Send + Sync + 'static,
{
    use warp::Reply;
    warp::sse::reply(stream::repeat_with(move || Ok::<_, Infallible>(build()))).into_response()
}

/// The fields of a frame, each `name` and value with its one optional leading space
/// removed, sorted: what a client reads, whatever the field order.
fn fields(frame: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(frame).expect("UTF-8 frame");
    let mut fields: Vec<(String, String)> = text
        .split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            (name.to_string(), value.to_string())
        })
        .collect();
    // Data lines keep their order; only whole fields are sorted by name.
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields
}

/// Benchmarks one case: the four paths, equality checks, and the allocation line.
fn case<T, A, W>(c: &mut Criterion, name: &str, tower: T, axum: A, warp: W)
where
    T: FnMut() -> tower_sse::Event + Clone,
    A: FnMut() -> axum::response::sse::Event + Send + Clone + 'static,
    W: FnMut() -> warp::sse::Event + Send + Sync + Clone + 'static,
{
    // Same bytes on both sides.
    let mut tb = tower_body(tower.clone());
    let mut ab = axum_body(axum.clone());
    let tower_frame = next_frame(tb.as_mut());
    let axum_frame = next_frame(Pin::new(&mut ab));
    assert_eq!(
        tower_frame, axum_frame,
        "{name}: tower-sse and axum frames differ"
    );
    let mut direct = tower.clone();
    assert_eq!(direct().into_bytes(), tower_frame);
    let mut wb = warp_body(warp.clone()).into_body();
    let warp_frame = next_frame(Pin::new(&mut wb));
    assert_eq!(
        fields(&warp_frame),
        fields(&tower_frame),
        "{name}: warp's frame holds other fields"
    );

    // Allocations per event.
    let t = allocs_per_call(10_000, || {
        black_box(direct().into_bytes());
    });
    let tb_allocs = allocs_per_call(10_000, || {
        black_box(next_frame(tb.as_mut()));
    });
    let a = allocs_per_call(10_000, || {
        black_box(next_frame(Pin::new(&mut ab)));
    });
    let w = allocs_per_call(10_000, || {
        black_box(next_frame(Pin::new(&mut wb)));
    });
    println!(
        "allocs/event {name} ({} bytes): tower-sse: {}  tower-sse/body: {}  axum: {}  warp: {}",
        tower_frame.len(),
        fmt_allocs(t),
        fmt_allocs(tb_allocs),
        fmt_allocs(a),
        fmt_allocs(w)
    );

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    let mut direct = tower.clone();
    group.bench_function("tower-sse", |b| b.iter(|| black_box(direct().into_bytes())));
    group.bench_function("tower-sse/body", |b| {
        b.iter(|| black_box(next_frame(tb.as_mut())))
    });
    group.bench_function("axum", |b| {
        b.iter(|| black_box(next_frame(Pin::new(&mut ab))))
    });
    group.bench_function("warp", |b| {
        b.iter(|| black_box(next_frame(Pin::new(&mut wb))))
    });
    group.finish();
}

const CASES: [&str; 4] = [
    "position-json",
    "position-str",
    "multiline-5",
    "payload-64k",
];

fn benches(c: &mut Criterion) {
    // (a) JSON position: the same struct serialized by each side.
    case(
        c,
        CASES[0],
        || {
            tower_sse::Event::builder()
                .event(EVENT_TYPE)
                .id(EVENT_ID)
                .json_data(black_box(&POSITION))
                .build()
                .unwrap()
        },
        || {
            axum::response::sse::Event::default()
                .event(EVENT_TYPE)
                .id(EVENT_ID)
                .json_data(black_box(&POSITION))
                .unwrap()
        },
        || {
            warp::sse::Event::default()
                .event(EVENT_TYPE)
                .id(EVENT_ID)
                .json_data(black_box(&POSITION))
                .unwrap()
        },
    );

    // (a') the same position, serialized once beforehand, passed as a string.
    let json = serde_json::to_string(&POSITION).unwrap();
    assert_eq!(json.len(), 140, "{json}");
    let j1 = json.clone();
    let j2 = json.clone();
    let j3 = json;
    case(
        c,
        CASES[1],
        move || {
            tower_sse::Event::builder()
                .event(EVENT_TYPE)
                .id(EVENT_ID)
                .data(black_box(&j1))
                .build()
                .unwrap()
        },
        move || {
            axum::response::sse::Event::default()
                .event(EVENT_TYPE)
                .id(EVENT_ID)
                .data(black_box(&j2))
        },
        move || {
            warp::sse::Event::default()
                .event(EVENT_TYPE)
                .id(EVENT_ID)
                .data(black_box(j3.as_str()))
        },
    );

    // (b) five lines of text, data only.
    case(
        c,
        CASES[2],
        || tower_sse::Event::data(black_box(MULTILINE)),
        || axum::response::sse::Event::default().data(black_box(MULTILINE)),
        || warp::sse::Event::default().data(black_box(MULTILINE)),
    );

    // (c) a 64 KiB payload, data only.
    let big = big_payload();
    let b1 = big.clone();
    let b2 = big.clone();
    let b3 = big;
    case(
        c,
        CASES[3],
        move || tower_sse::Event::data(black_box(&b1)),
        move || axum::response::sse::Event::default().data(black_box(&b2)),
        move || warp::sse::Event::default().data(black_box(b3.as_str())),
    );
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
}

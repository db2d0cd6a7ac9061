//! Publish cost of the [`Hub`] (issue 12): a publish holds a lock only for constant work,
//! so a small topic's publish latency stays flat however many subscribers another topic
//! has, and publishers on different topics do not queue behind each other.
//!
//! ```text
//! cargo bench --bench publish [-- --quick]
//! ```
//!
//! - **Latency**: topic `big` has 1, 1,000 or 15,000 subscribers (tokio tasks on a
//!   2-worker runtime, each reading its subscription) and receives a 140-byte event
//!   every 10 ms from a background thread; meanwhile the main thread publishes on topic
//!   `small` (one subscriber) every 100 us and times each `publish` call. Printed:
//!   p50, p99, p99.9 and mean of 20,000 publishes (2,000 with `--quick`).
//! - **Throughput**: 1 publisher on 1 topic, then 4 publishers (threads) on 4 topics,
//!   each topic with one subscriber task; publishes per second over 2,000,000 publishes
//!   in all (200,000 with `--quick`), the median of 3 runs.
//!
//! It uses only the hub's public API, so the same file measures any version of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tower_sse::{Event, Hub};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!("hub publish latency on a small topic while topic `big` has N subscribers");
    println!(
        "| subscribers on big | p50 (us) | p99 (us) | p99.9 (us) | mean (us) | big events delivered |"
    );
    println!("|---|---|---|---|---|---|");
    for subscribers in [1, 1_000, 15_000] {
        latency(subscribers, if quick { 2_000 } else { 20_000 });
    }
    println!();
    println!("hub publishes per second");
    println!("| publishers (topics) | publishes | seconds | publishes/s |");
    println!("|---|---|---|---|");
    let total = if quick { 200_000 } else { 2_000_000 };
    for publishers in [1, 4] {
        let mut runs: Vec<(f64, f64)> = (0..3).map(|_| throughput(publishers, total)).collect();
        runs.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (seconds, rate) = runs[1];
        println!("| {publishers} ({publishers}) | {total} | {seconds:.3} | {rate:.0} |");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Subscribers on `topic`, each reading on its own task; counts what they receive.
fn readers(runtime: &tokio::runtime::Runtime, hub: &Hub, topic: &str, n: usize) -> Arc<AtomicU64> {
    let received = Arc::new(AtomicU64::new(0));
    let _guard = runtime.enter();
    for _ in 0..n {
        let mut subscription = hub.subscribe([topic], None);
        let received = received.clone();
        runtime.spawn(async move {
            while let Some(Ok(_)) = subscription.next().await {
                received.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    received
}

fn payload() -> String {
    format!("{{\"pad\":\"{}\"}}", "x".repeat(130))
}

fn latency(subscribers: usize, samples: usize) {
    let runtime = runtime();
    let hub = Hub::builder().history_events(1024).build();
    let big = readers(&runtime, &hub, "big", subscribers);
    let _small = readers(&runtime, &hub, "small", 1);
    // Let every reader park once.
    std::thread::sleep(Duration::from_millis(200));
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (hub, stop) = (hub.clone(), stop.clone());
        std::thread::spawn(move || {
            let data = payload();
            let mut published = 0u64;
            while !stop.load(Ordering::Relaxed) {
                hub.publish("big", Event::data(&data)).expect("published");
                published += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            published
        })
    };
    let data = payload();
    for _ in 0..samples / 10 {
        hub.publish("small", Event::data(&data)).expect("published");
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let event = Event::data(&data);
        let start = Instant::now();
        hub.publish("small", event).expect("published");
        times.push(start.elapsed());
        std::thread::sleep(Duration::from_micros(100));
    }
    stop.store(true, Ordering::Relaxed);
    let published = background.join().expect("the background publisher");
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / times.len() as f64;
    println!(
        "| {subscribers} | {:.2} | {:.2} | {:.2} | {mean:.2} | {} of {} |",
        at(0.5),
        at(0.99),
        at(0.999),
        big.load(Ordering::Relaxed),
        published * subscribers as u64,
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// Seconds and publishes per second of one run.
fn throughput(publishers: usize, total: usize) -> (f64, f64) {
    let runtime = runtime();
    let hub = Hub::builder().history_events(1024).build();
    let topics: Vec<String> = (0..publishers).map(|p| format!("t{p}")).collect();
    for topic in &topics {
        readers(&runtime, &hub, topic, 1);
    }
    std::thread::sleep(Duration::from_millis(100));
    let data = payload();
    let per = total / publishers;
    let start = Instant::now();
    let threads: Vec<_> = topics
        .iter()
        .map(|topic| {
            let (hub, topic, data) = (hub.clone(), topic.clone(), data.clone());
            std::thread::spawn(move || {
                for _ in 0..per {
                    hub.publish(&topic, Event::data(&data)).expect("published");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a publisher");
    }
    let seconds = start.elapsed().as_secs_f64();
    runtime.shutdown_timeout(Duration::from_secs(1));
    (seconds, (per * publishers) as f64 / seconds)
}

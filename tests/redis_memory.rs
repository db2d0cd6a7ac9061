//! Issue 12: a subscriber that resumes from a very old `Last-Event-ID` on many topics is
//! served from Redis a page at a time, so the memory it takes stays bounded by the page
//! size, not by what the streams hold. Allocation is measured with a counting global
//! allocator in this test's own binary.

#![cfg(feature = "redis")]

mod support;
mod support_alloc;

use std::time::Duration;

use futures_util::StreamExt;
use support::redis::RedisServer;
use tokio::time::timeout;
use tower_sse::hub::RedisStorage;
use tower_sse::{Event, Hub, LastEventId};

#[global_allocator]
static ALLOCATOR: support_alloc::Counting = support_alloc::Counting;

const TOPICS: usize = 64;
const PER_TOPIC: usize = 10_000;
/// What the subscription may allocate at its peak, beyond what was allocated before it.
///
/// It holds, per topic, at most one page of 128 events (`XRANGE ... COUNT 128`) twice
/// over: as Redis's reply (about 0.5 KiB per ~130-byte event: the frame, the entry id,
/// the field names and the `Value`s around them) and once parsed (the frame as `Bytes`,
/// then re-encoded with its `id:` line). 64 topics x 128 events x ~1 KiB is about
/// 8 MiB; allow twice that for the connection's buffers and the ready queue. Holding
/// the 640,000 events at once would take well over 100 MiB.
const BOUND: usize = 16 << 20;

/// The `id:` of an encoded event, read without allocating.
fn id_of(frame: &[u8]) -> u64 {
    let at = frame
        .windows(4)
        .position(|w| w == b"id: ")
        .expect("an id line");
    frame[at + 4..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |n, b| n * 10 + u64::from(b - b'0'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_id_over_64_topics_of_10_000_is_replayed_in_order_in_bounded_memory() {
    // Written once and never restarted: no fsync after every write.
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let storage = RedisStorage::new(&redis.url())
        .unwrap()
        .prefix("memory")
        .max_len(2 * PER_TOPIC)
        .queue(20_000);
    let hub = Hub::builder().redis(storage).max_topics(TOPICS).build();
    let topics: Vec<String> = (0..TOPICS).map(|t| format!("topic-{t}")).collect();

    // 640,000 small events, round-robin over the topics, written in chunks.
    let data = "{\"n\":1}";
    let started = std::time::Instant::now();
    let mut expected: Vec<u64> = Vec::with_capacity(TOPICS * PER_TOPIC);
    for chunk in 0..(TOPICS * PER_TOPIC) / 10_000 {
        let mut pending = Vec::with_capacity(10_000);
        for n in 0..10_000 {
            let topic = &topics[(chunk * 10_000 + n) % TOPICS];
            pending.push(hub.publish(topic, Event::data(data)).unwrap());
        }
        for published in pending {
            let id = timeout(Duration::from_secs(60), published.acknowledged())
                .await
                .expect("Redis acknowledges each written event within 60 s")
                .unwrap();
            expected.push(id);
        }
    }
    expected.sort_unstable();
    println!("written in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let oldest = LastEventId::new((expected[0] - 1).to_string());

    // Let the writer's buffers go, then measure from here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = support_alloc::reset_peak();

    let mut subscription = hub.subscribe(&topics, Some(&oldest));
    let mut received = 0;
    while received < expected.len() {
        let event = timeout(Duration::from_secs(60), subscription.next())
            .await
            .expect("the replay goes on")
            .expect("the stream goes on")
            .expect("an event");
        let id = id_of(event.as_bytes());
        assert_eq!(id, expected[received], "every event, in order, once");
        received += 1;
    }
    println!("replayed in {:?}", started.elapsed());
    let peak = support_alloc::peak().saturating_sub(baseline);
    println!(
        "replayed {received} events of {TOPICS} topics; peak allocation above the baseline: {:.2} MiB (bound {} MiB)",
        peak as f64 / (1 << 20) as f64,
        BOUND >> 20
    );
    assert!(peak < BOUND, "peak {peak} bytes");
}

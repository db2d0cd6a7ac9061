//! Issue 24, bad input: a million distinct conflation keys on one topic, with
//! subscribers that fall behind under `LagPolicy::Conflate` and `conflate_replay` on.
//! The heap stays bounded by `conflate_keys` (the topic's key index never holds more
//! keys, and no subscriber builds a map of its own), and a subscriber that fell behind
//! holds handles to at most that many events. The heap is measured with a counting
//! global allocator in this test's own binary.

mod support_alloc;

use std::fmt::Write;

use futures_util::{FutureExt, StreamExt};
use tower_sse::hub::LagPolicy;
use tower_sse::{Event, Hub, Subscription};

#[global_allocator]
static ALLOCATOR: support_alloc::Counting = support_alloc::Counting;

const KEYS: usize = 1_000_000;
const CAP: usize = 4096;
/// What the hub may hold for the topic: history (4096 events of ~120 bytes, about 1
/// MiB with their bookkeeping), the key index (at most `CAP` slots of ~300 bytes with
/// their keys and frames, about 1.2 MiB) and the live window's keyless events (none
/// here), with the spare capacity of their tables. A map of every key would take
/// hundreds of MiB.
const BOUND: usize = 8 << 20;
/// What one subscriber that fell behind may hold beyond that: handles (id, key and
/// `Bytes`, 56 bytes) to at most `CAP` events, and a batch ready to be yielded.
const PER_SUBSCRIBER: usize = 512 << 10;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Polls the subscription once: it finds it fell behind and takes what it missed.
fn poll_once(subscription: &mut Subscription) -> Event {
    subscription
        .next()
        .now_or_never()
        .expect("ready at once")
        .expect("open")
        .expect("no error")
}

#[test]
fn a_million_distinct_keys_take_no_more_memory_than_the_key_cap() {
    let baseline = support_alloc::reset_peak();

    let hub = Hub::builder()
        .lag_policy(LagPolicy::Conflate)
        .conflate_replay(true)
        .conflate_keys(CAP)
        .build();
    // Ten subscribers that never read while the keys are published.
    let mut behind: Vec<Subscription> = (0..10).map(|_| hub.subscribe(["t"], None)).collect();
    let data = "x".repeat(80);
    let mut key = String::with_capacity(32);
    for n in 0..KEYS {
        key.clear();
        write!(key, "sensor-{n}").unwrap();
        hub.publish_keyed("t", &key, Event::data(&data)).unwrap();
    }
    let held = support_alloc::current() - baseline;
    let peak = support_alloc::peak() - baseline;
    println!(
        "{KEYS} distinct keys: heap {:.2} MiB now, {:.2} MiB at the peak (bound {} MiB)",
        mib(held),
        mib(peak),
        BOUND >> 20
    );
    assert!(peak < BOUND, "peak heap {peak} bytes above the baseline");
    assert_eq!(hub.stats("t").unwrap().keys, CAP);

    // Past the cap: each gets the reset event, and holds nothing more.
    for subscription in &mut behind {
        let reset = poll_once(subscription);
        assert!(
            reset
                .as_bytes()
                .starts_with(b"event: stream-reset\ndata: lagged\n")
        );
    }
    assert_eq!(hub.stats("t").unwrap().conflate_fallbacks, 10);

    // Within the cap: each holds handles to at most `CAP` events.
    for n in 0..CAP {
        key.clear();
        write!(key, "again-{n}").unwrap();
        hub.publish_keyed("t", &key, Event::data(&data)).unwrap();
    }
    let before = support_alloc::current();
    for subscription in &mut behind {
        poll_once(subscription);
    }
    let per = (support_alloc::current() - before) / behind.len();
    println!(
        "a subscriber {CAP} keys behind holds {:.1} KiB (bound {} KiB)",
        per as f64 / 1024.0,
        PER_SUBSCRIBER >> 10
    );
    assert!(per < PER_SUBSCRIBER, "{per} bytes per subscriber");
    assert_eq!(hub.stats("t").unwrap().conflated, 10);
    let peak = support_alloc::peak() - baseline;
    assert!(
        peak < BOUND + behind.len() * PER_SUBSCRIBER,
        "peak heap {peak} bytes above the baseline"
    );
}

//! Issue 19: the hub is bounded by default. One event on each of 1,000,000 topics that
//! nobody reads (the one-topic-per-user pattern) stays within the default budget, and
//! the memory goes back once the topics age out. The heap is measured with a counting
//! global allocator in this test's own binary; time is tokio's paused clock, which the
//! hub's history ages by.

mod support_alloc;

use std::fmt::Write;
use std::time::Duration;

use tower_sse::{Event, Hub};

#[global_allocator]
static ALLOCATOR: support_alloc::Counting = support_alloc::Counting;

const TOPICS: usize = 1_000_000;
/// The bound for the default hub.
const BOUND: usize = 128 << 20;
/// What the hub may still hold once every topic aged out: its table of dropped topics
/// (128 KiB) and small change.
const AFTER: usize = 1 << 20;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

#[tokio::test(start_paused = true)]
async fn a_million_topics_nobody_reads_stay_within_the_default_budget_and_go_when_aged_out() {
    let baseline = support_alloc::reset_peak();

    let hub = Hub::new();
    let data = "x".repeat(200);
    let mut name = String::with_capacity(32);
    for n in 0..TOPICS {
        name.clear();
        write!(name, "user-{n}").unwrap();
        hub.publish(&name, Event::data(&data)).unwrap();
    }
    let held = support_alloc::current() - baseline;
    let peak = support_alloc::peak() - baseline;
    println!(
        "{TOPICS} topics of one {}-byte event: heap {:.1} MiB now, {:.1} MiB at the peak (bound {} MiB)",
        data.len(),
        mib(held),
        mib(peak),
        BOUND >> 20
    );
    assert!(peak < BOUND, "peak heap {peak} bytes above the baseline");

    // The newest topics are still there, and replay; the oldest were evicted.
    let kept = hub.stats(&name).expect("the newest topic is kept");
    assert_eq!(kept.history, 1);
    assert!(
        hub.stats("user-0").is_none(),
        "the oldest topic was evicted"
    );
    println!("topics held: {}", hub.all_stats().len());

    // Nobody reads them: once their history aged out (one hour by default), they go.
    tokio::time::advance(Duration::from_secs(2 * 3600 + 1)).await;
    assert!(hub.all_stats().is_empty(), "every topic aged out");
    let after = support_alloc::current().saturating_sub(baseline);
    println!(
        "after they aged out: heap {:.3} MiB above the baseline (bound {:.0} MiB)",
        mib(after),
        mib(AFTER)
    );
    assert!(after < AFTER, "{after} bytes still held");
}

//! Issue 19: the hub is bounded by default. One event on each of 1,000,000 topics that
//! nobody reads (the one-topic-per-user pattern) stays within the default budget, and
//! the memory goes back once the topics age out. The heap is measured with a counting
//! global allocator in this test's own binary; time is tokio's paused clock, which the
//! hub's history ages by.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower_sse::{Event, Hub};

/// Counts the bytes allocated now, and the most ever allocated since the last reset.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters are
// updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);

    let hub = Hub::new();
    let data = "x".repeat(200);
    let mut name = String::with_capacity(32);
    for n in 0..TOPICS {
        name.clear();
        write!(name, "user-{n}").unwrap();
        hub.publish(&name, Event::data(&data)).unwrap();
    }
    let held = CURRENT.load(Ordering::Relaxed) - baseline;
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
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
    let after = CURRENT.load(Ordering::Relaxed).saturating_sub(baseline);
    println!(
        "after they aged out: heap {:.3} MiB above the baseline (bound {:.0} MiB)",
        mib(after),
        mib(AFTER)
    );
    assert!(after < AFTER, "{after} bytes still held");
}

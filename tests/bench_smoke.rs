//! Keeps the benchmarks from rotting: runs the burst benchmark's own code (the servers,
//! the client, the checks of `benches/burst.rs`, included here as a module) with a few
//! events on every stack. Counts only, no timing assertions.

#[path = "../benches/burst.rs"]
#[allow(dead_code, unreachable_pub)]
mod burst;

use burst::Stack;

const EVENTS: u64 = 10_000;

#[test]
fn every_stack_delivers_exactly_every_event() {
    let rt = burst::runtime();
    for stack in Stack::ALL {
        let run = burst::run_burst(&rt, stack, EVENTS)
            .unwrap_or_else(|err| panic!("{}: {err}", stack.name()));
        assert_eq!(run.events, EVENTS, "{}: events received", stack.name());
        assert_eq!(
            run.body_bytes,
            burst::expected_bytes(EVENTS) + 3 * run.heartbeats,
            "{}: bytes received",
            stack.name()
        );
        burst::check(&run, EVENTS).unwrap();
    }
}

#[test]
fn the_benchmark_loop_runs_and_checks_every_run() {
    let rt = burst::runtime();
    let options = burst::Options::from_args(
        ["--events", "2_000", "--runs", "1", "--bench"].map(String::from),
    );
    assert_eq!(options.events, 2_000);
    assert_eq!(options.stacks, Stack::ALL);
    let mut seen = Vec::new();
    let runs = burst::bench(&rt, &options, |run| seen.push(run.stack));
    assert_eq!(seen, Stack::ALL);
    for ((stack, stack_runs), expected) in runs.iter().zip(Stack::ALL) {
        assert_eq!(*stack, expected);
        assert_eq!(stack_runs.len(), 1);
        assert_eq!(burst::median(stack_runs).stack, expected);
        assert_eq!(stack_runs[0].events, 2_000);
    }

    let options = burst::Options::from_args(["--stack=axum,ceiling"].map(String::from));
    assert_eq!(options.stacks, [Stack::Axum, Stack::Ceiling]);
    assert_eq!(options.events, burst::DEFAULT_EVENTS);
}

#[test]
fn expected_bytes_matches_the_frames() {
    for events in [1, 9, 10, 99, 100, 12_345] {
        let actual: u64 = (1..=events).map(|n| burst::frame(n).len() as u64).sum();
        assert_eq!(burst::expected_bytes(events), actual, "{events}");
    }
}

/// The client's decoder and counter, fed one byte at a time and all at once.
#[test]
fn client_counts_events_and_heartbeats_across_any_split() {
    let body = b"7\r\nid: 1\nd\r\n5;ext=1\r\nata: \r\n10\r\nx\n\n:\n\nid: 2\ndata\r\n\
                 7\r\n: y\n\n:\n\r\n0\r\nx-trailer: 1\r\n\r\n";
    let whole = {
        let mut chunked = burst::Chunked::default();
        let mut counter = burst::FrameCounter::default();
        chunked.feed(body, &mut counter).unwrap();
        assert!(chunked.done);
        counter
    };
    let mut chunked = burst::Chunked::default();
    let mut counter = burst::FrameCounter::default();
    for byte in body.chunks(1) {
        chunked.feed(byte, &mut counter).unwrap();
    }
    assert!(chunked.done);
    for counter in [whole, counter] {
        assert_eq!(counter.events, 2);
        assert_eq!(counter.comments, 1);
        assert_eq!(counter.bytes, 7 + 5 + 16 + 7);
    }
}

#[test]
fn client_refuses_bytes_after_the_last_chunk() {
    let mut chunked = burst::Chunked::default();
    let mut counter = burst::FrameCounter::default();
    assert!(chunked.feed(b"0\r\n\r\nx", &mut counter).is_err());
}

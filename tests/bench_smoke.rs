//! Keeps the benchmarks from rotting: runs the burst benchmark's own code (the servers,
//! the client, the checks of `benches/burst.rs`) with a few events on every stack, and
//! the whole suite (`benches/suite.rs`: fan-out servers as child processes, the load
//! generator, the report files) at tiny sizes. Counts only, no timing assertions.

// `benches/burst.rs` is included once, through the suite (below), which runs it too.
use suite::burst;

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
            burst::expected_stack_bytes(stack, EVENTS) + 3 * run.heartbeats,
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

// ---------------------------------------------------------------------------------------
// The suite (`benches/suite.rs`): fan-out servers as child processes, the load
// generator, the report files, at tiny sizes.

#[path = "../benches/suite.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod suite;

use std::process::Command;

use suite::loadgen;

/// Set in the environment of a child: the role and its arguments, one per line.
const CHILD: &str = "TOWER_SSE_BENCH_CHILD";

/// Not a test of its own: the suite runs this test binary, with `CHILD` set, as its
/// fan-out servers (`suite::child_main`).
#[test]
fn suite_child() {
    let Ok(args) = std::env::var(CHILD) else {
        return;
    };
    suite::child_main(args.split('\n').map(String::from).collect());
}

fn launch(args: &[String]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "suite_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(
            CHILD,
            std::iter::once("server")
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    command
}

/// The whole suite at smoke size: every stack's server delivers every event to every
/// subscriber, in order; every section reports; the files are written. Counts only.
#[test]
fn suite_smoke_every_subscriber_gets_every_event() {
    let out = std::env::temp_dir().join(format!("tower-sse-suite-smoke-{}", std::process::id()));
    let config = suite::Config::smoke(out.clone());
    let results = suite::run(&config, &launch).unwrap();

    assert_eq!(results.check.len(), 3);
    for check in &results.check {
        assert_eq!(
            check.complete, check.subscribers,
            "{}: subscribers with every event 1..={} in order",
            check.stack, check.events
        );
        assert!(
            check.errors.is_empty(),
            "{}: {:?}",
            check.stack,
            check.errors
        );
    }
    for stack in ["tower-sse", "axum", "warp"] {
        let step = &results.fanout[stack].steps[0];
        assert_eq!((step.connected, step.failed), (20, 0), "{stack}");
        assert_eq!((step.lost, step.reordered), (0, 0), "{stack}");
        // Every event carries its publish time (the two counters are read a moment
        // apart at the window's ends, so they may differ by an event or a few).
        assert!(step.events > 0 && step.latency.count > 0, "{stack}");
        assert!(step.server_cpu_us_per_event.is_some(), "{stack}");
        assert!(step.server_rss_per_conn_kib.is_some(), "{stack}");

        let idle = &results.idle[stack].steps[0];
        assert_eq!(
            (idle.connected, idle.failed, idle.events),
            (20, 0, 0),
            "{stack}"
        );

        assert_eq!(results.churn[stack].len(), 2, "{stack}: two rounds");
        for churn in &results.churn[stack] {
            assert!(churn.steps[0].cycles > 0, "{stack}");
            assert!(churn.steps[0].server_rss_after_kib.is_some(), "{stack}");
            assert!(churn.errors.is_empty(), "{stack}: {:?}", churn.errors);
        }
    }
    // The reference floors deliver every event too.
    for floor in ["hyper-floor", "raw-floor"] {
        let step = &results.fanout[floor].steps[0];
        assert_eq!(
            (step.connected, step.failed, step.lost),
            (20, 0, 0),
            "{floor}"
        );
        assert!(step.events > 0, "{floor}");
        assert_eq!(results.idle[floor].steps[0].failed, 0, "{floor}");
    }
    if cfg!(feature = "redis") {
        let redis = results.redis.as_ref().expect("the cross-instance run");
        let step = &redis.steps[0];
        assert_eq!((step.connected, step.failed, step.lost), (20, 0, 0));
        assert!(step.events > 0);
    }
    let stacks: Vec<&str> = results.burst.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(
        stacks,
        ["tower-sse", "axum", "warp", "ceiling (pre-encoded)"]
    );

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("## Fan-out") && md.contains("| tower-sse | 20 |"),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("fanout.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(
        json["fanout"]["axum"]["steps"][0]["events"]
            .as_u64()
            .unwrap()
            > 0
    );
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn loadgen_parses_events_across_any_split() {
    let pieces = [
        ": hi\n\ndata: {\"t\":5,\"seq\":1}\n\r\n",
        "id: 2\r\ndata: {\"t\":7,\r\n",
        "data: \"seq\":2}\r\n",
        "\n",
    ];
    let mut body = Vec::new();
    for piece in pieces {
        body.extend_from_slice(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let decode = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut body = loadgen::Body::new(true);
        let mut parser = loadgen::SseParser::default();
        let mut stamps = Vec::new();
        for piece in pieces {
            body.feed(piece, &mut |data| {
                parser.feed(data, &mut |stamp| stamps.push(stamp))
            })
            .unwrap();
        }
        assert!(body.done);
        (stamps, parser.comments)
    };
    let whole = decode(&mut std::iter::once(&body[..]));
    let bytewise = decode(&mut body.chunks(1));
    assert_eq!(whole, bytewise);
    let (stamps, comments) = whole;
    assert_eq!(comments, 1);
    assert_eq!(
        stamps,
        [
            loadgen::Stamp {
                t: Some(5),
                seq: Some(1)
            },
            // Two data lines are joined by a line feed: the fields are still found.
            loadgen::Stamp {
                t: Some(7),
                seq: Some(2)
            },
        ]
    );
}

#[test]
fn loadgen_percentiles_and_urls() {
    let histogram = loadgen::Histogram::new();
    for v in 1..=1000u64 {
        histogram.record(v * 100);
    }
    let (counts, max) = histogram.snapshot();
    let latency = loadgen::Latency::between(&vec![0; counts.len()], &counts, max);
    assert_eq!(latency.count, 1000);
    assert_eq!(latency.max_us, 100_000);
    // Buckets are 0.2 % wide above 1 ms.
    let near = |value: u64, expected: u64| value.abs_diff(expected) * 100 <= expected;
    assert!(near(latency.p50_us, 50_000), "{latency:?}");
    assert!(near(latency.p99_us, 99_000), "{latency:?}");

    let target = loadgen::Target::parse("http://127.0.0.1:8080/events?topic=a").unwrap();
    assert_eq!(target.addr.port(), 8080);
    assert_eq!(target.path, "/events?topic=a");
    assert_eq!(
        loadgen::Target::parse("http://localhost").unwrap().addr,
        "127.0.0.1:80".parse().unwrap()
    );
    assert!(loadgen::Target::parse("https://x").is_err());

    let options = loadgen::Options::from_args(
        [
            "--url",
            "http://127.0.0.1:1/e",
            "-n",
            "1_000,5000",
            "--connect-rate=500",
            "--bench",
        ]
        .map(String::from),
    )
    .unwrap();
    assert_eq!(options.steps, [1000, 5000]);
    assert_eq!(options.connect_rate, 500.0);
    assert!(loadgen::Options::from_args(["-n", "5"].map(String::from)).is_err());
}

//! The suite's sections for write batching and compression (`bench-suite`, see
//! [`crate::suite`]):
//!
//! - `batch-idle`: what batching costs where nothing is written. tower-sse servers with
//!   idle streams (`GET /idle`, a topic nothing is published on), write delay 0 and
//!   20 ms: server CPU over the same window. Then the same idle streams next to active
//!   ones at the high rate, against the active ones alone: with a delay the shared clock
//!   ticks all the time, and the idle streams must still cost nothing.
//! - `compression`: identity and each codec, tower-sse, the aircraft and sensors feeds,
//!   with and without a write delay: bytes on the wire per delivered event, server CPU
//!   per delivered event, RSS per stream, latency.
//! - `memory`: RSS per idle and per active compressed stream, at two settings per codec,
//!   next to identity.
//! - `blocks`: offline, on the aircraft feed's frames as the hub writes them: a
//!   compressor per stream flushed per event and per group of 4 (approach a, what the
//!   crate does), against each event (or group of 4) compressed alone, once, into bytes
//!   any subscriber's stream could carry (approach b): bytes and CPU per event.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::codec::{Codec, Compressor, EventCompressor, Setting};
use crate::feed::{Feed, Generator};
use crate::loadgen::{self, Report};
use crate::suite::{Config, measure, measure_at, server_args, steps};
use crate::sys::thread_cpu_ns;
use crate::tower_sse_stack::hub_frames;

/// Batching's cost: one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchIdleRun {
    /// What ran, for the table.
    pub setup: String,
    /// The write delay, milliseconds (0: off).
    pub delay_ms: u64,
    /// Idle streams.
    pub idle: usize,
    /// Active streams (every event of the one topic).
    pub active: usize,
    /// Events per second on the active streams' topic.
    pub rate: f64,
    /// What the load generator measured.
    pub report: Report,
}

/// Idle streams alone, then active ones alone and next to the idle ones; write delay 0
/// and 20 ms each.
pub fn batch_idle(config: &Config) -> Result<Vec<BatchIdleRun>, String> {
    let (idle, active, rate) = config.batch_idle;
    // Round-robin over one `/events` and `per` `/idle` URLs: `active` of each.
    let per = (idle / active.max(1)).max(1);
    let mut paths = vec!["/events"];
    paths.extend(std::iter::repeat_n("/idle", per));
    let mut runs = Vec::new();
    for delay in [0u64, 20] {
        let d = delay.to_string();
        let extra = ["--write-delay-ms", d.as_str()];
        let setups: [(String, f64, &[&str], usize, usize); 3] = [
            (format!("{idle} idle streams"), 0.0, &["/idle"], idle, 0),
            (
                format!("{active} active streams at {rate} events/s"),
                rate,
                &["/events"],
                0,
                active,
            ),
            (
                format!("{active} active + {} idle streams", active * per),
                rate,
                &paths[..],
                active * per,
                active,
            ),
        ];
        for (setup, rate, paths, idle, active) in setups {
            config.say(&format!("batch-idle, write delay {delay} ms: {setup}"));
            let options = loadgen::Options {
                duration: config.window,
                ..steps(&[idle + active])
            };
            let report = measure_at(
                config,
                &server_args("tower-sse", rate, &extra),
                paths,
                options,
            )?;
            runs.push(BatchIdleRun {
                setup,
                delay_ms: delay,
                idle,
                active,
                rate,
                report,
            });
        }
    }
    Ok(runs)
}

/// A feed as the compression runs publish it.
#[derive(Clone, Debug)]
pub struct FeedShape {
    /// The name in tables.
    pub name: String,
    /// The payloads.
    pub feed: Feed,
    /// Topics.
    pub topics: u64,
    /// Events per second on each topic.
    pub rate: f64,
    /// Every topic at once, `rate` times a second.
    pub burst: bool,
}

impl FeedShape {
    fn server_args(&self) -> Vec<String> {
        let mut args = vec![
            "--feed".to_string(),
            self.feed.name().into(),
            "--topics".into(),
            self.topics.to_string(),
        ];
        if self.burst {
            args.push("--burst".into());
        }
        args
    }
}

/// One compression run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompressionRun {
    /// The feed's name.
    pub feed: String,
    /// The write delay, milliseconds (0: off).
    pub delay_ms: u64,
    /// `identity`, or the codec.
    pub coding: String,
    /// What the load generator measured.
    pub report: Report,
}

/// A run that failed as a whole (a server overwhelmed past the load generator's
/// timeouts, say) is reported with its error, and the section goes on.
fn tolerate(result: Result<Report, String>) -> Report {
    result.unwrap_or_else(|error| {
        eprintln!("suite: run failed: {error}");
        Report {
            errors: [(format!("run failed: {error}"), 1)].into(),
            ..Report::default()
        }
    })
}

/// `identity`, or the codec's token.
fn coding_name(codec: Option<Codec>) -> String {
    codec.map_or("identity".into(), |c| c.token().into())
}

/// Every feed, every write delay: identity, then each codec at the crate's defaults.
pub fn compression(config: &Config) -> Result<Vec<CompressionRun>, String> {
    let (subscribers, delays, shapes) = &config.compression;
    let mut runs = Vec::new();
    for shape in shapes {
        for &delay in delays {
            for codec in [None].into_iter().chain(Codec::ALL.map(Some)) {
                let coding = coding_name(codec);
                config.say(&format!(
                    "compression, {}, write delay {delay} ms: {coding}",
                    shape.name
                ));
                let mut extra = shape.server_args();
                if delay > 0 {
                    extra.extend(["--write-delay-ms".into(), delay.to_string()]);
                }
                if let Some(codec) = codec {
                    extra.extend(["--compression".into(), codec.token().into()]);
                }
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                let report = tolerate(measure(
                    config,
                    &server_args("tower-sse", shape.rate, &extra),
                    loadgen::Options {
                        accept_encoding: codec,
                        ..steps(&[*subscribers])
                    },
                ));
                runs.push(CompressionRun {
                    feed: shape.name.clone(),
                    delay_ms: delay,
                    coding,
                    report,
                });
            }
        }
    }
    Ok(runs)
}

/// One memory run: a coding at a setting, idle or active streams, step by step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryRun {
    /// `identity`, or the codec.
    pub coding: String,
    /// The setting (none for identity).
    pub setting: Option<Setting>,
    /// `idle` (nothing published) or `active` (the aircraft feed, slowly).
    pub state: String,
    /// What the load generator measured, at each step.
    pub report: Report,
}

/// RSS per stream, idle and active, identity and every codec at each setting.
pub fn memory(config: &Config) -> Result<Vec<MemoryRun>, String> {
    let (steps_at, settings, active_rate) = &config.memory;
    let codings = std::iter::once((None, None)).chain(
        Codec::ALL
            .into_iter()
            .flat_map(|c| settings.iter().map(move |s| (Some(c), Some(*s)))),
    );
    let mut runs = Vec::new();
    for (codec, setting) in codings.collect::<Vec<_>>() {
        for state in ["idle", "active"] {
            let coding = coding_name(codec);
            let label = setting.map_or(String::new(), |s| format!(", {}", s.label()));
            config.say(&format!("memory, {state}: {coding}{label} {steps_at:?}"));
            let mut extra = Vec::new();
            if let (Some(codec), Some(setting)) = (codec, setting) {
                extra.extend([
                    "--compression".to_string(),
                    codec.token().into(),
                    "--compression-level".into(),
                    setting.level.to_string(),
                    "--compression-window".into(),
                    setting.window.to_string(),
                ]);
            }
            // Active: the aircraft feed, `active_rate` events/s over its 320 topics.
            let rate = if state == "active" {
                extra.extend(["--feed", "aircraft", "--topics", "320"].map(String::from));
                active_rate / 320.0
            } else {
                0.0
            };
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let report = tolerate(measure(
                config,
                &server_args("tower-sse", rate, &extra),
                loadgen::Options {
                    duration: config.window.min(Duration::from_secs(2)),
                    accept_encoding: codec,
                    ..steps(steps_at)
                },
            ));
            runs.push(MemoryRun {
                coding,
                setting,
                state: state.into(),
                report,
            });
        }
    }
    Ok(runs)
}

/// The offline comparison.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Blocks {
    /// Events (frames as the hub writes them, `event: position`, data, `id:`).
    pub events: usize,
    /// Their bytes, uncompressed.
    pub identity_bytes: u64,
    /// Subscribers the per-delivered-event CPU of approach (b) is shared by.
    pub subscribers: usize,
    /// One row per codec, setting and approach.
    pub rows: Vec<BlockRow>,
}

/// One codec, setting and approach.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockRow {
    /// The codec.
    pub codec: String,
    /// The setting.
    pub setting: Setting,
    /// The approach, as the table names it.
    pub approach: String,
    /// `true`: every subscriber's stream does this work (approach a); `false`: done once
    /// per event for all subscribers (approach b).
    pub per_subscriber: bool,
    /// Bytes out, all events.
    pub bytes: u64,
    /// CPU time per event, nanoseconds (the suite thread's own).
    pub ns_per_event: f64,
}

/// The approaches: name, per subscriber, events per flush.
const APPROACHES: [(&str, bool, usize); 4] = [
    ("(a) a compressor per stream, flushed per event", true, 1),
    ("(a) a compressor per stream, flushed per 4 events", true, 4),
    ("(b) each event compressed alone, once", false, 1),
    (
        "(b) each group of 4 events compressed alone, once",
        false,
        4,
    ),
];

/// The aircraft feed's frames: `seconds` ticks of 320 reports, as a subscriber of every
/// topic receives them.
pub fn aircraft_frames(seconds: u64) -> Vec<bytes::Bytes> {
    const TOPICS: u64 = 320;
    let mut generator = Generator::new(Feed::Aircraft, TOPICS, 0, 1.0);
    let start = crate::now_micros();
    let topics: Vec<String> = (0..TOPICS).map(|k| format!("aircraft/{k}")).collect();
    let events = (0..seconds).flat_map(|second| (0..TOPICS).map(move |k| (second, k)));
    let payloads = events.map(|(second, k)| {
        let t = start + second * 1_000_000 + k * 7;
        (k as usize, generator.next(t, k, second + 1))
    });
    hub_frames(&topics, Feed::Aircraft.event_type(), payloads)
}

/// Bytes out of one pass of `approach` over `frames`.
fn pass(
    codec: Codec,
    setting: Setting,
    per_subscriber: bool,
    group: usize,
    frames: &[bytes::Bytes],
) -> Result<u64, String> {
    let io = |e: std::io::Error| format!("{codec}: {e}");
    let mut bytes = 0u64;
    let mut stream = match per_subscriber {
        true => Some(Compressor::new(codec, setting).map_err(io)?),
        false => None,
    };
    let mut alone = match per_subscriber {
        true => None,
        false => Some(EventCompressor::new(codec, setting).map_err(io)?),
    };
    let mut joined = Vec::new();
    for chunk in frames.chunks(group) {
        let input: &[u8] = match chunk {
            [one] => one,
            many => {
                joined.clear();
                many.iter().for_each(|f| joined.extend_from_slice(f));
                &joined
            }
        };
        let out = match (&mut stream, &mut alone) {
            (Some(stream), _) => stream.compress(input),
            (_, Some(alone)) => alone.compress(input),
            _ => unreachable!("one of the two is set"),
        };
        bytes += out.map_err(io)?.len() as u64;
    }
    Ok(bytes)
}

/// Runs the offline comparison: every codec, setting and approach over the same frames,
/// each timed over passes lasting at least the configured time.
pub fn blocks(config: &Config) -> Result<Blocks, String> {
    let (seconds, least) = config.blocks;
    let frames = aircraft_frames(seconds);
    let mut result = Blocks {
        events: frames.len(),
        identity_bytes: frames.iter().map(|f| f.len() as u64).sum(),
        subscribers: config.compression.0,
        rows: Vec::new(),
    };
    for codec in Codec::ALL {
        for &setting in &config.memory.1 {
            for (approach, per_subscriber, group) in APPROACHES {
                let bytes = pass(codec, setting, per_subscriber, group, &frames)?;
                let (started, cpu) = (Instant::now(), thread_cpu_ns());
                let mut passes = 0u32;
                while passes == 0 || started.elapsed() < least {
                    pass(codec, setting, per_subscriber, group, &frames)?;
                    passes += 1;
                }
                // This thread's CPU time, or wall time where /proc cannot tell.
                let ns = cpu
                    .zip(thread_cpu_ns())
                    .map_or(started.elapsed().as_nanos() as f64, |(a, b)| (b - a) as f64);
                result.rows.push(BlockRow {
                    codec: codec.token().into(),
                    setting,
                    approach: approach.into(),
                    per_subscriber,
                    bytes,
                    ns_per_event: ns / f64::from(passes) / frames.len().max(1) as f64,
                });
            }
        }
    }
    Ok(result)
}

//! Idle memory (issue 22): server RSS per open, idle event stream, (RSS with the
//! streams - RSS before) / streams, at each size in one server process; then, with the
//! most streams open, the server's CPU over a window (heartbeats: every 15 s by
//! default on every stack here but the raw floor, which sends none); then one event
//! published on the streams' topic and the streams that received it, counted. The
//! streams are held by `loadgen --hold` processes (at most `--idle-per-process` each,
//! since a process may hold 20,000 open files here), each on its own loopback source
//! address. tower-sse, axum and the raw floor, side by side; or, with `--idle-url` and
//! `--idle-pid`, a server already running (an example binary, say).

use std::time::Duration;

use super::Config;
use super::child::{Holders, Server};
use crate::client::Target;
use crate::proc::Usage;
use crate::results::{Heartbeat, Idle, IdleSize};
use crate::server::{Stack, idle_path};

/// A server to measure: its stream URL, its process, and its control URL (if it is one
/// of the suite's).
struct Subject {
    label: String,
    url: Target,
    pid: u32,
    control: Option<Target>,
}

pub(super) fn run(config: &Config) -> Result<Vec<Idle>, String> {
    if let (Some(url), Some(pid)) = (&config.args.idle_url, config.args.idle_pid) {
        let subject = Subject {
            label: url.clone(),
            url: Target::parse(url)?,
            pid,
            control: None,
        };
        return Ok(vec![measure(config, &subject)?]);
    }
    let mut all = Vec::new();
    for stack in [Stack::TowerSse, Stack::Axum, Stack::RawFloor] {
        let args = ["--stack", stack.name(), "--rate", "0"].map(String::from);
        let server = Server::start(&config.tool("fanout-server"), &args)?;
        let subject = Subject {
            label: stack.name().into(),
            url: server.url(&idle_path(stack)),
            pid: server.pid,
            control: Some(server.control.clone()),
        };
        all.push(measure(config, &subject)?);
    }
    Ok(all)
}

fn usage(subject: &Subject) -> Result<Usage, String> {
    Usage::of(subject.pid)
        .ok_or_else(|| format!("{}: process {} is gone", subject.label, subject.pid))
}

fn measure(config: &Config, subject: &Subject) -> Result<Idle, String> {
    let top = config.idle_sizes.iter().copied().max().unwrap_or(0);
    let processes = top.div_ceil(config.idle_per_process.max(1)).max(1);
    let timeout = Duration::from_secs(120);
    let args: Vec<String> = [
        "--url",
        &subject.url.to_string(),
        "--threads",
        "1",
        "--quiet",
        "--timeout",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut holders = Holders::start(&config.tool("loadgen"), processes, &args)?;
    let mut idle = Idle {
        label: subject.label.clone(),
        processes,
        ..Idle::default()
    };
    idle.rss_before_kib = usage(subject)?.rss_kib;
    let mut open = 0;
    for &streams in &config.idle_sizes {
        config.say(&format!(
            "idle: {} x {streams} ({processes} load generator processes)",
            subject.label
        ));
        // The i-th process holds its share of `streams`.
        let share = |i: usize| streams / processes + usize::from(i < streams % processes);
        let commands: Vec<String> = (0..processes)
            .map(|i| format!("open {}", share(i)))
            .collect();
        let answers = holders.ask(&commands, timeout)?;
        let sum = |i: usize| {
            answers
                .iter()
                .map(|a| a.get(i).copied().unwrap_or(0.0))
                .sum::<f64>() as usize
        };
        let secs = answers
            .iter()
            .filter_map(|a| a.get(2).copied())
            .fold(0.0, f64::max);
        // The allocator settles what the accepts left behind.
        std::thread::sleep(config.settle);
        let rss_kib = usage(subject)?.rss_kib;
        idle.sizes.push(IdleSize {
            streams,
            connected: sum(0),
            failed: sum(1),
            rss_kib,
            kib_per_stream: (rss_kib as f64 - idle.rss_before_kib as f64) / streams.max(1) as f64,
            connect_secs: secs,
            streams_per_sec: (streams - open) as f64 / secs,
        });
        open = streams;
    }
    let before = usage(subject)?;
    let started = std::time::Instant::now();
    std::thread::sleep(config.idle_window);
    let cpu_ns = usage(subject)?.cpu_ns - before.cpu_ns;
    let window_secs = started.elapsed().as_secs_f64();
    let cpu_percent = cpu_ns as f64 / 1e9 / window_secs * 100.0;
    idle.heartbeat = Some(Heartbeat {
        streams: open,
        window_secs,
        cpu_percent,
    });
    if let Some(control) = &subject.control {
        crate::client::get_json_blocking(&control.at("/publish-idle"))?;
        let commands = vec!["first".to_string(); holders.len()];
        let answers = holders.ask(&commands, timeout)?;
        idle.delivered = Some(
            answers
                .iter()
                .map(|a| a.first().copied().unwrap_or(0.0) as usize)
                .sum(),
        );
    }
    Ok(idle)
}

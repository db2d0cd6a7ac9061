//! Idle memory (issue 22): server RSS per open, idle event stream, (RSS with the streams
//! less RSS before) / streams, at each size in one server process; then, with every stream
//! open, the server's CPU over a window (heartbeats: every 15 s on every stack here but
//! the raw floor, which sends none); then one event published on the streams' topic and
//! the streams that received it. The streams are held by `loadgen --hold` processes (at
//! most `--idle-per-process` each: a process may hold 20,000 open files here), each on
//! its own loopback source address. tower-sse, axum and the raw floor, side by side;
//! or, with `--idle-url` and `--idle-pid`, a server already running.

use std::time::{Duration, Instant};

use http::Uri;

use super::child::{Answers, Holders, Server};
use super::config::Config;
use crate::client::get_json_blocking;
use crate::proc::Usage;
use crate::results::{Idle, IdleSize};

pub(super) fn run(config: &Config) -> Result<Vec<Idle>, String> {
    if let (Some(url), Some(pid)) = (&config.args.idle_url, config.args.idle_pid) {
        return Ok(vec![measure(config, url, pid, None)?]);
    }
    let mut all = Vec::new();
    for stack in ["tower-sse", "axum", "raw-floor"] {
        let program = config.tool("fanout-server");
        let server = Server::start(&program, &["--stack", stack, "--rate", "0"])?;
        let publish = Some(server.control("/publish-idle"));
        let mut idle = measure(config, &server.idle.to_string(), server.pid(), publish)?;
        idle.label = stack.into();
        all.push(idle);
    }
    Ok(all)
}

/// Number `i` of each answer of the holders.
fn column(answers: &Answers, i: usize) -> impl Iterator<Item = f64> + '_ {
    answers
        .iter()
        .map(move |a| a.get(i).copied().unwrap_or(0.0))
}

fn measure(config: &Config, url: &str, pid: u32, publish: Option<Uri>) -> Result<Idle, String> {
    let usage = || Usage::of(&[pid]).ok_or_else(|| format!("{url}: process {pid} is gone"));
    let (sizes, timeout) = (&config.args.idle_sizes, Duration::from_secs(120));
    let most = sizes.iter().max().unwrap_or(&0);
    let processes = most.div_ceil(config.args.idle_per_process.max(1)).max(1);
    let args = ["--url", url, "--threads", "1", "--quiet", "--timeout", "60"];
    let mut holders = Holders::start(&config.tool("loadgen"), processes, &args)?;
    let mut idle = Idle::default();
    (idle.label, idle.processes, idle.rss_before_kib) = (url.into(), processes, usage()?.rss_kib);
    for &streams in sizes {
        let what = format!("idle: {url} x {streams}, {processes} load generator processes");
        config.say(&what);
        // The i-th process holds its share of `streams`.
        let share = |i| streams / processes + usize::from(i < streams % processes);
        let open = |i| format!("open {}", share(i));
        let answers = holders.ask(&(0..processes).map(open).collect::<Vec<_>>(), timeout)?;
        let sum = |i| column(&answers, i).sum::<f64>() as usize;
        let secs = column(&answers, 2).fold(0.0, f64::max);
        // What the accepts left to the allocator settles.
        std::thread::sleep(config.settle);
        let (rss_kib, connected) = (usage()?.rss_kib, sum(0));
        let opened = streams - idle.sizes.last().map_or(0, |s| s.streams);
        let added = rss_kib as f64 - idle.rss_before_kib as f64;
        idle.sizes.push(IdleSize {
            streams,
            connected,
            failed: sum(1),
            rss_kib,
            kib_per_stream: added / connected.max(1) as f64,
            connect_secs: secs,
            streams_per_sec: opened as f64 / secs,
        });
    }
    let (before, started) = (usage()?.cpu_ns, Instant::now());
    std::thread::sleep(config.args.idle_window);
    idle.cpu_window_secs = started.elapsed().as_secs_f64();
    idle.cpu_percent = (usage()?.cpu_ns - before) as f64 / 1e9 / idle.cpu_window_secs * 100.0;
    if let Some(publish) = publish {
        get_json_blocking(&publish)?;
        let answers = holders.ask(&vec!["first".to_string(); processes], timeout)?;
        idle.delivered = Some(column(&answers, 0).sum::<f64>() as usize);
    }
    Ok(idle)
}

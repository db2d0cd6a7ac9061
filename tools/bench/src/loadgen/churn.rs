//! Churn: workers that each loop connect, GET the stream, read the response head, close;
//! then, after `--settle`, the RSS and the subscribers the server still counts.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::stream::Shared;
use super::{Options, Report, Step, usage};
use crate::client;

pub(super) async fn run(
    options: &Options,
    shared: &Arc<Shared>,
    workers: usize,
) -> Result<Report, String> {
    let base = usage(options);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..workers {
        let (targets, shared) = (options.targets.clone(), shared.clone());
        tasks.spawn(async move {
            let mut n = index;
            while !shared.stop.is_cancelled() {
                n += 1;
                match client::event_stream(&targets[n % targets.len()], &client::Options::default())
                    .await
                {
                    Ok(_) => {
                        shared.cycles.fetch_add(1, Relaxed);
                    }
                    Err(failure) => {
                        shared.error(&failure);
                        // Out of ports, say: back off rather than spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    tokio::time::sleep(options.duration).await;
    shared.stop.cancel();
    let (cycles, secs, end) = (
        shared.cycles.load(Relaxed),
        started.elapsed().as_secs_f64(),
        usage(options),
    );
    tasks.join_all().await;
    tokio::time::sleep(options.settle).await;
    let after = usage(options);
    let mut subscribers = None;
    for control in &options.controls {
        let stats = client::get_json(&control.at("/stats")).await?;
        *subscribers.get_or_insert(0) += stats["subscribers"].as_u64().unwrap_or(0);
    }
    let cpu = base.zip(end).map(|(b, e)| e.cpu_ns - b.cpu_ns);
    let step = Step {
        connections: workers,
        window_secs: secs,
        cycles,
        cycles_per_sec: cycles as f64 / secs,
        server_cpu_us_per_cycle: cpu.map(|ns| ns as f64 / 1e3 / cycles.max(1) as f64),
        server_rss_base_kib: base.map(|b| b.rss_kib),
        server_rss_kib: end.map(|e| e.rss_kib),
        server_rss_after_kib: after.map(|a| a.rss_kib),
        subscribers_after: subscribers,
        ..Step::default()
    };
    Ok(Report {
        steps: vec![step],
        ..Report::default()
    })
}

//! Churn: workers that each loop connect, GET the stream, read the response head,
//! close; then, after `--settle`, the server's RSS and the subscribers it still counts.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::options::Options;
use super::stream::Shared;
use crate::client;
use crate::results::Step;

pub(super) async fn run(options: &Options, shared: &Arc<Shared>) -> Result<Vec<Step>, String> {
    let workers = options.churn.unwrap_or(1);
    let (base, started, mut tasks) = (options.usage(), Instant::now(), JoinSet::new());
    for index in 0..workers {
        let (targets, shared) = (options.targets.clone(), shared.clone());
        tasks.spawn(async move {
            for n in index.. {
                let target = &targets[n % targets.len()];
                match client::event_stream(target, &client::Options::default()).await {
                    _ if shared.stop.is_cancelled() => return,
                    Ok(_) => drop(shared.cycles.fetch_add(1, Relaxed)),
                    // Out of ports, say: back off rather than spin.
                    Err(failure) => {
                        shared.error(&failure);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    tokio::time::sleep(options.duration).await;
    let (cycles, end) = (shared.cycles.load(Relaxed), options.usage());
    let secs = started.elapsed().as_secs_f64();
    shared.stop.cancel();
    tasks.join_all().await;
    tokio::time::sleep(options.settle).await;
    let subscribers = match &options.control {
        Some(control) => client::get_json(control).await?["subscribers"].as_u64(),
        None => None,
    };
    let cpu = base.zip(end).map(|(b, e)| e.cpu_ns - b.cpu_ns);
    Ok(vec![Step {
        connections: workers,
        window_secs: secs,
        cycles_per_sec: cycles as f64 / secs,
        server_cpu_us_per_cycle: cpu.map(|ns| ns as f64 / 1e3 / cycles.max(1) as f64),
        server_rss_base_kib: base.map(|b| b.rss_kib),
        server_rss_kib: end.map(|e| e.rss_kib),
        server_rss_after_kib: options.usage().map(|a| a.rss_kib),
        subscribers_after: subscribers,
        ..Step::default()
    }])
}

//! `loadgen --hold`: one of several processes that together hold more streams than one
//! process may (20,000 open files here). It reads commands on standard input and
//! answers each with one line on standard output:
//!
//! | command | answer, once done |
//! |---|---|
//! | `open N` | `opened <connected> <failed> <seconds>`: N streams in all, opened as fast as the server answers (512 at a time) |
//! | `first` | `first <streams that received an event> <connected> <events>`: once every stream has an event, or at `--timeout` |
//!
//! and exits at the end of its input. Each process binds its own source addresses
//! (`--bind`), so that no loopback address runs out of ports.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

use super::stream::Shared;
use super::{Options, open, wait_for};

pub(super) async fn run(options: &Options, shared: &Arc<Shared>) -> Result<(), String> {
    let mut tasks = JoinSet::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let answer = match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["open", n] => {
                let n = n.parse().map_err(|_| format!("open {n:?}"))?;
                let secs = open(options, shared, &mut tasks, n, None)
                    .await
                    .unwrap_or(f64::NAN);
                let (connected, failed) =
                    (shared.connected.load(Relaxed), shared.failed.load(Relaxed));
                format!("opened {connected} {failed} {secs:.3}")
            }
            ["first"] => {
                let all = || shared.first.load(Relaxed) >= shared.connected.load(Relaxed);
                let _ = wait_for(shared, options.timeout, all).await;
                let first = shared.first.load(Relaxed);
                let connected = shared.connected.load(Relaxed);
                format!("first {first} {connected} {}", shared.events.load(Relaxed))
            }
            _ => return Err(format!("unknown command {line:?}")),
        };
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{answer}")
            .and_then(|()| stdout.flush())
            .map_err(|e| e.to_string())?;
    }
    shared.stop.cancel();
    Ok(())
}

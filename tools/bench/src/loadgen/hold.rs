//! `loadgen --hold`: one of several processes that together hold more streams than one
//! process may (20,000 open files here), each on its own source addresses (`--bind`).
//! It answers each command on standard input with one line on standard output, and
//! exits at the end of its input:
//!
//! - `open N` -> `opened <connected> <failed> <seconds>`: N streams in all, opened as fast
//!   as the server answers;
//! - `first` -> `first <streams that received an event> <connected>`: once every stream
//!   has an event, or at `--timeout`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

use super::options::Options;
use super::stream::{Shared, open, wait_for};

pub(super) async fn run(options: &Options, shared: &Arc<Shared>) -> Result<(), String> {
    let (mut tasks, mut lines) = (JoinSet::new(), BufReader::new(tokio::io::stdin()).lines());
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words[..] {
            ["open", n] => {
                let n = n.parse().map_err(|_| format!("open {n:?}"))?;
                let started = std::time::Instant::now();
                let _ = open(options, shared, &mut tasks, n).await;
                let secs = started.elapsed().as_secs_f64();
                let connected = shared.connected.load(Relaxed);
                let failed = shared.failed.load(Relaxed);
                format!("opened {connected} {failed} {secs:.3}")
            }
            ["first"] => {
                let counts = || (shared.first.load(Relaxed), shared.connected.load(Relaxed));
                wait_for(shared, options.timeout, || counts().0 >= counts().1).await;
                let (first, connected) = counts();
                format!("first {first} {connected}")
            }
            _ => return Err(format!("unknown command {line:?}")),
        };
        let mut stdout = std::io::stdout().lock();
        let written = writeln!(stdout, "{answer}").and_then(|()| stdout.flush());
        written.map_err(|e| e.to_string())?;
    }
    Ok(())
}

//! The suite's child processes, each killed when dropped: fan-out servers, a
//! `redis-server`, and `loadgen --hold` workers. Their output is read line by line on a
//! thread of its own, and every wait for a line has a deadline.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use http::Uri;

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line of `rx` that `accept` takes, within `timeout`.
fn wait_for<T>(
    rx: &Receiver<String>,
    timeout: Duration,
    accept: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        if let Some(found) = accept(&rx.recv_timeout(left).ok()?) {
            return Some(found);
        }
    }
}

/// Spawns `program` with `args`: the process, the lines of its output, its input.
fn spawn(program: &Path, args: &[&str]) -> Result<(Process, ChildStdin, Receiver<String>), String> {
    let (mut command, piped) = (Command::new(program), Stdio::piped);
    let child = command.args(args).stdin(piped()).stdout(piped()).spawn();
    let mut child = child.map_err(|e| format!("{}: {e}", program.display()))?;
    let (stdout, stdin) = (child.stdout.take(), child.stdin.take());
    let (tx, rx) = channel();
    let lines = BufReader::new(stdout.ok_or("no stdout")?).lines();
    std::thread::spawn(move || lines.map_while(Result::ok).try_for_each(|l| tx.send(l)));
    Ok((Process(child), stdin.ok_or("no stdin")?, rx))
}

/// A fan-out server: its process, the URLs of its streams of every topic and of the idle
/// topic, and its control listener (`host:port`).
pub(super) struct Server {
    process: Process,
    pub(super) events: Uri,
    pub(super) idle: Uri,
    control: String,
}

impl Server {
    /// Starts `fanout-server` (the binary at `program`) with `args`.
    pub(super) fn start(program: &Path, args: &[&str]) -> Result<Server, String> {
        let (process, _, rx) = spawn(program, args)?;
        let listening = wait_for(&rx, Duration::from_secs(30), |line| {
            let mut words = line.strip_prefix("LISTENING ")?.split(' ');
            let mut url = || words.next()?.parse().ok();
            Some((url()?, url()?, words.next()?.to_string()))
        });
        let (events, idle, control) = listening.ok_or_else(|| format!("{args:?} did not start"))?;
        Ok(Server {
            process,
            events,
            idle,
            control,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// The URL of `path` on the control listener.
    pub(super) fn control(&self, path: &str) -> Uri {
        let url = format!("http://{}{path}", self.control);
        url.parse().expect("a valid URL")
    }
}

/// A `redis-server` (from the `PATH`) on a free loopback port, without persistence.
pub(super) struct Redis {
    _process: Process,
    pub(super) url: String,
}

impl Redis {
    pub(super) fn start() -> Result<Redis, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        drop(listener);
        let args = format!("--port {port} --bind 127.0.0.1 --appendonly no --save");
        // `--save ""`: no snapshots.
        let args: Vec<&str> = args.split(' ').chain([""]).collect();
        let (process, _, rx) = spawn(Path::new("redis-server"), &args)?;
        let ready = |l: &str| l.contains("Ready to accept").then_some(());
        wait_for(&rx, Duration::from_secs(30), ready).ok_or("redis-server did not start")?;
        let url = format!("redis://127.0.0.1:{port}/");
        Ok(Redis {
            _process: process,
            url,
        })
    }
}

/// Sets of `loadgen --hold` workers started so far.
static SETS: AtomicUsize = AtomicUsize::new(0);

/// The numbers of each worker's answer.
pub(super) type Answers = Vec<Vec<f64>>;

/// `loadgen --hold` workers, each with its input and the lines of its output.
pub(super) struct Holders(Vec<(Process, ChildStdin, Receiver<String>)>);

impl Holders {
    /// Starts `workers` of `loadgen` (the binary at `program`) with `args`, the i-th of
    /// the n-th set binding source address 127.0.n.(10 + i): each set its own addresses,
    /// so that the ports a set leaves in `TIME_WAIT` never slow the next one's binds.
    pub(super) fn start(program: &Path, workers: usize, args: &[&str]) -> Result<Holders, String> {
        let set = SETS.fetch_add(1, Relaxed) % 250 + 1;
        let spawn = |i| {
            let source = format!("127.0.{set}.{}", 10 + i);
            spawn(program, &[args, &["--hold", "--bind", &source]].concat())
        };
        (0..workers)
            .map(spawn)
            .collect::<Result<_, _>>()
            .map(Holders)
    }

    /// Sends each worker its command (they work at once), then reads every answer, as the
    /// numbers after its first word.
    pub(super) fn ask(&mut self, commands: &[String], wait: Duration) -> Result<Answers, String> {
        for ((_, stdin, _), command) in self.0.iter_mut().zip(commands) {
            writeln!(stdin, "{command}").map_err(|e| format!("loadgen --hold: {e}"))?;
        }
        let answers = self.0.iter().zip(commands).map(|((_, _, rx), command)| {
            let answer = wait_for(rx, wait, |line| Some(line.to_string()));
            let answer = answer.ok_or(format!("loadgen --hold: no answer to {command:?}"))?;
            let numbers = answer.split_whitespace().skip(1);
            Ok(numbers.filter_map(|n| n.parse().ok()).collect())
        });
        answers.collect()
    }
}

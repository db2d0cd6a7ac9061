//! The suite's child processes, each killed when dropped: fan-out servers, a
//! `redis-server`, and `loadgen --hold` workers. Their output is read line by line on a
//! thread of its own, and every wait for a line has a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::client::Target;

/// A child process, killed when dropped.
pub struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a child writes, read on a thread of their own.
fn lines(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The first line of `rx` that `accept` takes, within `timeout`.
fn wait_for<T>(
    rx: &Receiver<String>,
    timeout: Duration,
    mut accept: impl FnMut(&str) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        if let Some(found) = accept(&rx.recv_timeout(left).ok()?) {
            return Some(found);
        }
    }
}

/// Spawns `program` with `args`, its output piped.
fn spawn(
    program: &Path,
    args: &[String],
) -> Result<(Process, Receiver<String>, Option<ChildStdin>), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let (stdout, stdin) = (child.stdout.take().ok_or("no stdout")?, child.stdin.take());
    Ok((Process(child), lines(stdout), stdin))
}

/// A fan-out server.
pub struct Server {
    _process: Process,
    /// Its process id.
    pub pid: u32,
    /// Its event stream listener.
    pub addr: SocketAddr,
    /// Its control listener.
    pub control: Target,
}

impl Server {
    /// Starts `fanout-server` (the binary at `program`) with `args`.
    pub fn start(program: &Path, args: &[String]) -> Result<Server, String> {
        let (process, rx, _) = spawn(program, args)?;
        let pid = process.0.id();
        let listening = wait_for(&rx, Duration::from_secs(30), |line| {
            let mut words = line.strip_prefix("LISTENING ")?.split_whitespace();
            Some((
                words.next()?.parse().ok()?,
                words.next()?.parse::<SocketAddr>().ok()?,
            ))
        });
        let (addr, control) = listening.ok_or_else(|| format!("server {args:?} did not start"))?;
        let control = Target::parse(&format!("http://{control}/"))?;
        Ok(Server {
            _process: process,
            pid,
            addr,
            control,
        })
    }

    /// The URL of `path` on the event stream listener.
    pub fn url(&self, path: &str) -> Target {
        Target::parse(&format!("http://{}{path}", self.addr)).expect("a valid URL")
    }
}

/// A `redis-server` on a free loopback port, without persistence.
pub struct Redis {
    _process: Process,
    /// `redis://127.0.0.1:<port>/`.
    pub url: String,
}

impl Redis {
    /// Starts one (`redis-server` on the `PATH`).
    pub fn start() -> Result<Redis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (process, rx, _) = spawn(Path::new("redis-server"), &args)?;
        wait_for(&rx, Duration::from_secs(30), |l| {
            l.contains("Ready to accept").then_some(())
        })
        .ok_or("redis-server did not start")?;
        Ok(Redis {
            _process: process,
            url: format!("redis://127.0.0.1:{port}/"),
        })
    }
}

/// `loadgen --hold` workers, each with its stdin and its answers.
pub struct Holders(Vec<(Process, ChildStdin, Receiver<String>)>);

impl Holders {
    /// Starts `workers` of `loadgen` (the binary at `program`) with `args`, the i-th
    /// also binding source address 127.0.0.(10 + i).
    pub fn start(program: &Path, workers: usize, args: &[String]) -> Result<Holders, String> {
        let mut holders = Vec::new();
        for i in 0..workers {
            let mut args = args.to_vec();
            args.extend([
                "--hold".into(),
                "--bind".into(),
                format!("127.0.0.{}", 10 + i),
            ]);
            let (process, rx, stdin) = spawn(program, &args)?;
            holders.push((process, stdin.ok_or("no stdin")?, rx));
        }
        Ok(Holders(holders))
    }

    /// Workers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sends each worker its command (they work at once), then reads every answer, as
    /// numbers after its first word.
    pub fn ask(&mut self, commands: &[String], timeout: Duration) -> Result<Vec<Vec<f64>>, String> {
        for ((_, stdin, _), command) in self.0.iter_mut().zip(commands) {
            writeln!(stdin, "{command}").map_err(|e| format!("loadgen --hold: {e}"))?;
        }
        let answers = self.0.iter().zip(commands).map(|((_, _, rx), command)| {
            let answer = wait_for(rx, timeout, |line| Some(line.to_string()));
            let answer =
                answer.ok_or_else(|| format!("loadgen --hold: no answer to {command:?}"))?;
            Ok(answer
                .split_whitespace()
                .skip(1)
                .filter_map(|n| n.parse().ok())
                .collect())
        });
        answers.collect()
    }
}

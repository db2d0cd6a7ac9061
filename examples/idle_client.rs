//! The load generator of `tests/idle_memory.rs`: opens `STREAMS` event streams to
//! `ADDR` (`GET $PATH` as an `EventSource` sends it), each on its own connection from the
//! loopback address `SOURCE`, holds them open, and counts the published events they
//! receive.
//!
//! One process holds at most what its open-file limit allows (20,000 here): for more
//! streams, run several, each with another `SOURCE` (`127.0.0.2`, `127.0.0.3`, ...),
//! since one source address has about 28,000 ephemeral ports towards one server port.
//!
//! ```text
//! ADDR=127.0.0.1:3000 STREAMS=10000 SOURCE=127.0.0.2 cargo run --release -p tower-sse-examples --example idle_client
//! ```
//!
//! It prints `HELD <streams> FAILED <failed> SECONDS <s> RATE <streams/s>` once every
//! stream has its response head (200) or failed (at most `CONCURRENCY`, default 256,
//! being opened at a time), then `RECEIVED <events> OPEN <streams>` whenever either
//! changes: an event counts when a stream receives a line `data: published`. It ends when
//! its standard input closes, or after `HOLD_SECS` (default 3,600).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: cannot be read")),
        Err(_) => default,
    }
}

const MARK: &[u8] = b"data: published\n";

#[tokio::main]
async fn main() {
    let addr: SocketAddr = var("ADDR", "127.0.0.1:3000".parse().unwrap());
    let streams: usize = var("STREAMS", 1000);
    let source: IpAddr = var("SOURCE", "127.0.0.1".parse().unwrap());
    let path: String = var("PATH_AND_QUERY", "/events?topic=idle".to_owned());
    let concurrency: usize = var("CONCURRENCY", 256);
    let hold = Duration::from_secs(var("HOLD_SECS", 3600));
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\
         cache-control: no-cache\r\n\r\n"
    );
    let request: Arc<[u8]> = request.into_bytes().into();
    let received = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicU64::new(0));

    let start = Instant::now();
    let opened: Vec<Option<TcpStream>> = futures_util::stream::iter(0..streams)
        .map(|i| {
            let request = request.clone();
            async move {
                open_stream(source, i, addr, &request)
                    .await
                    .map_err(|error| eprintln!("FAILED TO OPEN: {error}"))
                    .ok()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let seconds = start.elapsed().as_secs_f64();
    let held = opened.iter().filter(|s| s.is_some()).count();
    println!(
        "HELD {held} FAILED {} SECONDS {seconds:.3} RATE {:.0}",
        streams - held,
        held as f64 / seconds
    );
    for socket in opened.into_iter().flatten() {
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(hold_stream(socket, received.clone(), open.clone()));
    }

    let report = async {
        let mut last = (u64::MAX, u64::MAX);
        loop {
            let now = (
                received.load(Ordering::Relaxed),
                open.load(Ordering::Relaxed),
            );
            if now != last {
                println!("RECEIVED {} OPEN {}", now.0, now.1);
                last = now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = report => {}
        () = stdin_closed => {}
        () = tokio::time::sleep(hold) => {}
    }
}

/// The local port of the first stream: below the kernel's ephemeral ports.
const FIRST_PORT: u16 = 10_000;

/// Connects from `source`, port `FIRST_PORT + n` (a bound socket whose port the kernel
/// picks takes longer the more ports it has given out), sends `request` and reads the
/// response head, which must be a 200.
async fn open_stream(
    source: IpAddr,
    n: usize,
    addr: SocketAddr,
    request: &[u8],
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    let port = FIRST_PORT + (n % 22_000) as u16;
    socket.bind(SocketAddr::new(source, port))?;
    let mut stream = socket.connect(addr).await?;
    stream.write_all(request).await?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("not a 200"));
    }
    Ok(stream)
}

/// Reads the stream until it ends, counting the published events in it.
async fn hold_stream(mut stream: TcpStream, received: Arc<AtomicU64>, open: Arc<AtomicU64>) {
    let mut buf = [0u8; 1024];
    // The end of the last read, for a mark split across reads.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut seen = std::mem::take(&mut tail);
                seen.extend_from_slice(&buf[..n]);
                let marks = seen.windows(MARK.len()).filter(|w| *w == MARK).count();
                received.fetch_add(marks as u64, Ordering::Relaxed);
                let keep = seen.len().min(MARK.len() - 1);
                tail = seen[seen.len() - keep..].to_vec();
            }
        }
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

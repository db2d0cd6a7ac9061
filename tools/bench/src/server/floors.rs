//! The two floors: `hyper-floor` (hyper's HTTP/1 connection with a body of pre-encoded
//! frames, shared `Bytes`, from one broadcast) and `raw-floor` (a plain accept loop that
//! reads the request head, writes a fixed response head, then every pre-encoded chunk).

use std::convert::Infallible;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, header};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::Sink;

/// Pre-encoded frames, one broadcast for every topic and one for the idle topic.
struct Frames {
    all: broadcast::Sender<Bytes>,
    idle: broadcast::Sender<Bytes>,
    /// With HTTP/1.1's chunk framing around each (the raw floor writes it itself).
    chunked: bool,
}

impl Frames {
    fn new(chunked: bool) -> Arc<Frames> {
        let (all, idle) = (broadcast::channel(1024).0, broadcast::channel(16).0);
        Arc::new(Frames { all, idle, chunked })
    }
}

impl Sink for Frames {
    fn publish(&self, topic: Option<usize>, event_type: Option<&str>, payload: String) {
        let event = event_type.map_or(String::new(), |t| format!("event: {t}\n"));
        let frame = format!("{event}data: {payload}\n\n");
        let frame = match self.chunked {
            true => format!("{:x}\r\n{frame}\r\n", frame.len()),
            false => frame,
        };
        let tx = if topic.is_some() {
            &self.all
        } else {
            &self.idle
        };
        let _ = tx.send(Bytes::from(frame));
    }

    fn subscribers(&self) -> usize {
        self.all.receiver_count() + self.idle.receiver_count()
    }
}

/// Serves every connection `listener` accepts with hyper's HTTP/1 connection (the
/// floors, the control listener, burst's ceiling).
pub async fn serve_http1<S, B>(listener: TcpListener, service: S)
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S: Clone + Send + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            // Out of files, say: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let http1 = hyper::server::conn::http1::Builder::new();
            let _ = http1.serve_connection(TokioIo::new(socket), service).await;
        });
    }
}

/// The `hyper-floor` server.
pub(super) fn start_hyper(listener: TcpListener) -> Arc<dyn Sink> {
    let frames = Frames::new(false);
    let service = tower::service_fn({
        let frames = frames.clone();
        move |request: Request<Incoming>| {
            let tx = match request.uri().path() {
                "/idle" => &frames.idle,
                _ => &frames.all,
            };
            let body = BroadcastStream::new(tx.subscribe())
                .filter_map(|frame| std::future::ready(frame.ok()))
                .map(|frame| Ok::<_, Infallible>(Frame::data(frame)));
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(StreamBody::new(body))
                .expect("a valid response");
            async move { Ok::<_, Infallible>(response) }
        }
    });
    tokio::spawn(serve_http1(listener, service));
    frames
}

/// The `raw-floor` server.
pub(super) fn start_raw(listener: TcpListener) -> Arc<dyn Sink> {
    let frames = Frames::new(true);
    let shared = frames.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(raw_stream(socket, shared.clone()));
        }
    });
    frames
}

async fn raw_stream(mut socket: TcpStream, frames: Arc<Frames>) {
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
        cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while memchr::memmem::find(&head, b"\r\n\r\n").is_none() && head.len() < 16 * 1024 {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let tx = match head.starts_with(b"GET /idle") {
        true => &frames.idle,
        false => &frames.all,
    };
    let mut rx = tx.subscribe();
    drop(head);
    if write_all(&mut socket, HEAD).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Ok(chunk) => {
                    // Chunks already waiting go out in the same write, as hyper does
                    // with the frames a body has ready.
                    let mut more = Vec::new();
                    while let Ok(next) = rx.try_recv() {
                        if more.is_empty() {
                            more.extend_from_slice(&chunk);
                        }
                        more.extend_from_slice(&next);
                    }
                    let bytes = if more.is_empty() { &chunk[..] } else { &more[..] };
                    if write_all(&mut socket, bytes).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            read = socket.read(&mut buf) => if !matches!(read, Ok(n) if n > 0) {
                return;
            },
        }
    }
}

/// Writes all of `bytes` with `writev`, as hyper does: `syscw` counts `write` and
/// `writev` but not `send` (what a plain `write` on a tokio `TcpStream` is on Linux).
async fn write_all(socket: &mut TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match socket.write_vectored(&[IoSlice::new(bytes)]).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

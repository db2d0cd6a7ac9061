//! The two floors, with every topic's frames pre-encoded once into shared `Bytes` on one
//! broadcast (and the idle topic's on another): `hyper-floor`, hyper's HTTP/1
//! connection with a body of those frames; `raw-floor`, a plain accept loop that reads
//! the request head, writes a fixed response head, then every chunk.

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
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_stream::wrappers::BroadcastStream;

use super::publisher::Sink;

/// Frames of every topic and of the idle topic; `chunked`: with HTTP/1.1's chunk
/// framing around each (the raw floor writes no other).
struct Frames {
    all: broadcast::Sender<Bytes>,
    idle: broadcast::Sender<Bytes>,
    chunked: bool,
}

impl Sink for Frames {
    fn publish(&self, topic: Option<usize>, event_type: Option<&'static str>, payload: String) {
        let event = event_type.map_or(String::new(), |t| format!("event: {t}\n"));
        let mut frame = format!("{event}data: {payload}\n\n");
        if self.chunked {
            frame = format!("{:x}\r\n{frame}\r\n", frame.len());
        }
        let _ = self.channel(topic.is_none()).send(Bytes::from(frame));
    }

    fn subscribers(&self) -> usize {
        self.all.receiver_count() + self.idle.receiver_count()
    }
}

impl Frames {
    fn new(chunked: bool) -> Arc<Frames> {
        let (all, idle) = (broadcast::channel(1024).0, broadcast::channel(16).0);
        Arc::new(Frames { all, idle, chunked })
    }

    /// The channel of the idle topic's frames, or of every other topic's.
    fn channel(&self, idle: bool) -> &broadcast::Sender<Bytes> {
        if idle { &self.idle } else { &self.all }
    }
}

/// Calls `serve` with every connection `listener` accepts, on a task of its own.
async fn accept_each<F>(listener: TcpListener, serve: impl Fn(TcpStream) -> F)
where
    F: Future<Output: Send + 'static> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((socket, _)) => drop(tokio::spawn(serve(socket))),
            // Out of files, say: wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Serves every connection `listener` accepts with hyper's HTTP/1 connection (the
/// hyper floor and the control listener).
pub(super) async fn serve_http1<S, B>(listener: TcpListener, service: S)
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S: Clone + Send + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Error = Infallible> + Send + 'static,
    B::Data: Send,
{
    let http1 = hyper::server::conn::http1::Builder::new();
    let service = TowerToHyperService::new(service);
    let serve = move |socket| http1.serve_connection(TokioIo::new(socket), service.clone());
    accept_each(listener, serve).await
}

pub(super) fn start_hyper(listener: TcpListener) -> Arc<dyn Sink> {
    let frames = Frames::new(false);
    let shared = frames.clone();
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let tx = shared.channel(request.uri().path() == "/idle");
        let body = BroadcastStream::new(tx.subscribe())
            .filter_map(|frame| std::future::ready(frame.ok().map(|f| Ok(Frame::data(f)))));
        let response = Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(StreamBody::new(body));
        std::future::ready(Ok(response.expect("a valid response")))
    });
    tokio::spawn(serve_http1(listener, service));
    frames
}

pub(super) fn start_raw(listener: TcpListener) -> Arc<dyn Sink> {
    let frames = Frames::new(true);
    let shared = frames.clone();
    let serve = move |socket| raw_stream(socket, shared.clone());
    tokio::spawn(accept_each(listener, serve));
    frames
}

async fn raw_stream(mut socket: TcpStream, frames: Arc<Frames>) -> std::io::Result<()> {
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
        cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    let (mut head, mut buf) = (Vec::new(), [0u8; 512]);
    while memchr::memmem::find(&head, b"\r\n\r\n").is_none() && head.len() < 16 * 1024 {
        match socket.read(&mut buf).await? {
            0 => return Ok(()),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let mut rx = frames.channel(head.starts_with(b"GET /idle")).subscribe();
    drop(head);
    write_all(&mut socket, HEAD).await?;
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Ok(chunk) => {
                    // Chunks already waiting go out in the same write, as hyper does
                    // with the frames a body has ready.
                    let mut bytes = chunk.to_vec();
                    while let Ok(next) = rx.try_recv() {
                        bytes.extend_from_slice(&next);
                    }
                    write_all(&mut socket, &bytes).await?;
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return Ok(()),
            },
            // The client closed the connection (anything it sends is dropped).
            read = socket.read(&mut buf) => if read? == 0 {
                return Ok(());
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

//! The tools' HTTP client: hyper's HTTP/1 client connection on a socket that may be bound
//! to a source address (many loopback addresses give many more ports) and that counts
//! the bytes it reads (the bytes on the wire, HTTP framing included).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// An `http://` URL, its address resolved once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL.
    pub uri: Uri,
    /// Where to connect.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses an `http://host:port/path` URL and resolves its host.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url}: only http:// URLs"));
        }
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut addrs = (host, uri.port_u16().unwrap_or(80))
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e}"))?;
        let addr = addrs.next().ok_or_else(|| format!("{url}: no address"))?;
        Ok(Target { uri, addr })
    }

    /// The same server, another path.
    pub fn at(&self, path_and_query: &str) -> Target {
        let uri = format!("http://{}{path_and_query}", self.addr);
        Target::parse(&uri).expect("a path on a parsed URL")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.uri.fmt(f)
    }
}

/// A failed request: its kind (reports count failures by kind) and the whole message.
#[derive(Debug)]
pub struct Failure {
    /// Such as `connect ConnectionRefused` or `status 503`.
    pub kind: String,
    /// The message.
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: impl Into<String>, detail: impl ToString) -> Failure {
        let (kind, detail) = (kind.into(), detail.to_string());
        Failure { kind, detail }
    }
}

/// What a request adds to a plain `GET`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `Accept-Encoding`; the answer must then have it as its `Content-Encoding`.
    pub accept_encoding: Option<&'static str>,
    /// The source address to bind.
    pub source: Option<IpAddr>,
    /// Counts every byte read from the socket.
    pub wire: Option<Arc<AtomicU64>>,
}

/// A response whose connection runs on a task of its own, ended when this is dropped.
#[derive(Debug)]
pub struct Response {
    /// Status and headers.
    pub head: http::response::Parts,
    /// The body.
    pub body: Incoming,
    _connection: Aborted,
}

/// The connection's task, aborted when dropped.
#[derive(Debug)]
struct Aborted(JoinHandle<()>);

impl Drop for Aborted {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Response {
    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, Failure> {
        let collected = self.body.collect().await;
        Ok(collected.map_err(|e| Failure::new("body", e))?.to_bytes())
    }
}

async fn connect(target: &Target, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.set_nodelay(true)?;
    socket.connect(target.addr).await
}

/// `GET` with `accept`; returns once the response head is in, whatever its status.
pub async fn get(target: &Target, accept: &str, options: &Options) -> Result<Response, Failure> {
    let socket = connect(target, options.source)
        .await
        .map_err(|e| Failure::new(format!("connect {:?}", e.kind()), e))?;
    let io = TokioIo::new(Counted(socket, options.wire.clone()));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Failure::new("handshake", e))?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = target.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = target.uri.authority().map_or("", |a| a.as_str());
    let mut request = Request::get(path)
        .header(header::HOST, authority)
        .header(header::ACCEPT, accept);
    if let Some(coding) = options.accept_encoding {
        request = request.header(header::ACCEPT_ENCODING, coding);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let response = sender.send_request(request).await;
    let (head, body) = response
        .map_err(|e| Failure::new("no response", e))?
        .into_parts();
    Ok(Response {
        head,
        body,
        _connection: Aborted(connection),
    })
}

/// [`get`] of an event stream: fails unless the answer is `200 text/event-stream` (with
/// the asked `Content-Encoding`, if any).
pub async fn event_stream(target: &Target, options: &Options) -> Result<Response, Failure> {
    let response = get(target, "text/event-stream", options).await?;
    let headers = &response.head.headers;
    if response.head.status != StatusCode::OK {
        let status = response.head.status.as_u16();
        return Err(Failure::new(format!("status {status}"), target));
    }
    let content_type = headers.get(header::CONTENT_TYPE);
    if !content_type.is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream")) {
        return Err(Failure::new(
            "not text/event-stream",
            format!("{content_type:?}"),
        ));
    }
    if let Some(coding) = options.accept_encoding {
        let got = headers.get(header::CONTENT_ENCODING);
        if got.is_none_or(|g| g.as_bytes() != coding.as_bytes()) {
            let detail = format!("asked for {coding}, got {got:?}");
            return Err(Failure::new("content-encoding", detail));
        }
    }
    Ok(response)
}

/// `GET` a JSON document.
pub async fn get_json(target: &Target) -> Result<serde_json::Value, String> {
    let fail = |f: Failure| format!("{target}: {}", f.detail);
    let response = get(target, "application/json", &Options::default()).await;
    let body = response.map_err(fail)?.bytes().await.map_err(fail)?;
    serde_json::from_slice(&body).map_err(|e| format!("{target}: {e}"))
}

/// A socket that adds the bytes it reads to a counter.
struct Counted(TcpStream, Option<Arc<AtomicU64>>);

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.0).poll_read(cx, buf);
        if let Some(wire) = &self.1 {
            wire.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// [`get_json`], from outside a runtime.
pub fn get_json_blocking(target: &Target) -> Result<serde_json::Value, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    runtime
        .map_err(|e| e.to_string())?
        .block_on(get_json(target))
}

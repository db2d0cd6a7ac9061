//! The one HTTP client of the tools: hyper's HTTP/1 client connection, driven by the
//! task that reads the body (no second task per connection), optionally counting every
//! byte it reads from the socket.

use std::future::{Future, poll_fn};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::Empty;
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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
        let addr = (host, uri.port_u16().unwrap_or(80))
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: no address"))?;
        Ok(Target { uri, addr })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.uri.fmt(f)
    }
}

/// The error of a request, by kind (counted by kind in reports) and in detail.
#[derive(Debug)]
pub struct Failure {
    /// Such as `connect ConnectionRefused` or `status 404`.
    pub kind: String,
    /// The whole message.
    pub detail: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: impl Into<String>, detail: impl ToString) -> Failure {
        Failure {
            kind: kind.into(),
            detail: detail.to_string(),
        }
    }
}

/// A socket that adds the bytes it reads to a counter: the bytes on the wire, HTTP
/// framing included (TCP/IP headers not).
#[derive(Debug)]
pub struct Counted {
    socket: TcpStream,
    read: Option<Arc<AtomicU64>>,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.socket).poll_read(cx, buf);
        if let Some(read) = &self.read {
            read.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        result
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

type Connection = http1::Connection<TokioIo<Counted>, Empty<Bytes>>;

/// A response being read: its head, and its body with the connection that feeds it.
pub struct Response {
    /// Status and headers.
    pub head: http::response::Parts,
    body: Incoming,
    connection: Option<Pin<Box<Connection>>>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("head", &self.head)
            .finish()
    }
}

/// Polls the connection (which reads the socket and feeds the body) once, if it runs.
fn drive(
    connection: &mut Option<Pin<Box<Connection>>>,
    cx: &mut std::task::Context<'_>,
) -> Result<(), Failure> {
    if let Some(conn) = connection
        && let Poll::Ready(result) = conn.as_mut().poll(cx)
    {
        *connection = None;
        result.map_err(|e| Failure::new("connection", e))?;
    }
    Ok(())
}

/// Connects to `target` and sends `GET` with `accept`; returns once the response head
/// is in, whatever its status.
pub async fn get(target: &Target, accept: &'static str) -> Result<Response, Failure> {
    get_with(target, accept, &Extra::default()).await
}

/// What a request may add to a plain `GET`.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    /// Sent as `Accept-Encoding`.
    pub accept_encoding: Option<&'static str>,
    /// Counts every byte read from the socket, response head included.
    pub read: Option<Arc<AtomicU64>>,
}

/// [`get`], with `extra`.
pub async fn get_with(
    target: &Target,
    accept: &'static str,
    extra: &Extra,
) -> Result<Response, Failure> {
    let io_kind = |what: &str, e: &std::io::Error| format!("{what} {:?}", e.kind());
    let socket = TcpStream::connect(target.addr)
        .await
        .map_err(|e| Failure::new(io_kind("connect", &e), e))?;
    let _ = socket.set_nodelay(true);
    let socket = Counted {
        socket,
        read: extra.read.clone(),
    };
    let (mut sender, connection) = http1::handshake(TokioIo::new(socket))
        .await
        .map_err(|e| Failure::new("handshake", e))?;
    let mut connection = Some(Box::pin(connection));
    let path = target.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::get(path)
        .header(
            header::HOST,
            target.uri.authority().map_or("", |a| a.as_str()),
        )
        .header(header::ACCEPT, accept)
        .header(header::CACHE_CONTROL, "no-cache");
    if let Some(coding) = extra.accept_encoding {
        request = request.header(header::ACCEPT_ENCODING, coding);
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| Failure::new("request", e))?;
    let mut sent = std::pin::pin!(sender.send_request(request));
    let response = poll_fn(|cx| {
        drive(&mut connection, cx)?;
        sent.as_mut()
            .poll(cx)
            .map_err(|e| Failure::new("no response", e))
    })
    .await?;
    let (head, body) = response.into_parts();
    Ok(Response {
        head,
        body,
        connection,
    })
}

/// Like [`get`], but fails unless the answer is `200 text/event-stream`.
pub async fn event_stream(target: &Target) -> Result<Response, Failure> {
    event_stream_with(target, &Extra::default()).await
}

/// [`event_stream`] with `extra`; with an `accept_encoding`, also fails unless the
/// answer has that `Content-Encoding`.
pub async fn event_stream_with(target: &Target, extra: &Extra) -> Result<Response, Failure> {
    let response = get_with(target, "text/event-stream", extra).await?;
    if response.head.status != http::StatusCode::OK {
        return Err(Failure::new(
            format!("status {}", response.head.status.as_u16()),
            target,
        ));
    }
    let content_type = response.head.headers.get(header::CONTENT_TYPE);
    if !content_type.is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream")) {
        return Err(Failure::new(
            "not text/event-stream",
            format!("{content_type:?}"),
        ));
    }
    if let Some(coding) = extra.accept_encoding {
        let got = response.head.headers.get(header::CONTENT_ENCODING);
        if got.is_none_or(|g| g.as_bytes() != coding.as_bytes()) {
            return Err(Failure::new(
                "content-encoding",
                format!("asked for {coding}, got {got:?}"),
            ));
        }
    }
    Ok(response)
}

impl Response {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, Failure>> {
        poll_fn(|cx| {
            if let Err(failure) = drive(&mut self.connection, cx) {
                return Poll::Ready(Some(Err(failure)));
            }
            loop {
                return match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => Poll::Ready(Some(Ok(data))),
                        Err(_trailers) => continue,
                    },
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Failure::new("body", e)))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                };
            }
        })
        .await
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Vec<u8>, Failure> {
        let mut all = Vec::new();
        while let Some(chunk) = self.chunk().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all)
    }
}

/// `GET` a JSON document.
pub async fn get_json(target: &Target) -> Result<serde_json::Value, String> {
    let response = get(target, "application/json")
        .await
        .map_err(|f| format!("{target}: {}", f.detail))?;
    let body = response
        .bytes()
        .await
        .map_err(|f| format!("{target}: {}", f.detail))?;
    serde_json::from_slice(&body).map_err(|e| format!("{target}: {e}"))
}

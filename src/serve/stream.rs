//! An HTTP/1.1 event stream written by `serve` itself: the response head as hyper writes
//! it, then each frame of the body as one chunk, with nothing kept between frames but
//! the socket and the body. hyper's connection (its 8 KiB read buffer, the write buffer
//! that held the head, a future sized for every request it might serve) is never made
//! for it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, TRAILER, TRANSFER_ENCODING};
use http::response::Parts;
use http::{StatusCode, Version};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::BoxError;
use crate::event_stream::is_event_stream_type;

/// The response head of an event stream, encoded as hyper encodes it (headers in the
/// map's order, lower case; `connection` values on one line; `transfer-encoding:
/// chunked`, then `date` unless the response has one); `None` for any response that is
/// not plainly an event stream of unknown length, which hyper then writes. Also says
/// whether the connection may serve another request after it.
pub(super) fn encode_head<B: Body>(parts: &Parts, body: &B) -> Option<(Bytes, bool)> {
    let plain = parts.status == StatusCode::OK
        && parts.version == Version::HTTP_11
        && parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|value| is_event_stream_type(value.as_bytes()))
        && parts.extensions.get::<hyper::ext::ReasonPhrase>().is_none()
        && !parts.headers.contains_key(CONTENT_LENGTH)
        && !parts.headers.contains_key(TRANSFER_ENCODING)
        && !parts.headers.contains_key(TRAILER)
        && !body.is_end_stream()
        && body.size_hint().exact().is_none();
    if !plain {
        return None;
    }
    let mut head = BytesMut::with_capacity(64 + parts.headers.len() * 32);
    head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    let mut keep_alive = true;
    let mut wrote_date = false;
    // The values of one name come one after the other; hyper joins those of
    // `connection` on one line.
    let mut in_connection = false;
    for (name, value) in &parts.headers {
        if name == CONNECTION {
            let close = value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
            keep_alive &= !close;
            head.extend_from_slice(if in_connection {
                b", "
            } else {
                b"connection: "
            });
            head.extend_from_slice(value.as_bytes());
            in_connection = true;
            continue;
        }
        if std::mem::take(&mut in_connection) {
            head.extend_from_slice(b"\r\n");
        }
        wrote_date |= name == DATE;
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if in_connection {
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    if wrote_date {
        head.extend_from_slice(b"\r\n");
    } else {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
    }
    Some((head.freeze(), keep_alive))
}

/// How an event stream written here ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The body ended and its last chunk was written: the connection may serve another
    /// request, starting with these bytes (sent by the client meanwhile).
    Finished(Bytes),
    /// The client closed the connection, a write failed, or the body failed: the
    /// connection is closed (as hyper closes it, without the last chunk after a body
    /// error, so that the client sees the response cut).
    Closed,
}

/// Chunks up to this size (with their framing) are copied into one buffer and written
/// with one plain write.
const SMALL: usize = 64;

/// What is left to write: the response head or the last chunk, then a chunk's size line,
/// its data and its end.
struct Out {
    head: Bytes,
    size: [u8; 18],
    size_len: u8,
    data: Bytes,
    crlf: bool,
    /// Bytes of the above written so far.
    written: usize,
}

impl Out {
    fn new(head: Bytes) -> Self {
        Out {
            head,
            size: [0; 18],
            size_len: 0,
            data: Bytes::new(),
            crlf: false,
            written: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.head.is_empty() && self.size_len == 0 && self.data.is_empty() && !self.crlf
    }

    /// `data` as one chunk, after what is left.
    fn chunk(&mut self, data: Bytes) {
        debug_assert!(self.size_len == 0 && self.data.is_empty());
        let mut len = data.len();
        let mut digits = [0u8; 16];
        let mut n = 0;
        loop {
            digits[n] = b"0123456789ABCDEF"[len & 0xf];
            n += 1;
            len >>= 4;
            if len == 0 {
                break;
            }
        }
        for i in 0..n {
            self.size[i] = digits[n - 1 - i];
        }
        self.size[n..n + 2].copy_from_slice(b"\r\n");
        self.size_len = (n + 2) as u8;
        self.data = data;
        self.crlf = true;
    }

    fn parts(&self) -> [&[u8]; 4] {
        [
            &self.head,
            &self.size[..self.size_len as usize],
            &self.data,
            if self.crlf { b"\r\n" } else { b"" },
        ]
    }

    /// Writes what is left; ready once all of it is written.
    fn poll_write<IO: AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let mut skip = self.written;
            let mut slices = [IoSlice::new(&[]); 4];
            let mut count = 0;
            for part in self.parts() {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                skip = 0;
                count += 1;
            }
            let slices = &slices[..count];
            let len: usize = slices.iter().map(|slice| slice.len()).sum();
            let n = if count > 1 && len <= SMALL {
                // A heartbeat, say: one plain write of a few bytes costs the kernel
                // less than gathering four pieces.
                let mut small = [0u8; SMALL];
                let mut at = 0;
                for slice in slices {
                    small[at..at + slice.len()].copy_from_slice(slice);
                    at += slice.len();
                }
                ready!(Pin::new(&mut *io).poll_write(cx, &small[..len]))?
            } else {
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, slices))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            let total: usize = self.parts().iter().map(|p| p.len()).sum();
            if self.written >= total {
                // Everything written: nothing of it is kept.
                *self = Out::new(Bytes::new());
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Writes a response head, then every frame of a body as a chunk, until the body ends,
/// the client goes, or a write fails. Reads on the side, to notice a client that closes
/// the connection (as hyper does): a byte that comes instead (a request sent after this
/// one) is kept for the next request, and reading stops there.
///
/// Between frames it holds no buffer: a frame is written from the very `Bytes` the body
/// gave, with its chunk size line on the side.
pub(super) struct Writer {
    out: Out,
    /// The head is not written yet: it goes out with the first frame if the body has
    /// one at once (one write, as hyper makes it).
    first: bool,
    /// The last chunk is queued: the stream ends once it is written.
    finished: bool,
    /// Bytes the client sent after its request.
    after: Option<Bytes>,
}

impl Writer {
    pub(super) fn new(head: Bytes) -> Self {
        Writer {
            out: Out::new(head),
            first: true,
            finished: false,
            after: None,
        }
    }

    pub(super) fn poll<IO, B>(
        &mut self,
        io: &mut IO,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Ended>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        B: Body,
        B::Error: Into<BoxError>,
    {
        loop {
            if self.after.is_none() {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                        tracing::debug!("event stream: the client closed the connection");
                        return Poll::Ready(Ended::Closed);
                    }
                    Poll::Ready(Ok(())) => self.after = Some(Bytes::copy_from_slice(buf.filled())),
                    Poll::Ready(Err(error)) if client_went_away(&error) => {
                        tracing::debug!("event stream: the client closed the connection");
                        return Poll::Ready(Ended::Closed);
                    }
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "event stream: reading failed");
                        return Poll::Ready(Ended::Closed);
                    }
                    Poll::Pending => {}
                }
            }
            if !self.first || self.finished {
                match self.out.poll_write(io, cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) if client_went_away(&error) => {
                        tracing::debug!("event stream: the client closed the connection");
                        return Poll::Ready(Ended::Closed);
                    }
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "event stream: writing failed");
                        return Poll::Ready(Ended::Closed);
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.finished {
                return Poll::Ready(Ended::Finished(self.after.take().unwrap_or_default()));
            }
            let polled = body.as_mut().poll_frame(cx);
            let was_first = std::mem::replace(&mut self.first, false);
            match polled {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    // No copy for `Bytes`.
                    Ok(mut data) if data.has_remaining() => {
                        self.out.chunk(data.copy_to_bytes(data.remaining()))
                    }
                    // Trailers are not sent (no `TE: trailers` was asked for), and an
                    // empty frame is nothing.
                    _ => {}
                },
                Poll::Ready(Some(Err(error))) => {
                    let error: BoxError = error.into();
                    tracing::debug!(%error, "event stream: the body failed");
                    return Poll::Ready(Ended::Closed);
                }
                Poll::Ready(None) => {
                    // The last chunk joins whatever is left to write.
                    let mut end = BytesMut::with_capacity(self.out.head.len() + 5);
                    if was_first {
                        end.extend_from_slice(&self.out.head);
                    }
                    end.extend_from_slice(b"0\r\n\r\n");
                    if was_first {
                        self.out.head = end.freeze();
                    } else {
                        self.out = Out::new(end.freeze());
                    }
                    self.finished = true;
                }
                Poll::Pending if was_first => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Whether `error` only says that the client went away (a closed browser tab): it
/// reset the connection, or closed it while a write was under way.
pub(super) fn client_went_away(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// [`Writer`] as an `async fn`.
#[cfg(test)]
async fn write<IO, B>(io: &mut IO, head: Bytes, body: B) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin,
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut writer = Writer::new(head);
    std::future::poll_fn(|cx| writer.poll(io, body.as_mut(), cx)).await
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::Response;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    type Frames = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>,
    >;

    fn frames(data: &[&'static str]) -> Frames {
        let frames: Vec<_> = data
            .iter()
            .map(|d| Ok(http_body::Frame::data(Bytes::from_static(d.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn stream_response<B>(body: B) -> Response<B> {
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .header("connection", "keep-alive")
            .header("x-accel-buffering", "no")
            .body(body)
            .unwrap()
    }

    /// What hyper writes for `response`, on a real HTTP/1.1 server connection.
    async fn hyper_writes<B>(response: Response<B>) -> Vec<u8>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let response = std::sync::Mutex::new(Some(response));
        let service = hyper::service::service_fn(move |_| {
            let response = response.lock().unwrap().take().unwrap();
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), service),
        );
        client
            .write_all(b"GET / HTTP/1.1\r\naccept: text/event-stream\r\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.ends_with(b"0\r\n\r\n") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
        drop(client);
        let _ = connection.await;
        seen
    }

    /// What `write` writes for `response`.
    async fn written<B>(response: Response<B>) -> (Vec<u8>, bool)
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = response.into_parts();
        let (head, keep_alive) = encode_head(&parts, &body).expect("served here");
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let ended = write(&mut server, head, body).await;
        assert!(matches!(ended, Ended::Finished(ref after) if after.is_empty()));
        drop(server);
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).await.unwrap();
        (seen, keep_alive)
    }

    /// The date line aside (it may change between the two), the bytes are hyper's.
    fn without_date(bytes: &[u8]) -> String {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text.lines()
            .filter(|line| !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn the_head_and_the_chunks_are_the_bytes_hyper_writes() {
        let events = ["retry: 2000\n", "data: one\n\n", "data: two\nid: 2\n\n"];
        let hyper = hyper_writes(stream_response(frames(&events).boxed())).await;
        let (ours, keep_alive) = written(stream_response(frames(&events))).await;
        assert_eq!(without_date(&ours), without_date(&hyper));
        assert!(keep_alive);
        let text = String::from_utf8(ours).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"));
        assert!(text.contains("\r\ntransfer-encoding: chunked\r\ndate: "));
        assert!(text.ends_with("\r\n\r\nC\r\nretry: 2000\n\r\nB\r\ndata: one\n\n\r\n11\r\ndata: two\nid: 2\n\n\r\n0\r\n\r\n"));
    }

    /// Through a pipe that takes 3 bytes at a time, every write is partial: small
    /// chunks (copied into one write) and large ones (written from their pieces) still
    /// arrive whole and in order.
    #[tokio::test]
    async fn partial_writes_of_small_and_large_chunks_lose_nothing() {
        let large: &'static str =
            "data: 0123456789012345678901234567890123456789012345678901234567890123456789\n\n";
        let events = [":\n\n", large, "data: x\n\n", large, ":\n\n"];
        let response = stream_response(frames(&events));
        let (parts, body) = response.into_parts();
        let (head, _) = encode_head(&parts, &body).expect("served here");
        let (mut client, mut server) = tokio::io::duplex(3);
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            client.read_to_end(&mut seen).await.unwrap();
            seen
        });
        let ended = write(&mut server, head.clone(), body).await;
        assert!(matches!(ended, Ended::Finished(_)));
        drop(server);
        let seen = reader.await.unwrap();
        let mut expected = head.to_vec();
        for event in events {
            expected.extend_from_slice(format!("{:X}\r\n{event}\r\n", event.len()).as_bytes());
        }
        expected.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            String::from_utf8(seen).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[tokio::test]
    async fn connection_values_and_a_date_of_its_own_are_written_as_hyper_writes_them() {
        let response = || {
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("connection", "keep-alive")
                .header("x-a", "1")
                .header("connection", "x-b")
                .header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
                .header("x-a", "2")
        };
        let hyper = hyper_writes(response().body(frames(&["data: x\n\n"]).boxed()).unwrap()).await;
        let (ours, keep_alive) = written(response().body(frames(&["data: x\n\n"])).unwrap()).await;
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(hyper).unwrap()
        );
        assert!(keep_alive);
        let close = Response::builder()
            .header("content-type", "text/event-stream")
            .header("connection", "close")
            .body(frames(&["data: x\n\n"]))
            .unwrap();
        assert!(!written(close).await.1);
    }

    #[test]
    fn other_responses_are_left_to_hyper() {
        let body = || frames(&["data: x\n\n"]);
        let not_ours = [
            Response::builder()
                .status(404)
                .header("content-type", "text/event-stream"),
            Response::builder().header("content-type", "text/plain"),
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("content-length", "9"),
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("transfer-encoding", "chunked"),
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("trailer", "x-a"),
            Response::builder()
                .header("content-type", "text/event-stream")
                .version(Version::HTTP_10),
        ];
        for builder in not_ours {
            let (parts, body) = builder.body(body()).unwrap().into_parts();
            assert!(encode_head(&parts, &body).is_none(), "{parts:?}");
        }
        let full = Response::builder()
            .header("content-type", "text/event-stream")
            .body(http_body_util::Full::new(Bytes::from_static(
                b"data: x\n\n",
            )))
            .unwrap();
        let (parts, body) = full.into_parts();
        assert!(encode_head(&parts, &body).is_none());
    }

    #[tokio::test]
    async fn a_client_that_closes_ends_the_stream_and_bytes_it_sends_are_kept() {
        let pending = || {
            stream_response(StreamBody::new(futures_util::stream::pending::<
                Result<http_body::Frame<Bytes>, Infallible>,
            >()))
        };
        let (parts, body) = pending().into_parts();
        let (head, _) = encode_head(&parts, &body).unwrap();
        let (client, mut server) = tokio::io::duplex(1 << 16);
        drop(client);
        assert!(matches!(
            write(&mut server, head, body).await,
            Ended::Closed
        ));

        // A request sent after this one: kept, and the stream goes on until its end.
        let (parts, _) = pending().into_parts();
        let body = frames(&["data: x\n\n"]);
        let (head, _) = encode_head(&parts, &body).unwrap();
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(b"G").await.unwrap();
        match write(&mut server, head, body).await {
            Ended::Finished(after) => assert_eq!(&after[..], b"G"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_body_that_fails_closes_the_connection_without_the_last_chunk() {
        let failing = StreamBody::new(futures_util::stream::iter([
            Ok(http_body::Frame::data(Bytes::from_static(b"data: x\n\n"))),
            Err(io::Error::other("broken")),
        ]));
        let (parts, body) = stream_response(failing).into_parts();
        let (head, _) = encode_head(&parts, &body).unwrap();
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        assert!(matches!(
            write(&mut server, head, body).await,
            Ended::Closed
        ));
        drop(server);
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).await.unwrap();
        assert!(seen.ends_with(b"9\r\ndata: x\n\n\r\n"));
    }
}

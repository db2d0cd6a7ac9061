//! Compressed event streams (`SseLayer::compression`) over real connections: every frame
//! decodes, with a decoder of its own, into exactly the events written so far, and the
//! end of each stream decodes as complete.
//!
//! - `every_frame_decodes_at_once_into_exactly_its_events`: each codec, HTTP/1.1 and
//!   HTTP/2, one event per frame; the whole wire decodes as one complete stream, and
//!   without its end it reads as incomplete.
//! - `heartbeats_decode_to_empty_comments`, `a_batched_group_decodes_to_exactly_its_events`,
//!   `an_event_larger_than_the_window_and_the_frame_decodes_whole`: what else the layer
//!   writes goes through the compressor and decodes exactly.
//! - `every_way_a_stream_ends_writes_a_complete_compressed_stream`: finished, failed and
//!   shut-down streams end with their codec's end (gzip's trailer...).
//! - `an_outer_compression_layer_leaves_the_stream_compressed_once`: tower-http's
//!   `CompressionLayer` around the `SseLayer`, set to compress everything.
//! - `a_hostile_accept_encoding_gets_identity_without_error`: huge values, thousands of
//!   codings, bad q-values, not UTF-8.
//! - `a_client_that_leaves_mid_frame_is_reported_as_client_gone`: HTTP/1.1 and HTTP/2.
//! - `chromium_gets_each_<codec>_event_live`: Debian's Chromium (driven by
//!   `tests/browser/driver.mjs`, on `tests/browser/compression.html`) gets each event of
//!   a stream compressed with that codec alone before the next is sent (lock-step); the
//!   frames written decode exactly, and Chromium's own encoded and decoded sizes of the
//!   stream are the wire's and the events'. `identity` runs the same for comparison.
//! - `nginx_passes_each_compressed_event_live`: a real nginx in front, with its
//!   defaults (HTTP/1.0 upstream) and with HTTP/1.1 upstream; lock-step again.
//!
//! The browser tests need `/usr/bin/chromium`, `node` and `tests/browser/node_modules`;
//! the nginx test needs `/usr/sbin/nginx`: `tests/run.sh` installs them. They run with
//! the features `test-browser` and `test-nginx` (a plain `cargo test` lists them as
//! ignored); then, when one is missing, they fail, saying so; they never skip.

#![cfg(feature = "compression-full")]

#[path = "browser/driver.rs"]
mod driver;
mod support;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Html;
use axum::routing::get as get_route;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, service_fn};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::SizeAbove;
use tower_sse::{EndReason, Event, Sse, SseLayer, StreamCompression};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CODECS: [&str; 4] = ["gzip", "deflate", "br", "zstd"];

/// How long anything may take before the test calls it stuck: a hang guard, never a
/// measurement.
const HANG: Duration = Duration::from_secs(30);

/// `what`, or a failure saying it never happened.
async fn guard<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {HANG:?}"))
}

/// A decoder fed the wire frame by frame, holding what it has decoded so far.
enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Brotli(Box<BrotliStream>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

/// brotli's streaming decoder, driven directly. (brotli-decompressor's
/// `DecompressorWriter` keeps part of a large frame's output back until the next
/// write: its decoder can answer "needs more input" with output still pending, which it
/// gives when called again.)
struct BrotliStream {
    state: brotli::BrotliState<
        brotli::HeapAlloc<u8>,
        brotli::HeapAlloc<u32>,
        brotli::HeapAlloc<brotli::HuffmanCode>,
    >,
    total_out: usize,
}

impl BrotliStream {
    fn new() -> Self {
        BrotliStream {
            state: brotli::BrotliState::new(
                brotli::HeapAlloc::new(0),
                brotli::HeapAlloc::new(0),
                brotli::HeapAlloc::new(brotli::HuffmanCode::default()),
            ),
            total_out: 0,
        }
    }

    fn feed(&mut self, frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; 16 * 1024];
        let (mut avail_in, mut in_offset) = (frame.len(), 0);
        loop {
            let (mut avail_out, mut out_offset) = (buf.len(), 0);
            let result = brotli::BrotliDecompressStream(
                &mut avail_in,
                &mut in_offset,
                frame,
                &mut avail_out,
                &mut out_offset,
                &mut buf,
                &mut self.total_out,
                &mut self.state,
            );
            out.extend_from_slice(&buf[..out_offset]);
            match result {
                brotli::BrotliResult::NeedsMoreOutput => {}
                // Called again until it has nothing more to give.
                brotli::BrotliResult::NeedsMoreInput if out_offset > 0 => {}
                brotli::BrotliResult::NeedsMoreInput | brotli::BrotliResult::ResultSuccess => {
                    assert_eq!(avail_in, 0, "brotli: bytes after the end of the stream");
                    return out;
                }
                brotli::BrotliResult::ResultFailure => panic!("brotli: invalid data"),
            }
        }
    }
}

impl Decoder {
    fn new(codec: &str) -> Self {
        match codec {
            "gzip" => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            "deflate" => Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            "br" => Decoder::Brotli(Box::new(BrotliStream::new())),
            "zstd" => Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new()).unwrap()),
            other => panic!("no decoder for {other}"),
        }
    }

    /// Feeds one frame; gives everything decoded from it.
    fn feed(&mut self, frame: &[u8]) -> Vec<u8> {
        let out = match self {
            Decoder::Gzip(d) => {
                d.write_all(frame).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
            Decoder::Deflate(d) => {
                d.write_all(frame).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
            Decoder::Brotli(d) => return d.feed(frame),
            Decoder::Zstd(d) => {
                d.write_all(frame).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
        };
        std::mem::take(out)
    }
}

/// The whole of a compressed stream, decoded; an error unless it is one complete
/// stream of `codec` (gzip's trailer with its CRC and length, zlib's Adler-32, brotli's
/// last meta-block, zstd's last block) with nothing after it.
fn decode_whole(codec: &str, wire: &[u8]) -> Result<Vec<u8>, String> {
    match codec {
        "gzip" => {
            // RFC 1952: a 10-byte header (zlib writes no optional fields), raw deflate,
            // then CRC-32 and the length, little-endian.
            let header = wire.get(..10).ok_or("no gzip header")?;
            if header[..3] != [0x1f, 0x8b, 8] || header[3] != 0 {
                return Err(format!("unexpected gzip header {header:02x?}"));
            }
            let (out, used) = inflate(&wire[10..], false)?;
            let trailer = &wire[10 + used..];
            if trailer.len() != 8 {
                return Err(format!(
                    "{} bytes after the deflate data, not 8",
                    trailer.len()
                ));
            }
            let mut crc = flate2::Crc::new();
            crc.update(&out);
            let want_crc = u32::from_le_bytes(trailer[..4].try_into().unwrap());
            let want_len = u32::from_le_bytes(trailer[4..].try_into().unwrap());
            if crc.sum() != want_crc || out.len() as u32 != want_len {
                return Err("the gzip trailer does not match the data".into());
            }
            Ok(out)
        }
        "deflate" => {
            let (out, used) = inflate(wire, true)?;
            if used != wire.len() {
                return Err(format!("{} bytes after the zlib stream", wire.len() - used));
            }
            Ok(out)
        }
        "br" => {
            let mut out = Vec::new();
            brotli::Decompressor::new(wire, 4096)
                .read_to_end(&mut out)
                .map_err(|e| format!("brotli: {e}"))?;
            Ok(out)
        }
        "zstd" => {
            let mut decoder = zstd::stream::raw::Decoder::new().unwrap();
            let mut out = Vec::new();
            let mut buf = vec![0; 64 * 1024];
            let mut input = wire;
            let mut remaining = 1;
            while !input.is_empty() || remaining > 0 {
                use zstd::stream::raw::Operation;
                let status = decoder
                    .run_on_buffers(input, &mut buf)
                    .map_err(|e| format!("zstd: {e}"))?;
                out.extend_from_slice(&buf[..status.bytes_written]);
                input = &input[status.bytes_read..];
                remaining = status.remaining;
                if status.bytes_read == 0 && status.bytes_written == 0 {
                    break;
                }
            }
            if remaining != 0 || !input.is_empty() {
                return Err(format!(
                    "zstd: the frame is not complete ({remaining} bytes short)"
                ));
            }
            Ok(out)
        }
        other => panic!("no decoder for {other}"),
    }
}

/// Raw deflate (or zlib) data inflated to its final block: the output and the bytes of
/// input it took.
fn inflate(input: &[u8], zlib: bool) -> Result<(Vec<u8>, usize), String> {
    let mut inflater = flate2::Decompress::new(zlib);
    let mut out = Vec::with_capacity(input.len() * 4 + 1024);
    loop {
        let used = inflater.total_in() as usize;
        let status = inflater
            .decompress_vec(&input[used..], &mut out, flate2::FlushDecompress::Finish)
            .map_err(|e| format!("inflate: {e}"))?;
        match status {
            flate2::Status::StreamEnd => return Ok((out, inflater.total_in() as usize)),
            _ if out.len() == out.capacity() => out.reserve(out.capacity()),
            _ => return Err("the deflate data ends before its final block".into()),
        }
    }
}

/// An event stream the test writes into: `Ok` events, or an `Err` that fails it.
type Sender = mpsc::UnboundedSender<Result<Event, std::io::Error>>;

/// A stream the server opened: its sender, and what the request came with.
struct Opened {
    sender: Sender,
    accept_encoding: Vec<HeaderValue>,
    version: http::Version,
}

/// A server where every request gets an event stream from the test, through `layer`:
/// the test gets the stream's sender, and the request's `Accept-Encoding` values.
async fn channel_server(layer: SseLayer) -> (TestServer, mpsc::UnboundedReceiver<Opened>) {
    let (senders_tx, senders) = mpsc::unbounded_channel();
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        move |request: Request<Incoming>| {
            let (tx, rx) = mpsc::unbounded_channel();
            let accept_encoding = request
                .headers()
                .get_all("accept-encoding")
                .iter()
                .cloned()
                .collect();
            let version = request.version();
            senders_tx
                .send(Opened {
                    sender: tx,
                    accept_encoding,
                    version,
                })
                .unwrap();
            let events = Sse::new(UnboundedReceiverStream::new(rx));
            async move { Ok::<_, Infallible>(events.into_response()) }
        },
    ));
    (serve(service).await, senders)
}

/// A layer that reports each stream's end on the channel it gives.
fn reporting(layer: SseLayer) -> (SseLayer, mpsc::UnboundedReceiver<(EndReason, u64, u64)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let layer = layer.on_end(move |end| {
        let _ = tx.send((end.reason, end.events, end.bytes));
    });
    (layer, rx)
}

/// `GET /events` accepting `accept_encoding`, over HTTP/1.1 or HTTP/2.
async fn open(addr: SocketAddr, accept_encoding: &str, http2: bool) -> Response<Incoming> {
    let request = get("/events")
        .header("accept-encoding", accept_encoding)
        .body(empty())
        .unwrap();
    if http2 {
        h2_connect(addr).await.send(request).await
    } else {
        h1_connect(addr).await.send(request).await
    }
}

/// A flight position as JSON, different for each `n`: the kind of event that
/// compresses well across frames.
fn position(n: usize) -> Event {
    Event::builder()
        .event("position")
        .id(&n.to_string())
        .data(&format!(
            r#"{{"flight":"TG{n:03}","lat":13.{n},"lon":100.{n},"alt":35000}}"#
        ))
        .build()
        .unwrap()
}

/// `len` bytes of text a compressor can do little with: letters and digits from a
/// fixed pseudo-random sequence.
fn noise(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % 64) as usize] as char
        })
        .collect()
}

#[tokio::test]
async fn every_frame_decodes_at_once_into_exactly_its_events() {
    let (server, mut senders) =
        channel_server(SseLayer::new().compression(StreamCompression::new())).await;
    for codec in CODECS {
        for http2 in [false, true] {
            let response = open(server.addr, codec, http2).await;
            assert_eq!(response.headers()["content-encoding"], codec);
            assert_eq!(response.headers()["vary"], "accept-encoding");
            let mut body = response.into_body();
            let Opened { sender, .. } =
                within("the stream's sender", senders.recv()).await.unwrap();
            let mut decoder = Decoder::new(codec);
            let mut plain = Vec::new();
            let mut wire = Vec::new();
            for n in 0..50 {
                let event = position(n);
                sender.send(Ok(event.clone())).unwrap();
                let frame: Bytes = guard("an event", next_data(&mut body)).await.unwrap();
                wire.extend_from_slice(&frame);
                plain.extend_from_slice(event.as_bytes());
                assert_eq!(
                    decoder.feed(&frame),
                    event.as_bytes().as_ref(),
                    "{codec} http2={http2} event {n}"
                );
            }
            eprintln!(
                "{codec} http2={http2}: {} bytes of events, {} on the wire",
                plain.len(),
                wire.len()
            );
            assert!(wire.len() < plain.len(), "{codec} made it smaller");
            let events_only = wire.len();
            drop(sender);
            // The end of the compressed stream, then the end of the body.
            while let Some(frame) = guard("the end", next_data(&mut body)).await {
                assert!(decoder.feed(&frame).is_empty());
                wire.extend_from_slice(&frame);
            }
            assert!(
                wire.len() > events_only,
                "{codec}: the stream's end was written"
            );
            assert_eq!(
                decode_whole(codec, &wire).unwrap_or_else(|e| panic!("{codec}: {e}")),
                plain,
                "{codec} http2={http2}: the whole wire is one complete stream"
            );
            let cut = decode_whole(codec, &wire[..events_only]);
            assert!(
                cut.is_err(),
                "{codec}: without its end the stream must read as incomplete, got {} bytes",
                cut.unwrap().len()
            );
        }
    }
}

#[tokio::test]
async fn heartbeats_decode_to_empty_comments() {
    let layer = SseLayer::new()
        .heartbeat(Duration::from_millis(10))
        // Three heartbeats would otherwise be the stall timeout: a busy test is no
        // stalled client.
        .no_stall_timeout()
        .compression(StreamCompression::new());
    let (server, mut senders) = channel_server(layer).await;
    for codec in CODECS {
        for http2 in [false, true] {
            let response = open(server.addr, codec, http2).await;
            assert_eq!(response.headers()["content-encoding"], codec);
            let mut body = response.into_body();
            let Opened { sender, .. } =
                within("the stream's sender", senders.recv()).await.unwrap();
            let mut decoder = Decoder::new(codec);
            for beat in 0..3 {
                let frame = guard("a heartbeat", next_data(&mut body)).await.unwrap();
                assert_eq!(
                    decoder.feed(&frame),
                    b":\n\n",
                    "{codec} http2={http2} heartbeat {beat}"
                );
            }
            // An event between heartbeats decodes whole, and so does the next heartbeat.
            let event = position(7);
            sender.send(Ok(event.clone())).unwrap();
            let mut seen = Vec::new();
            loop {
                let frame = guard("the event", next_data(&mut body)).await.unwrap();
                let plain = decoder.feed(&frame);
                if plain == b":\n\n" {
                    continue;
                }
                seen.push(plain);
                break;
            }
            assert_eq!(seen, [event.as_bytes().to_vec()], "{codec} http2={http2}");
            let frame = guard("a heartbeat", next_data(&mut body)).await.unwrap();
            assert_eq!(decoder.feed(&frame), b":\n\n", "{codec} http2={http2}");
        }
    }
}

// The current-thread runtime: the events of a group are all sent before the server's
// task runs again, so they are all ready when the batch goes out.
#[tokio::test]
async fn a_batched_group_decodes_to_exactly_its_events() {
    let layer = SseLayer::new()
        .batch_delay(Duration::from_millis(20))
        .compression(StreamCompression::new());
    let (server, mut senders) = channel_server(layer).await;
    for codec in CODECS {
        for http2 in [false, true] {
            let mut body = open(server.addr, codec, http2).await.into_body();
            let Opened { sender, .. } =
                within("the stream's sender", senders.recv()).await.unwrap();
            let mut decoder = Decoder::new(codec);
            for group in 0..3 {
                let events: Vec<Event> = (0..5).map(|i| position(group * 5 + i)).collect();
                for event in &events {
                    sender.send(Ok(event.clone())).unwrap();
                }
                let frame = guard("a batch", next_data(&mut body)).await.unwrap();
                let want: Vec<u8> = events.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
                assert_eq!(
                    String::from_utf8(decoder.feed(&frame)).unwrap(),
                    String::from_utf8(want).unwrap(),
                    "{codec} http2={http2} group {group}: one frame, exactly its five events"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_event_larger_than_the_window_and_the_frame_decodes_whole() {
    // A 1 KiB window and 16 KiB frames; the big event is 300 KB of lines that repeat
    // only further apart than the window.
    let layer = SseLayer::new()
        .max_frame_size(16 * 1024)
        .compression(StreamCompression::new().window(1024));
    let (server, mut senders) = channel_server(layer).await;
    let block = noise(3000, 7);
    let big_data: String = (0..100)
        .map(|i| format!("{i:03} {block}"))
        .collect::<Vec<_>>()
        .join("\n");
    let big = Event::builder().id("big").data(&big_data).build().unwrap();
    assert!(big.as_bytes().len() > 300_000);
    for codec in CODECS {
        for http2 in [false, true] {
            let mut body = open(server.addr, codec, http2).await.into_body();
            let Opened { sender, .. } =
                within("the stream's sender", senders.recv()).await.unwrap();
            let mut decoder = Decoder::new(codec);
            for event in [
                position(1),
                big.clone(),
                position(2),
                big.clone(),
                position(3),
            ] {
                sender.send(Ok(event.clone())).unwrap();
                // The event is written as one frame, however large; HTTP/2 carries it in
                // several DATA frames, so read until it has all decoded.
                let mut plain = Vec::new();
                while plain.len() < event.as_bytes().len() {
                    let frame = guard("the event", next_data(&mut body)).await.unwrap();
                    plain.extend(decoder.feed(&frame));
                }
                assert!(
                    plain == event.as_bytes().as_ref(),
                    "{codec} http2={http2}: an event of {} bytes decoded to {} other bytes",
                    event.as_bytes().len(),
                    plain.len()
                );
            }
        }
    }
}

#[tokio::test]
async fn every_way_a_stream_ends_writes_a_complete_compressed_stream() {
    let shutdown = CancellationToken::new();
    let bye = Event::builder()
        .retry(Duration::from_millis(500))
        .build()
        .unwrap();
    let (layer, mut reports) = reporting(
        SseLayer::new()
            .graceful_shutdown(shutdown.clone())
            .shutdown_event(bye.clone())
            .compression(StreamCompression::new()),
    );
    let (server, mut senders) = channel_server(layer).await;
    // Each codec over HTTP/1.1 then HTTP/2: a stream that finishes, then one that fails.
    for codec in CODECS {
        for http2 in [false, true] {
            for fail in [false, true] {
                let mut body = open(server.addr, codec, http2).await.into_body();
                let Opened { sender, .. } =
                    within("the stream's sender", senders.recv()).await.unwrap();
                let mut want = Vec::new();
                let mut wire = Vec::new();
                for n in 0..3 {
                    sender.send(Ok(position(n))).unwrap();
                    want.extend_from_slice(position(n).as_bytes());
                    wire.extend(guard("an event", next_data(&mut body)).await.unwrap());
                }
                if fail {
                    sender.send(Err(std::io::Error::other("boom"))).unwrap();
                } else {
                    drop(sender);
                }
                while let Some(frame) = guard("the end", next_data(&mut body)).await {
                    wire.extend(frame);
                }
                let what = format!("{codec} http2={http2} fail={fail}");
                let plain = decode_whole(codec, &wire).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(plain, want, "{what}");
                let (reason, events, _) = guard("the report", reports.recv()).await.unwrap();
                let expected = if fail {
                    EndReason::Error
                } else {
                    EndReason::Finished
                };
                assert_eq!((reason, events), (expected, 3), "{what}");
            }
        }
    }
    // Shutdown: every open stream writes the shutdown event, then its codec's end.
    let mut open_streams = Vec::new();
    for codec in CODECS {
        for http2 in [false, true] {
            let mut body = open(server.addr, codec, http2).await.into_body();
            let Opened { sender, .. } =
                within("the stream's sender", senders.recv()).await.unwrap();
            sender.send(Ok(position(1))).unwrap();
            let first = guard("an event", next_data(&mut body)).await.unwrap();
            open_streams.push((codec, http2, body, sender, first.to_vec()));
        }
    }
    shutdown.cancel();
    for (codec, http2, mut body, _sender, mut wire) in open_streams {
        while let Some(frame) = guard("the end", next_data(&mut body)).await {
            wire.extend(frame);
        }
        let what = format!("{codec} http2={http2} shutdown");
        let plain = decode_whole(codec, &wire).unwrap_or_else(|e| panic!("{what}: {e}"));
        let want = [position(1).as_bytes().as_ref(), bye.as_bytes().as_ref()].concat();
        assert_eq!(plain, want, "{what}");
    }
    for _ in 0..CODECS.len() * 2 {
        let (reason, _, _) = guard("the report", reports.recv()).await.unwrap();
        assert_eq!(reason, EndReason::Shutdown);
    }
}

/// A service answering `/events` with an event stream from the test (through `sse`)
/// and anything else with a page of text, all behind tower-http's `CompressionLayer`
/// set to compress every response.
async fn behind_compression_layer(sse: SseLayer) -> (TestServer, mpsc::UnboundedReceiver<Opened>) {
    let (senders_tx, senders) = mpsc::unbounded_channel();
    let inner = service_fn(move |request: Request<Incoming>| {
        let response = if request.uri().path() == "/events" {
            let (tx, rx) = mpsc::unbounded_channel();
            senders_tx
                .send(Opened {
                    sender: tx,
                    accept_encoding: Vec::new(),
                    version: request.version(),
                })
                .unwrap();
            Sse::new(UnboundedReceiverStream::new(rx))
                .into_response()
                .map(|body| body.boxed())
        } else {
            let page = "tower-sse under tower-http's compression. ".repeat(50);
            Response::builder()
                .header("content-type", "text/plain")
                .body(
                    http_body_util::Full::new(Bytes::from(page))
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .unwrap()
        };
        async move { Ok::<_, Infallible>(response) }
    });
    let service = ServiceBuilder::new()
        .layer(CompressionLayer::new().compress_when(SizeAbove::new(0)))
        .layer(sse)
        .service(inner);
    (serve(service).await, senders)
}

#[tokio::test]
async fn an_outer_compression_layer_leaves_the_stream_compressed_once() {
    let all = StreamCompression::new();
    let only_gzip = StreamCompression::new()
        .zstd(false)
        .br(false)
        .deflate(false);
    let only_zstd = StreamCompression::new()
        .gzip(false)
        .br(false)
        .deflate(false);
    let browser = "gzip, deflate, br, zstd";
    // (the SseLayer's compression, Accept-Encoding, the stream's encoding)
    let cases = [
        (Some(all), browser, "zstd"),
        // tower-http would pick br; the SseLayer's gzip wins.
        (Some(only_gzip), "br, gzip", "gzip"),
        // Without `compression` the stream stays identity, as before.
        (None, browser, "identity"),
        // The SseLayer compresses, but not with what the client takes: identity, and
        // the outer layer leaves it so.
        (Some(only_zstd), "gzip, br", "identity"),
    ];
    for (compression, accept, want) in cases {
        let sse = match compression.clone() {
            Some(compression) => SseLayer::new().compression(compression),
            None => SseLayer::new(),
        };
        let (server, mut senders) = behind_compression_layer(sse).await;
        for http2 in [false, true] {
            let what = format!("{compression:?} accept {accept:?} http2={http2}");
            // The outer layer is there and compresses what is not a stream.
            let page = Request::get("/page")
                .header("accept-encoding", accept)
                .body(empty())
                .unwrap();
            let page = if http2 {
                h2_connect(server.addr).await.send(page).await
            } else {
                h1_connect(server.addr).await.send(page).await
            };
            let page_encoding = page.headers()["content-encoding"].to_str().unwrap();
            assert!(
                ["gzip", "deflate", "br", "zstd"].contains(&page_encoding),
                "{what}: the page was not compressed ({page_encoding})"
            );

            let response = open(server.addr, accept, http2).await;
            let encodings: Vec<_> = response
                .headers()
                .get_all("content-encoding")
                .iter()
                .collect();
            assert_eq!(encodings, [want], "{what}");
            let vary: Vec<_> = response.headers().get_all("vary").iter().collect();
            if want == "identity" {
                assert!(vary.is_empty(), "{what}: {vary:?}");
            } else {
                assert_eq!(vary, ["accept-encoding"], "{what}: Vary once");
            }
            let mut body = response.into_body();
            let Opened { sender, .. } =
                within("the stream's sender", senders.recv()).await.unwrap();
            let mut decoder = (want != "identity").then(|| Decoder::new(want));
            for n in 0..20 {
                let event = position(n);
                sender.send(Ok(event.clone())).unwrap();
                let frame = guard("an event", next_data(&mut body)).await.unwrap();
                let plain = match &mut decoder {
                    Some(decoder) => decoder.feed(&frame),
                    None => frame.to_vec(),
                };
                assert_eq!(
                    plain,
                    event.as_bytes().as_ref(),
                    "{what}: event {n} decodes once, to itself"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_hostile_accept_encoding_gets_identity_without_error() {
    let (layer, mut reports) = reporting(SseLayer::new().compression(StreamCompression::new()));
    let (server, mut senders) = channel_server(layer).await;
    let value = |text: &str| HeaderValue::from_str(text).unwrap();
    let unknown = |n: usize| {
        (0..n)
            .map(|i| format!("x-coding-{i};q=0.{:03}", i % 1000))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // (what, Accept-Encoding values, the stream's encoding, also over HTTP/2)
    let cases: Vec<(&str, Vec<HeaderValue>, &str, bool)> = vec![
        (
            "3000 codings, gzip last",
            vec![value(&format!("{}, gzip", unknown(3000)))],
            "identity",
            false,
        ),
        (
            "60 codings, gzip last (control: within the bound)",
            vec![value(&format!("{}, gzip", unknown(60)))],
            "gzip",
            true,
        ),
        (
            "90 header lines, gzip last",
            (0..90)
                .map(|i| value(&format!("x-{i}")))
                .chain([value("gzip")])
                .collect(),
            "identity",
            true,
        ),
        (
            "a 60 KB value that starts with gzip",
            vec![value(&format!("gzip, {}", "x".repeat(60_000)))],
            "identity",
            false,
        ),
        (
            "one 4000-byte coding",
            vec![value(&"g".repeat(4000))],
            "identity",
            true,
        ),
        (
            "bad q-values",
            vec![value(
                "gzip;q=2, br;q=-0.5, zstd;q=0.0001, deflate;q=abc, *;q=1.5, gzip;q=, br;q=.5",
            )],
            "identity",
            true,
        ),
        (
            "a q of 3000 digits",
            vec![value(&format!("zstd;q=0.{}", "9".repeat(3000)))],
            "identity",
            true,
        ),
        (
            "bad q-values and one good (control)",
            vec![value("gzip;q=2, br;q=0.5")],
            "br",
            true,
        ),
        (
            "q=0 for everything",
            vec![value("gzip;q=0, deflate;q=0, br;q=0, zstd;q=0, *;q=0")],
            "identity",
            true,
        ),
        (
            "identity;q=0 alone",
            vec![value("identity;q=0")],
            "identity",
            true,
        ),
        ("empty", vec![value("")], "identity", true),
        (
            "separators only",
            vec![value(",,, ;;; ,;=;q=,= ,q=1;")],
            "identity",
            true,
        ),
        (
            "not UTF-8",
            vec![HeaderValue::from_bytes(b"gzip\xff, br\xfe").unwrap()],
            "identity",
            true,
        ),
    ];
    for (what, values, want, over_http2) in cases {
        for http2 in [false, true] {
            if http2 && !over_http2 {
                continue;
            }
            let mut request = get("/events");
            for value in &values {
                request = request.header("accept-encoding", value.clone());
            }
            let request = request.body(empty()).unwrap();
            let response = if http2 {
                h2_connect(server.addr).await.send(request).await
            } else {
                h1_connect(server.addr).await.send(request).await
            };
            let what = format!("{what} (http2={http2})");
            assert_eq!(response.status(), StatusCode::OK, "{what}");
            assert_eq!(response.headers()["content-encoding"], want, "{what}");
            let Opened {
                sender,
                accept_encoding: received,
                ..
            } = within("the stream's sender", senders.recv()).await.unwrap();
            assert_eq!(
                received, values,
                "{what}: the server got the header as sent"
            );
            let mut body = response.into_body();
            let mut decoder = (want != "identity").then(|| Decoder::new(want));
            for n in 0..3 {
                sender.send(Ok(position(n))).unwrap();
                let frame = guard("an event", next_data(&mut body)).await.unwrap();
                let plain = match &mut decoder {
                    Some(decoder) => decoder.feed(&frame),
                    None => frame.to_vec(),
                };
                assert_eq!(plain, position(n).as_bytes().as_ref(), "{what}");
            }
            drop(body);
            let (reason, events, _) = guard("the report", reports.recv()).await.unwrap();
            assert_eq!((reason, events), (EndReason::ClientGone, 3), "{what}");
        }
    }
}

/// The index just past `\r\n\r\n` in `bytes`, if it is there.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

#[tokio::test]
async fn a_client_that_leaves_mid_frame_is_reported_as_client_gone() {
    // No heartbeats: the one frame is all a stream writes.
    let (layer, mut reports) = reporting(
        SseLayer::new()
            .no_heartbeat()
            .compression(StreamCompression::new()),
    );
    let (server, mut senders) = channel_server(layer).await;
    // 512 KB that compress little: each codec's frame is hundreds of kilobytes.
    let big = Event::builder()
        .data(&noise(512 * 1024, 3))
        .build()
        .unwrap();
    for codec in CODECS {
        // HTTP/1.1: a client with a small receive buffer reads the head and the first
        // kilobyte of the frame's chunk, then closes its socket.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(server.addr).await.unwrap();
        let request = format!(
            "GET /events HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\n\
             accept-encoding: {codec}\r\n\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut read = Vec::new();
        let mut buf = [0; 1024];
        let head = loop {
            if let Some(end) = head_end(&read) {
                break end;
            }
            let n = guard("the head", stream.read(&mut buf)).await.unwrap();
            assert!(n > 0, "the server closed before its head");
            read.extend_from_slice(&buf[..n]);
        };
        let head_text = String::from_utf8_lossy(&read[..head]).to_ascii_lowercase();
        assert!(head_text.starts_with("http/1.1 200"), "{head_text}");
        assert!(
            head_text.contains(&format!("content-encoding: {codec}\r\n")),
            "{head_text}"
        );
        assert!(
            head_text.contains("transfer-encoding: chunked\r\n"),
            "{head_text}"
        );
        let Opened { sender, .. } = within("the stream's sender", senders.recv()).await.unwrap();
        sender.send(Ok(big.clone())).unwrap();
        // The chunk's size line, then a kilobyte of the chunk.
        let (chunk_start, chunk_len) = loop {
            if let Some(line) = read[head..].windows(2).position(|w| w == b"\r\n") {
                let size = std::str::from_utf8(&read[head..head + line]).unwrap();
                let size = usize::from_str_radix(size.trim(), 16).unwrap();
                break (head + line + 2, size);
            }
            let n = guard("the chunk", stream.read(&mut buf)).await.unwrap();
            assert!(n > 0);
            read.extend_from_slice(&buf[..n]);
        };
        while read.len() < chunk_start + 1024 {
            let n = guard("the chunk", stream.read(&mut buf)).await.unwrap();
            assert!(n > 0);
            read.extend_from_slice(&buf[..n]);
        }
        let got = read.len() - chunk_start;
        assert!(
            got < chunk_len,
            "{codec}: the client has {got} bytes of a {chunk_len}-byte frame"
        );
        drop(stream);
        let (reason, events, bytes) = guard("the report", reports.recv()).await.unwrap();
        assert_eq!(
            (reason, events),
            (EndReason::ClientGone, 1),
            "{codec} HTTP/1.1"
        );
        assert_eq!(
            bytes, chunk_len as u64,
            "{codec}: the frame was handed over whole"
        );
        assert!(sender.is_closed(), "{codec}: the stream was dropped");

        // HTTP/2: the client reads the first DATA frame of the event and resets the
        // stream, its connection staying open.
        let mut client = h2_connect(server.addr).await;
        let response = client
            .send(
                get("/events")
                    .header("accept-encoding", codec)
                    .body(empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.headers()["content-encoding"], codec);
        let mut body = response.into_body();
        let Opened { sender, .. } = within("the stream's sender", senders.recv()).await.unwrap();
        sender.send(Ok(big.clone())).unwrap();
        let first = guard("a DATA frame", next_data(&mut body)).await.unwrap();
        drop(body);
        let (reason, events, bytes) = guard("the report", reports.recv()).await.unwrap();
        assert_eq!(
            (reason, events),
            (EndReason::ClientGone, 1),
            "{codec} HTTP/2"
        );
        assert!(
            (first.len() as u64) < bytes,
            "{codec}: the client left after {} of {bytes} bytes",
            first.len()
        );
        assert!(sender.is_closed());
        client.close();
    }
}

// ---------------------------------------------------------------------------------
// Chromium

/// A response body that also hands each of its data frames to the test: the bytes the
/// server writes, before HTTP/1.1's chunked framing.
struct Tee {
    inner: BoxBody<Bytes, BoxError>,
    wire: mpsc::UnboundedSender<Bytes>,
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            let _ = self.wire.send(data.clone());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a test needs of the browser app's event stream.
struct App {
    router: Router,
    /// The stream's sender, and the request's `Accept-Encoding`, per request.
    streams: mpsc::UnboundedReceiver<(mpsc::UnboundedSender<Event>, String)>,
    /// Every data frame the stream writes.
    wire: mpsc::UnboundedReceiver<Bytes>,
}

/// `/`, the page (`tests/browser/compression.html`), and `/events`, an event stream
/// from the test through an `SseLayer` with `compression` (no heartbeats, so that each
/// event is one frame), recorded by a [`Tee`].
fn browser_app(compression: Option<StreamCompression>) -> App {
    let (streams_tx, streams) = mpsc::unbounded_channel();
    let (wire_tx, wire) = mpsc::unbounded_channel();
    let mut sse = SseLayer::new().no_heartbeat();
    if let Some(compression) = compression {
        sse = sse.compression(compression);
    }
    let events = ServiceBuilder::new()
        .map_response(move |response: Response<_>| {
            let wire = wire_tx.clone();
            response.map(|body: tower_sse::layer::ResponseBody<_>| Tee {
                inner: body.map_err(Into::into).boxed(),
                wire,
            })
        })
        .layer(sse)
        .service(service_fn(move |request: Request<axum::body::Body>| {
            let (tx, rx) = mpsc::unbounded_channel::<Event>();
            let accept = request
                .headers()
                .get("accept-encoding")
                .map(|v| v.to_str().unwrap_or("?").to_owned())
                .unwrap_or_default();
            let _ = streams_tx.send((tx, accept));
            let events = Sse::new(UnboundedReceiverStream::new(rx));
            async move { Ok::<_, Infallible>(events.into_response()) }
        }));
    let page = include_str!("browser/compression.html");
    let router = Router::new()
        .route("/", get_route(move || async move { Html(page) }))
        .route_service("/events", events);
    App {
        router,
        streams,
        wire,
    }
}

/// The events sent to the browser, and the `data` the page must get for each: JSON
/// positions, lines, non-ASCII text, and two events of 100 KB (more than the window,
/// more than a 64 KiB frame).
fn browser_events() -> Vec<(Event, String)> {
    let mut events = Vec::new();
    let mut add = |builder: tower_sse::EventBuilder, data: String| {
        events.push((builder.data(&data).build().unwrap(), data));
    };
    for n in 0..30 {
        add(
            Event::builder().id(&n.to_string()),
            format!(r#"{{"flight":"TG{n:03}","lat":13.{n},"lon":100.{n},"alt":35000}}"#),
        );
    }
    add(
        Event::builder(),
        "first line\nsecond line\n\nafter a blank".into(),
    );
    add(
        Event::builder().id("✈️"),
        "สวัสดีครับ ✈️ 🛩 naïve Ελληνικά 日本語 👩‍👩‍👧".into(),
    );
    add(Event::builder(), String::new());
    add(Event::builder().id("big-1"), noise(100_000, 11));
    add(Event::builder(), "after the big one".into());
    let lines: Vec<String> = (0..1500).map(|i| format!("line {i} of many")).collect();
    add(Event::builder().id("big-2"), lines.join("\n"));
    for n in 30..40 {
        add(Event::builder(), format!("tail {n}"));
    }
    events
}

/// What the page recorded for one event.
#[derive(Debug, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Received {
    data: String,
    last_event_id: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamTiming {
    encoded_body_size: u64,
    decoded_body_size: u64,
}

/// Chromium opens an `EventSource` on a stream compressed with `codec` only (none:
/// identity), and gets each event before the test sends the next: a codec that held
/// bytes back would leave the page waiting, and the test fails at its hang guard. The
/// frames the server wrote decode, with an independent decoder, into exactly the
/// events so far after each one, and into the whole stream at its end.
async fn chromium_lock_step(codec: Option<&'static str>) {
    let compression = codec.map(|codec| {
        StreamCompression::new()
            .gzip(codec == "gzip")
            .deflate(codec == "deflate")
            .br(codec == "br")
            .zstd(codec == "zstd")
    });
    let name = codec.unwrap_or("identity");
    let mut app = browser_app(compression);
    let server = serve(app.router).await;
    let mut browser = driver::Browser::launch(1024, 768).await;
    let page = browser.open(&format!("http://{}/", server.addr)).await;

    let (sender, accept) = guard("the EventSource's request", app.streams.recv())
        .await
        .unwrap();
    eprintln!("{name}: Chromium asked for the stream with Accept-Encoding: {accept:?}");
    assert!(
        codec.is_none_or(|codec| accept.split(',').any(|c| c.trim() == codec)),
        "Chromium does not accept {name}: {accept:?}"
    );

    let events = browser_events();
    let mut decoder = codec.map(Decoder::new);
    let mut wire = Vec::new();
    let mut plain = Vec::new();
    let mut latencies = Vec::new();
    for (i, (event, data)) in events.iter().enumerate() {
        let sent = Instant::now();
        sender.send(event.clone()).unwrap();
        let Some(got) = browser
            .wait(page, &format!("window.received[{i}]"), HANG)
            .await
        else {
            let had: serde_json::Value = browser
                .eval(
                    page,
                    "({received: window.received.length, errors: window.sourceErrors})",
                )
                .await;
            panic!("{name}: event {i} never reached the page (held back?); it has {had}");
        };
        latencies.push(sent.elapsed());
        let got: Received = serde_json::from_value(got).unwrap();
        assert_eq!(got.data, *data, "{name}: event {i}");
        // What the server wrote for it, decoded on its own.
        let mut frames = 0;
        let mut decoded = Vec::new();
        while let Ok(frame) = app.wire.try_recv() {
            frames += 1;
            wire.extend_from_slice(&frame);
            match &mut decoder {
                Some(decoder) => decoded.extend(decoder.feed(&frame)),
                None => decoded.extend_from_slice(&frame),
            }
        }
        assert_eq!(frames, 1, "{name}: event {i} was written as one frame");
        assert!(
            decoded == event.as_bytes().as_ref(),
            "{name}: event {i}'s frame decodes to {} other bytes",
            decoded.len()
        );
        plain.extend_from_slice(event.as_bytes());
    }
    let count = events.len();
    let state: serde_json::Value = browser
        .eval(
            page,
            "({received: window.received.length, opens: window.opens})",
        )
        .await;
    assert_eq!(
        state,
        serde_json::json!({"received": count, "opens": 1}),
        "{name}"
    );

    // The end: the stream finishes, the codec's end goes out, the page sees the end of
    // the response (an `error` event) and closes the EventSource.
    let events_only = wire.len();
    drop(sender);
    browser
        .expect(
            page,
            "window.ended",
            "the end of the stream",
            "window.sourceErrors",
        )
        .await;
    let errors: serde_json::Value = browser.eval(page, "window.sourceErrors").await;
    assert_eq!(
        errors,
        serde_json::json!([{"readyState": 0, "afterEvents": count}]),
        "{name}: one error event, at the end"
    );
    while let Ok(frame) = app.wire.try_recv() {
        wire.extend_from_slice(&frame);
    }
    if let Some(codec) = codec {
        assert!(
            wire.len() > events_only,
            "{codec}: the stream's end was written"
        );
        let whole = decode_whole(codec, &wire).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert!(
            whole == plain,
            "{codec}: the whole wire decodes to the events"
        );
    } else {
        assert_eq!(wire, plain);
    }

    // The browser's own account of the stream.
    let timing = browser
        .expect(
            page,
            "window.streamTiming()",
            "a resource timing entry for /events",
            "performance.getEntriesByType('resource').map(e => e.name)",
        )
        .await;
    let timing: StreamTiming = serde_json::from_value(timing).unwrap();
    eprintln!("{name}: {timing:?}");
    assert_eq!(
        (timing.encoded_body_size, timing.decoded_body_size),
        (wire.len() as u64, plain.len() as u64),
        "{name}: Chromium's encoded and decoded body sizes ({timing:?}) are the wire's and \
         the events'"
    );
    let responses = browser.responses(page).await;
    let stream = responses
        .iter()
        .find(|r| r.url.ends_with("/events"))
        .expect("the browser saw /events");
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream.headers.get("content-encoding").map(String::as_str),
        Some(name),
        "{stream:?}"
    );
    if codec.is_some() {
        assert_eq!(
            stream.headers.get("vary").map(String::as_str),
            Some("accept-encoding"),
            "{stream:?}"
        );
    }
    browser
        .screenshot(page, &format!("compression-{name}"))
        .await;
    browser.errors().await.assert_none(|_| false);
    browser.quit().await;

    latencies.sort();
    eprintln!(
        "{name}: {count} events, each sent once the page had the one before; {} bytes on \
         the wire for {} of events; latency median {:?}, max {:?}",
        wire.len(),
        plain.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn chromium_gets_each_gzip_event_live() {
    chromium_lock_step(Some("gzip")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn chromium_gets_each_deflate_event_live() {
    chromium_lock_step(Some("deflate")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn chromium_gets_each_br_event_live() {
    chromium_lock_step(Some("br")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn chromium_gets_each_zstd_event_live() {
    chromium_lock_step(Some("zstd")).await;
}

/// The same lock-step uncompressed, for comparison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn chromium_gets_each_identity_event_live() {
    chromium_lock_step(None).await;
}

// ---------------------------------------------------------------------------------
// nginx

/// `/usr/sbin/nginx`, or `TOWER_SSE_NGINX`.
fn nginx_binary() -> std::path::PathBuf {
    let path = std::env::var("TOWER_SSE_NGINX").unwrap_or("/usr/sbin/nginx".into());
    let path = std::path::PathBuf::from(path);
    assert!(
        path.exists(),
        "nginx is not installed at {}: run tests/run.sh, which installs it \
         (apt-get install nginx)",
        path.display()
    );
    path
}

/// A real nginx, master and worker, in the foreground, as a child of the test, with
/// its configuration, pid, logs and temporary files in a directory of its own. It
/// listens on a socket the test bound and hands over as its standard input (named in
/// nginx's `NGINX` variable, as in its binary upgrade), so that connections wait in the
/// socket's backlog until nginx accepts them: nothing polls for nginx to be ready.
struct Nginx {
    child: Option<std::process::Child>,
    dir: std::path::PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx with `http` as the body of its `http` block (`{listen}` stands for
    /// the address it listens on).
    fn start(http: &str) -> Nginx {
        let binary = nginx_binary();
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-sse-nginx-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             {}\n\
             }}\n",
            http.replace("{listen}", &addr.to_string())
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        // The socket is nginx's standard input, which it keeps: `NGINX=0;`.
        let mut command = std::process::Command::new(binary);
        command
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .env("NGINX", "0;")
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                listener,
            )));
        let child = command.spawn().expect("nginx starts");
        Nginx {
            child: Some(child),
            dir,
            addr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Stops nginx (`nginx -s stop`: a fast shutdown of master and worker) and waits
    /// for it to exit.
    async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        self.signal_stop();
        let status = guard(
            "nginx exits",
            tokio::task::spawn_blocking(move || child.wait()),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            status.success(),
            "nginx exited with {status}:\n{}",
            self.log()
        );
    }

    fn signal_stop(&self) {
        let status = std::process::Command::new(nginx_binary())
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .args(["-s", "stop"])
            .status()
            .expect("nginx -s stop runs");
        assert!(status.success(), "nginx -s stop failed:\n{}", self.log());
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A test failed: stop nginx all the same, master and worker.
            let _ = std::panic::catch_unwind(|| self.signal_stop());
            let _ = child.wait();
            eprintln!("nginx's error log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-nginx"),
    ignore = "needs nginx: cargo test --features test-nginx"
)]
async fn nginx_passes_each_compressed_event_live() {
    let (layer, mut reports) = reporting(SseLayer::new().compression(StreamCompression::new()));
    let (server, mut senders) = channel_server(layer).await;
    // `/`: all of nginx's defaults, `proxy_pass` alone: HTTP/1.0 upstream, so the
    // stream comes back close-delimited (no chunks), and buffering on, which the
    // stream's `X-Accel-Buffering: no` turns off. `/h11/`: HTTP/1.1 upstream, chunked.
    let nginx = Nginx::start(&format!(
        "server {{\n\
           listen {{listen}};\n\
           location / {{\n\
             proxy_pass http://{upstream};\n\
           }}\n\
           location /h11/ {{\n\
             proxy_pass http://{upstream};\n\
             proxy_http_version 1.1;\n\
           }}\n\
         }}",
        upstream = server.addr
    ));
    let locations = [
        ("/events", http::Version::HTTP_10),
        ("/h11/events", http::Version::HTTP_11),
    ];
    for (path, upstream_version) in locations {
        for codec in CODECS {
            let what = format!("{codec} through nginx's {path}");
            let mut client = guard("a connection to nginx", h1_connect(nginx.addr)).await;
            let response = guard(
                "nginx's answer",
                client.send(
                    get(path)
                        .header("host", nginx.addr.to_string())
                        .header("accept-encoding", codec)
                        .body(empty())
                        .unwrap(),
                ),
            )
            .await;
            assert_eq!(response.status(), 200, "{what}:\n{}", nginx.log());
            let headers = response.headers();
            let encodings: Vec<_> = headers.get_all("content-encoding").iter().collect();
            assert_eq!(encodings, [codec], "{what}: {headers:?}");
            assert_eq!(headers["vary"], "accept-encoding", "{what}");
            assert_eq!(headers["transfer-encoding"], "chunked", "{what}");
            let opened = guard("the request upstream", senders.recv()).await.unwrap();
            assert_eq!(
                opened.accept_encoding,
                [codec],
                "{what}: Accept-Encoding passed on"
            );
            assert_eq!(opened.version, upstream_version, "{what}");
            let sender = opened.sender;
            let mut body = response.into_body();
            let mut decoder = Decoder::new(codec);
            let mut wire = Vec::new();
            let mut plain = Vec::new();
            let events: Vec<Event> = (0..30)
                .map(position)
                .chain([Event::builder().data(&noise(100_000, 5)).build().unwrap()])
                .chain((30..40).map(position))
                .collect();
            for (i, event) in events.iter().enumerate() {
                sender.send(Ok(event.clone())).unwrap();
                // nginx may cut or join the server's frames: read until this event has
                // decoded, and nothing more.
                let mut got = Vec::new();
                while got.len() < event.as_bytes().len() {
                    let frame = timeout(HANG, next_data(&mut body))
                        .await
                        .unwrap_or_else(|_| {
                            panic!(
                                "{what}: event {i} did not come through ({} of its bytes \
                                 did)",
                                got.len()
                            )
                        })
                        .unwrap_or_else(|| panic!("{what}: the response ended at event {i}"));
                    wire.extend_from_slice(&frame);
                    got.extend(decoder.feed(&frame));
                }
                assert!(got == event.as_bytes().as_ref(), "{what}: event {i}");
                plain.extend_from_slice(event.as_bytes());
            }
            drop(sender);
            while let Some(frame) = guard("the end through nginx", next_data(&mut body)).await {
                wire.extend_from_slice(&frame);
            }
            let whole = decode_whole(codec, &wire).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(whole == plain, "{what}: the whole stream");
            let (reason, sent, _) = guard("the report", reports.recv()).await.unwrap();
            assert_eq!(
                (reason, sent),
                (EndReason::Finished, events.len() as u64),
                "{what}"
            );
        }
    }
    let log = nginx.log();
    nginx.stop().await;
    assert!(
        log.contains("using inherited sockets"),
        "nginx took the test's socket:\n{log}"
    );
}

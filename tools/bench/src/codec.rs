//! Content codings of the benchmarks: the codec names (`--compression`,
//! `--accept-encoding`), the load generator's streaming [`Decoder`], and the
//! [`Compressor`] of the offline comparison (`blocks` in the suite), set up as tower-sse's
//! `Compression` sets up each stream's compressor (its level and window, a flush per
//! frame), so that the offline figures are those of the library's streams.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

/// A content coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// gzip (RFC 1952).
    Gzip,
    /// deflate: zlib-wrapped (RFC 1950), as HTTP's `deflate` is.
    Deflate,
    /// brotli.
    Br,
    /// zstd.
    Zstd,
}

impl Codec {
    /// Every codec, in table order.
    pub const ALL: [Codec; 4] = [Codec::Gzip, Codec::Deflate, Codec::Br, Codec::Zstd];

    /// The token of `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Deflate => "deflate",
            Codec::Br => "br",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.token())
    }
}

/// tower-sse's defaults (`Compression::new()`): level 3, an 8 KiB window.
pub const DEFAULT_LEVEL: u8 = 3;
/// See [`DEFAULT_LEVEL`].
pub const DEFAULT_WINDOW: usize = 8 * 1024;

/// A compression setting: level 1..=9 and window in bytes (a power of two, 1 to 32 KiB),
/// as `Compression::level` and `Compression::window` take them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// Level, 1 (fastest) to 9.
    pub level: u8,
    /// Window, bytes.
    pub window: usize,
}

impl Setting {
    /// tower-sse's default setting.
    pub const DEFAULT: Setting = Setting {
        level: DEFAULT_LEVEL,
        window: DEFAULT_WINDOW,
    };
    /// The smallest: level 1, a 1 KiB window.
    pub const SMALL: Setting = Setting {
        level: 1,
        window: 1024,
    };

    /// `window 8 KiB, level 3`.
    pub fn label(self) -> String {
        format!("window {} KiB, level {}", self.window / 1024, self.level)
    }

    /// The window as `Compression::window` rounds it: log2, 10 to 15.
    fn window_bits(self) -> u8 {
        let bits = usize::BITS - 1 - self.window.max(1).leading_zeros();
        bits.clamp(10, 15) as u8
    }
}

/// Decodes a content-coded response body as it arrives, piece by piece: every piece the
/// server flushed decodes at once.
pub enum Decoder {
    /// gzip.
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    /// deflate (zlib).
    Deflate(Box<flate2::write::ZlibDecoder<Vec<u8>>>),
    /// brotli.
    Br(Box<brotli::DecompressorWriter<Vec<u8>>>),
    /// zstd.
    Zstd(Box<zstd::stream::write::Decoder<'static, Vec<u8>>>),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

impl Decoder {
    /// A decoder of `codec`.
    pub fn new(codec: Codec) -> io::Result<Decoder> {
        Ok(match codec {
            Codec::Gzip => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            Codec::Deflate => {
                Decoder::Deflate(Box::new(flate2::write::ZlibDecoder::new(Vec::new())))
            }
            Codec::Br => Decoder::Br(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            Codec::Zstd => Decoder::Zstd(Box::new(zstd::stream::write::Decoder::new(Vec::new())?)),
        })
    }

    /// Decodes `input`, appending what it decodes to (everything the server flushed)
    /// to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        fn run<W: Write>(w: &mut W, input: &[u8]) -> io::Result<()> {
            w.write_all(input)?;
            w.flush()
        }
        let decoded = match self {
            Decoder::Gzip(d) => {
                run(d, input)?;
                d.get_mut()
            }
            Decoder::Deflate(d) => {
                run(d, input)?;
                d.get_mut()
            }
            Decoder::Br(d) => {
                run(d, input)?;
                // brotli-decompressor's writer stops at a full output buffer once the
                // input is all in (its push of pending output, when the decoder needs
                // more input, ignores a full buffer): empty writes push out the rest.
                loop {
                    let before = d.get_ref().len();
                    let _nothing_to_write: usize = d.write(&[])?;
                    if d.get_ref().len() == before {
                        break;
                    }
                }
                d.get_mut()
            }
            Decoder::Zstd(d) => {
                run(d, input)?;
                d.get_mut()
            }
        };
        out.extend_from_slice(decoded);
        decoded.clear();
        Ok(())
    }
}

/// A compressor set up as a tower-sse stream's: the codec at `Setting`'s level and
/// window, each [`compress`](Compressor::compress) flushed.
pub enum Compressor {
    /// gzip, deflate or raw deflate.
    Flate(Box<flate2::Compress>),
    /// brotli.
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    /// zstd.
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

impl Compressor {
    /// A compressor of `codec` with `setting`.
    pub fn new(codec: Codec, setting: Setting) -> io::Result<Compressor> {
        let (level, bits) = (setting.level.clamp(1, 9), setting.window_bits());
        let flate_level = flate2::Compression::new(u32::from(level));
        Ok(match codec {
            Codec::Gzip => {
                Compressor::Flate(Box::new(flate2::Compress::new_gzip(flate_level, bits)))
            }
            Codec::Deflate => Compressor::Flate(Box::new(flate2::Compress::new_with_window_bits(
                flate_level,
                true,
                bits,
            ))),
            Codec::Br => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: (i32::from(level) * 11 + 4) / 9,
                    lgwin: i32::from(bits),
                    ..Default::default()
                };
                Compressor::Br(Box::new(brotli::CompressorWriter::with_params(
                    Vec::new(),
                    4096,
                    &params,
                )))
            }
            Codec::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), i32::from(level))?;
                encoder.window_log(u32::from(bits))?;
                Compressor::Zstd(Box::new(encoder))
            }
        })
    }

    /// `data` compressed and flushed: all a decoder needs to decode it.
    pub fn compress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Compressor::Flate(c) => flate(c, data, flate2::FlushCompress::Sync),
            Compressor::Br(w) => {
                w.write_all(data)?;
                w.flush()?;
                Ok(std::mem::take(w.get_mut()))
            }
            Compressor::Zstd(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
        }
    }
}

/// Compresses each event alone, once, into bytes that any subscriber's stream of the
/// codec can carry: raw deflate blocks for gzip and deflate (the stream's header sent
/// once, its checksum combined per stream), a zstd frame (zstd streams are sequences of
/// frames), a whole brotli stream (which brotli cannot concatenate: an upper bound on
/// what a brotli carrier would need, for comparison only). The compressor's state is
/// reused from one event to the next where the codec allows (deflate, zstd).
pub enum EventCompressor {
    /// Raw deflate, reset before each event.
    Flate(Box<flate2::Compress>),
    /// A zstd context, one frame per event.
    Zstd(Box<zstd::bulk::Compressor<'static>>),
    /// brotli's settings: a new stream per event.
    Br(Box<brotli::enc::BrotliEncoderParams>),
}

impl EventCompressor {
    /// Each event alone with `codec` at `setting`.
    pub fn new(codec: Codec, setting: Setting) -> io::Result<EventCompressor> {
        let (level, bits) = (setting.level.clamp(1, 9), setting.window_bits());
        Ok(match codec {
            Codec::Gzip | Codec::Deflate => {
                EventCompressor::Flate(Box::new(flate2::Compress::new_with_window_bits(
                    flate2::Compression::new(u32::from(level)),
                    false,
                    bits,
                )))
            }
            Codec::Zstd => {
                let mut compressor = zstd::bulk::Compressor::new(i32::from(level))?;
                compressor
                    .set_parameter(zstd::stream::raw::CParameter::WindowLog(u32::from(bits)))?;
                EventCompressor::Zstd(Box::new(compressor))
            }
            Codec::Br => EventCompressor::Br(Box::new(brotli::enc::BrotliEncoderParams {
                quality: (i32::from(level) * 11 + 4) / 9,
                lgwin: i32::from(bits),
                ..Default::default()
            })),
        })
    }

    /// `data` compressed alone.
    pub fn compress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            EventCompressor::Flate(c) => {
                c.reset();
                flate(c, data, flate2::FlushCompress::Sync)
            }
            EventCompressor::Zstd(c) => c.compress(data),
            EventCompressor::Br(params) => {
                let mut out = Vec::with_capacity(data.len());
                brotli::BrotliCompress(&mut &data[..], &mut out, params)?;
                Ok(out)
            }
        }
    }
}

/// Compresses `input` and flushes as `flush` says, growing the output until done.
fn flate(
    compress: &mut flate2::Compress,
    input: &[u8],
    flush: flate2::FlushCompress,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let mut consumed = 0;
    loop {
        let before = compress.total_in();
        compress
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        consumed += (compress.total_in() - before) as usize;
        if consumed == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity().max(64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_frame_by_frame() {
        let frames: Vec<String> = (0..50)
            .map(|n| {
                format!(
                    "data: {{\"t\":{n},\"seq\":{n},\"x\":\"{}\"}}\n\n",
                    "ab".repeat(n)
                )
            })
            .collect();
        for codec in Codec::ALL {
            for setting in [Setting::SMALL, Setting::DEFAULT] {
                let mut compressor = Compressor::new(codec, setting).unwrap();
                let mut decoder = Decoder::new(codec).unwrap();
                let mut wire = 0;
                for frame in &frames {
                    let bytes = compressor.compress(frame.as_bytes()).unwrap();
                    wire += bytes.len();
                    let mut out = Vec::new();
                    // In two pieces: a flushed frame decodes whole once all of it is in.
                    let (a, b) = bytes.split_at(bytes.len() / 2);
                    decoder.decode(a, &mut out).unwrap();
                    decoder.decode(b, &mut out).unwrap();
                    assert_eq!(out, frame.as_bytes(), "{codec} {setting:?}");
                }
                let identity: usize = frames.iter().map(String::len).sum();
                assert!(wire < identity, "{codec}: {wire} >= {identity}");
            }
        }
    }

    #[test]
    fn frames_larger_than_the_decoders_buffers_decode_whole() {
        // Bursts of the aircraft feed coalesced 32 to a frame: about 7 KiB each.
        let frames: Vec<Vec<u8>> = crate::scenarios::aircraft_frames(2)
            .chunks(32)
            .map(|c| c.concat())
            .collect();
        for codec in Codec::ALL {
            let mut compressor = Compressor::new(codec, Setting::DEFAULT).unwrap();
            let mut decoder = Decoder::new(codec).unwrap();
            for frame in &frames {
                let bytes = compressor.compress(frame).unwrap();
                let mut out = Vec::new();
                decoder.decode(&bytes, &mut out).unwrap();
                assert_eq!(&out, frame, "{codec}");
            }
        }
    }

    #[test]
    fn events_compressed_alone_decode_as_one_stream() {
        let frames = ["data: one\n\n", "data: two\n\n", "data: three\n\n"];
        for codec in [Codec::Zstd, Codec::Deflate] {
            let mut wire = Vec::new();
            if codec == Codec::Deflate {
                // A zlib header (level 3, 8 KiB window: CMF 0x58), then raw blocks.
                wire.extend_from_slice(&[0x58, 0x85]);
            }
            let mut compressor = EventCompressor::new(codec, Setting::DEFAULT).unwrap();
            for frame in frames {
                wire.extend(compressor.compress(frame.as_bytes()).unwrap());
            }
            let mut decoder = Decoder::new(codec).unwrap();
            let mut out = Vec::new();
            decoder.decode(&wire, &mut out).unwrap();
            assert_eq!(out, frames.concat().as_bytes(), "{codec}");
        }
    }
}

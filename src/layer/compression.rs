//! [`StreamCompression`]: compressed event streams that stay live (each frame is
//! compressed and flushed, so the client decodes every event the moment it arrives),
//! and the codec each request is answered with.

use std::io;

use http::HeaderMap;
use http::header::ACCEPT_ENCODING;

use super::stream::Encoder;

/// Compression of event streams, negotiated from each request's `Accept-Encoding`, with
/// a flush at every frame: given to [`SseLayer::compression`](crate::SseLayer::compression).
///
/// A compressor that buffers holds events back, so the crate otherwise keeps compression
/// away from event streams (`Content-Encoding: identity`). This one flushes every frame
/// the layer writes (each event, or each coalesced or batched group, and each
/// heartbeat), so the client can decode it at once, while the stream's repetition (the
/// same field names in every JSON event) still compresses across frames: each stream
/// has its own compressor and window.
///
/// It is not tower-http's `Compression` (the service of its `CompressionLayer`), and
/// the two can be imported side by side: that one compresses whole responses and
/// leaves an event stream alone, since the stream already says `Content-Encoding`
/// (`identity`, or the codec chosen here).
///
/// Codecs come with cargo features: `compression-gzip`, `compression-deflate`,
/// `compression-br`, `compression-zstd` (or `compression-full` for all four). A request
/// is answered with the codec it accepts with the highest `q`; ties go to zstd, then
/// gzip, deflate and br last (measured on the aircraft feed at the defaults: br
/// compresses about 10 % smaller than the others but costs 1.8 times gzip's CPU and
/// 2.5 times its memory per stream). One that accepts none of them gets the stream
/// uncompressed.
///
/// Memory is the cost: each compressed stream holds its compressor's state for as long
/// as it is open. [`window`](StreamCompression::window) and [`level`](StreamCompression::level) set
/// it. Measured per active stream above an uncompressed one, at the defaults: zstd
/// about 150 KiB, gzip and deflate about 216 KiB, br about 550 KiB; with
/// `window(1024).level(1)`: zstd about 45 KiB, br about 10 KiB, gzip and deflate still
/// about 188 KiB (zlib-rs sizes its tables whatever the window). See the README's
/// table before turning this on for many thousands of streams.
///
/// ```
/// use tower_sse::{StreamCompression, SseLayer};
///
/// let layer = SseLayer::new().compression(StreamCompression::new().window(4096).level(3));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCompression {
    codecs: [bool; CODECS],
    level: u8,
    window_bits: u8,
}

/// How many codecs there are, enabled or not.
const CODECS: usize = 4;

/// The codecs, in order of preference when a client accepts several equally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Zstd,
    Brotli,
    Gzip,
    Deflate,
}

const ORDER: [Codec; CODECS] = [Codec::Zstd, Codec::Gzip, Codec::Deflate, Codec::Brotli];

impl Codec {
    fn index(self) -> usize {
        ORDER
            .iter()
            .position(|c| *c == self)
            .expect("every codec is in ORDER")
    }

    /// Whether this build has the codec (its cargo feature).
    fn built(self) -> bool {
        match self {
            Codec::Zstd => cfg!(feature = "compression-zstd"),
            Codec::Brotli => cfg!(feature = "compression-br"),
            Codec::Gzip => cfg!(feature = "compression-gzip"),
            Codec::Deflate => cfg!(feature = "compression-deflate"),
        }
    }

    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Brotli => "br",
            Codec::Gzip => "gzip",
            Codec::Deflate => "deflate",
        }
    }
}

impl Default for StreamCompression {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamCompression {
    /// Every codec this build has, at level 3 with an 8 KiB window.
    ///
    /// ```
    /// let compression = tower_sse::StreamCompression::new();
    /// ```
    pub fn new() -> Self {
        StreamCompression {
            codecs: ORDER.map(Codec::built),
            level: 3,
            window_bits: 13,
        }
    }

    /// The effort, from 1 (fastest) to 9 (smallest output): the level of gzip, deflate
    /// and zstd, and brotli's quality scaled to its 0 to 11. Values outside are clamped.
    ///
    /// ```
    /// let compression = tower_sse::StreamCompression::new().level(1);
    /// ```
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.clamp(1, 9);
        self
    }

    /// How far back each stream's compressor looks for repetitions, in bytes: a power
    /// of two from 1 KiB to 32 KiB (other values are rounded down into that range). A
    /// larger window finds more repetition and holds more memory per stream.
    ///
    /// ```
    /// let compression = tower_sse::StreamCompression::new().window(16 * 1024);
    /// ```
    pub fn window(mut self, bytes: usize) -> Self {
        let bits = usize::BITS - 1 - bytes.max(1).leading_zeros();
        self.window_bits = bits.clamp(10, 15) as u8;
        self
    }

    /// Turns gzip on or off (it needs the `compression-gzip` feature to be on).
    ///
    /// ```
    /// let compression = tower_sse::StreamCompression::new().gzip(false);
    /// ```
    pub fn gzip(self, on: bool) -> Self {
        self.with(Codec::Gzip, on)
    }

    /// Turns deflate (zlib) on or off (it needs the `compression-deflate` feature).
    ///
    /// ```
    /// let compression = tower_sse::StreamCompression::new().deflate(false);
    /// ```
    pub fn deflate(self, on: bool) -> Self {
        self.with(Codec::Deflate, on)
    }

    /// Turns brotli on or off (it needs the `compression-br` feature).
    ///
    /// ```
    /// let compression = tower_sse::StreamCompression::new().br(false);
    /// ```
    pub fn br(self, on: bool) -> Self {
        self.with(Codec::Brotli, on)
    }

    /// Turns zstd on or off (it needs the `compression-zstd` feature).
    ///
    /// ```
    /// let compression = tower_sse::StreamCompression::new().zstd(false);
    /// ```
    pub fn zstd(self, on: bool) -> Self {
        self.with(Codec::Zstd, on)
    }

    fn with(mut self, codec: Codec, on: bool) -> Self {
        self.codecs[codec.index()] = on && codec.built();
        self
    }

    /// The codec to answer a request with these headers, if any.
    pub(crate) fn negotiate(&self, headers: &HeaderMap) -> Option<Codec> {
        let mut weights = [None::<u16>; CODECS];
        let mut any = None::<u16>;
        // Bounded work whatever the client sends: the first few entries of the first
        // few kilobytes.
        let mut budget = MAX_ACCEPT_BYTES;
        let mut entries = 0;
        for value in headers.get_all(ACCEPT_ENCODING) {
            let bytes = value.as_bytes();
            let Some(rest) = budget.checked_sub(bytes.len()) else {
                break;
            };
            budget = rest;
            let Ok(text) = std::str::from_utf8(bytes) else {
                continue;
            };
            for entry in text.split(',') {
                entries += 1;
                if entries > MAX_ACCEPT_ENTRIES {
                    break;
                }
                let mut parts = entry.split(';');
                let token = parts.next().unwrap_or("").trim();
                let q = parts
                    .find_map(|p| {
                        let (name, value) = p.split_once('=').unwrap_or((p, ""));
                        name.trim()
                            .eq_ignore_ascii_case("q")
                            .then(|| parse_q(value.trim()))
                    })
                    .unwrap_or(Some(1000));
                let Some(q) = q else { continue };
                if token == "*" {
                    any = Some(q);
                } else if let Some(codec) =
                    ORDER.iter().find(|c| token.eq_ignore_ascii_case(c.token()))
                {
                    weights[codec.index()] = Some(q);
                }
            }
        }
        let mut best: Option<(Codec, u16)> = None;
        for codec in ORDER {
            if !self.codecs[codec.index()] {
                continue;
            }
            let q = weights[codec.index()].or(any).unwrap_or(0);
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((codec, q));
            }
        }
        best.map(|(codec, _)| codec)
    }

    /// A compressor for one stream, with these settings.
    pub(crate) fn encoder(&self, codec: Codec) -> io::Result<Encoder> {
        Encoder::new(codec, self.level, self.window_bits)
    }
}

/// Most bytes of `Accept-Encoding` read.
const MAX_ACCEPT_BYTES: usize = 4096;
/// Most codings of `Accept-Encoding` read.
const MAX_ACCEPT_ENTRIES: usize = 64;

/// A `q` value in thousandths; `None` when it is not one.
fn parse_q(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = match whole {
        "0" => {
            let digits = format!("{fraction:0<3}");
            digits.parse::<u16>().ok()?
        }
        "1" if fraction.bytes().all(|b| b == b'0') => 1000,
        _ => return None,
    };
    Some(thousandths)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn pick(compression: &StreamCompression, accept: &str) -> Option<&'static str> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        compression.negotiate(&headers).map(Codec::token)
    }

    #[test]
    fn q_values_are_read_in_thousandths() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.001"), Some(1));
        assert_eq!(parse_q("0"), Some(0));
        for bad in ["1.5", "2", "0.0001", "-0.1", "x", "", "0.a"] {
            assert_eq!(parse_q(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_accepted_codec_with_the_highest_q_wins() {
        let all = StreamCompression {
            codecs: [true; CODECS],
            ..StreamCompression::new()
        };
        assert_eq!(pick(&all, "gzip, deflate, br, zstd"), Some("zstd"));
        assert_eq!(pick(&all, "gzip;q=0.5, deflate;q=0.9"), Some("deflate"));
        assert_eq!(pick(&all, "zstd;q=0, br;q=0.1"), Some("br"));
        assert_eq!(pick(&all, "*;q=0.2, zstd;q=0"), Some("gzip"));
        // Safari's: br compresses ~10 % smaller but costs ~2x gzip's CPU and memory.
        assert_eq!(pick(&all, "gzip, deflate, br"), Some("gzip"));
        assert_eq!(pick(&all, "identity"), None);
        assert_eq!(pick(&all, "identity;q=0"), None);
        assert_eq!(pick(&all, "GZIP"), Some("gzip"));
        assert_eq!(
            pick(&all, "gzip;q=2, br;q=abc"),
            None,
            "bad q values are ignored"
        );
        assert_eq!(
            pick(&all, "gzip;q=2, br;q"),
            None,
            "a q without a value is bad"
        );
        let no_zstd = all.clone().zstd(false);
        assert_eq!(pick(&no_zstd, "zstd, gzip"), Some("gzip"));
    }

    #[test]
    fn a_hostile_header_costs_bounded_work_and_falls_back() {
        let all = StreamCompression {
            codecs: [true; CODECS],
            ..StreamCompression::new()
        };
        let many = format!("{}gzip", "x-unknown;q=0.5, ".repeat(10_000));
        assert_eq!(pick(&all, &many), None);
        let long = format!("gzip;q=0.{}", "9".repeat(100_000));
        assert_eq!(pick(&all, &long), None);
    }

    #[test]
    fn the_window_is_a_power_of_two_in_range() {
        assert_eq!(StreamCompression::new().window(1).window_bits, 10);
        assert_eq!(StreamCompression::new().window(4096).window_bits, 12);
        assert_eq!(StreamCompression::new().window(5000).window_bits, 12);
        assert_eq!(StreamCompression::new().window(1 << 20).window_bits, 15);
    }
}

//! Content codings: their names (`--compression`, `--accept-encoding`) and the load
//! generator's streaming decoder, which hands back everything the server flushed.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

/// A content coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// gzip.
    Gzip,
    /// deflate (zlib-wrapped, as HTTP's `deflate` is).
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

/// Decodes a response body piece by piece.
pub enum Decoder {
    /// gzip.
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    /// deflate.
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

    /// Decodes `input`; returns what it decodes to.
    pub fn decode(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Decoder::Gzip(d) => {
                d.write_all(input)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Deflate(d) => {
                d.write_all(input)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Br(d) => {
                d.write_all(input)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Zstd(d) => {
                d.write_all(input)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }
}

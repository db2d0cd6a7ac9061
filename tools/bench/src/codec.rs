//! Content codings: their names (`--compression`, `--accept-encoding`) and the load
//! generator's streaming decoder, which hands back everything the server flushed.

use std::io::{self, Write};

/// A content coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    Gzip,
    /// zlib-wrapped, as HTTP's `deflate` is.
    Deflate,
    Br,
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

/// A decoder that writes into a `Vec<u8>`, and that vector.
trait Sink: Write + Send {
    fn output(&mut self) -> &mut Vec<u8>;
}

impl Sink for flate2::write::GzDecoder<Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

impl Sink for flate2::write::ZlibDecoder<Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

impl Sink for brotli::DecompressorWriter<Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

impl Sink for zstd::stream::write::Decoder<'static, Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

/// Decodes a response body piece by piece.
pub struct Decoder(Box<dyn Sink>);

impl Decoder {
    /// A decoder of `codec`.
    pub fn new(codec: Codec) -> io::Result<Decoder> {
        let sink: Box<dyn Sink> = match codec {
            Codec::Gzip => Box::new(flate2::write::GzDecoder::new(Vec::new())),
            Codec::Deflate => Box::new(flate2::write::ZlibDecoder::new(Vec::new())),
            Codec::Br => Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096)),
            Codec::Zstd => Box::new(zstd::stream::write::Decoder::new(Vec::new())?),
        };
        Ok(Decoder(sink))
    }

    /// Decodes `input`; returns what it decodes to.
    pub fn decode(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        self.0.write_all(input)?;
        self.0.flush()?;
        Ok(std::mem::take(self.0.output()))
    }
}

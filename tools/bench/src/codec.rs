//! Content codings: their names (`--compression`, `--accept-encoding`) and the load
//! generator's decoders (`async-compression`), which hand on what each flush decodes to.

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use tokio_util::io::{ReaderStream, StreamReader};

/// A content coding (`deflate`: zlib-wrapped, as HTTP's is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    Gzip,
    Deflate,
    Br,
    Zstd,
}

impl Codec {
    /// Every codec, in table order.
    pub const ALL: [Codec; 4] = [Codec::Gzip, Codec::Deflate, Codec::Br, Codec::Zstd];

    /// The token of `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        ["gzip", "deflate", "br", "zstd"][self as usize]
    }

    /// `body`, decoded with `codec` (`None`: as it is).
    pub fn decode<S>(codec: Option<Codec>, body: S) -> BoxStream<'static, std::io::Result<Bytes>>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let Some(codec) = codec else {
            return body.boxed();
        };
        let body = StreamReader::new(body);
        match codec {
            Codec::Gzip => ReaderStream::new(GzipDecoder::new(body)).boxed(),
            Codec::Deflate => ReaderStream::new(ZlibDecoder::new(body)).boxed(),
            Codec::Br => ReaderStream::new(BrotliDecoder::new(body)).boxed(),
            Codec::Zstd => ReaderStream::new(ZstdDecoder::new(body)).boxed(),
        }
    }
}

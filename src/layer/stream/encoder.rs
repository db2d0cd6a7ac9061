//! One stream's compressor: every frame compressed and flushed.

use std::fmt;
use std::io;

use bytes::Bytes;

use crate::layer::compression::Codec;

/// One stream's compressor.
pub(crate) struct Encoder {
    codec: Codec,
    inner: Inner,
}

enum Inner {
    /// Never made: keeps the type when no codec is built.
    #[allow(dead_code)]
    Off(std::convert::Infallible),
    #[cfg(any(feature = "compression-gzip", feature = "compression-deflate"))]
    Flate(Box<flate2::Compress>),
    #[cfg(feature = "compression-br")]
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    #[cfg(feature = "compression-zstd")]
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

impl Encoder {
    #[cfg_attr(
        not(any(
            feature = "compression-gzip",
            feature = "compression-deflate",
            feature = "compression-br",
            feature = "compression-zstd"
        )),
        allow(unreachable_code, unused_variables)
    )]
    pub(crate) fn new(codec: Codec, level: u8, window_bits: u8) -> io::Result<Self> {
        let inner = match codec {
            #[cfg(feature = "compression-gzip")]
            Codec::Gzip => Inner::Flate(Box::new(flate2::Compress::new_gzip(
                flate2::Compression::new(u32::from(level)),
                window_bits,
            ))),
            #[cfg(feature = "compression-deflate")]
            Codec::Deflate => Inner::Flate(Box::new(flate2::Compress::new_with_window_bits(
                flate2::Compression::new(u32::from(level)),
                true,
                window_bits,
            ))),
            #[cfg(feature = "compression-br")]
            Codec::Brotli => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: (i32::from(level) * 11 + 4) / 9,
                    lgwin: i32::from(window_bits),
                    ..Default::default()
                };
                Inner::Brotli(Box::new(brotli::CompressorWriter::with_params(
                    Vec::new(),
                    4096,
                    &params,
                )))
            }
            #[cfg(feature = "compression-zstd")]
            Codec::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), i32::from(level))?;
                encoder.window_log(u32::from(window_bits))?;
                // Tables sized from the window, not from the level: what a stream holds
                // follows the window chosen (level 3 alone keeps tables for a large input).
                encoder.set_parameter(zstd::zstd_safe::CParameter::HashLog(
                    u32::from(window_bits) + 1,
                ))?;
                encoder.set_parameter(zstd::zstd_safe::CParameter::ChainLog(u32::from(
                    window_bits,
                )))?;
                Inner::Zstd(Box::new(encoder))
            }
            #[allow(unreachable_patterns)]
            _ => {
                return Err(io::Error::other(format!(
                    "{} is not built in",
                    codec.token()
                )));
            }
        };
        Ok(Encoder { codec, inner })
    }

    /// `data` compressed and flushed: everything the client needs to decode it.
    #[cfg_attr(
        not(any(
            feature = "compression-gzip",
            feature = "compression-deflate",
            feature = "compression-br",
            feature = "compression-zstd"
        )),
        allow(unused_variables)
    )]
    pub(crate) fn compress(&mut self, data: &[u8]) -> io::Result<Bytes> {
        match &mut self.inner {
            Inner::Off(never) => match *never {},
            #[cfg(any(feature = "compression-gzip", feature = "compression-deflate"))]
            Inner::Flate(compress) => flate(compress, data, flate2::FlushCompress::Sync),
            #[cfg(feature = "compression-br")]
            Inner::Brotli(writer) => {
                use std::io::Write;
                writer.write_all(data)?;
                writer.flush()?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
            #[cfg(feature = "compression-zstd")]
            Inner::Zstd(encoder) => {
                use std::io::Write;
                encoder.write_all(data)?;
                encoder.flush()?;
                Ok(Bytes::from(std::mem::take(encoder.get_mut())))
            }
        }
    }

    /// The end of the compressed stream (gzip's trailer, say).
    pub(crate) fn finish(self) -> io::Result<Bytes> {
        match self.inner {
            Inner::Off(never) => match never {},
            #[cfg(any(feature = "compression-gzip", feature = "compression-deflate"))]
            Inner::Flate(mut compress) => flate(&mut compress, &[], flate2::FlushCompress::Finish),
            #[cfg(feature = "compression-br")]
            Inner::Brotli(writer) => Ok(Bytes::from(writer.into_inner())),
            #[cfg(feature = "compression-zstd")]
            Inner::Zstd(encoder) => Ok(Bytes::from(encoder.finish()?)),
        }
    }
}

/// Compresses `input` with flate2's `Compress`, then flushes as `flush` says, growing the
/// output until the flush is complete.
#[cfg(any(feature = "compression-gzip", feature = "compression-deflate"))]
fn flate(
    compress: &mut flate2::Compress,
    input: &[u8],
    flush: flate2::FlushCompress,
) -> io::Result<Bytes> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let mut consumed = 0;
    loop {
        let before = compress.total_in();
        let status = compress
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        consumed += (compress.total_in() - before) as usize;
        let finished = match flush {
            flate2::FlushCompress::Finish => status == flate2::Status::StreamEnd,
            // A flush is complete once the compressor leaves room in the output.
            _ => consumed == input.len() && out.len() < out.capacity(),
        };
        if finished {
            return Ok(Bytes::from(out));
        }
        out.reserve(out.capacity().max(64));
    }
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

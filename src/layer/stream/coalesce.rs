//! Coalescing: the frames a stream has ready, written as one.

use bytes::{Bytes, BytesMut};

/// The bytes of one outgoing frame: a single `Bytes` passed through untouched, or
/// several copied into the body's scratch buffer.
pub(super) struct Chunk<'a> {
    scratch: &'a mut BytesMut,
    single: Option<Bytes>,
    len: usize,
}

impl<'a> Chunk<'a> {
    pub(super) fn new(scratch: &'a mut BytesMut) -> Self {
        debug_assert!(scratch.is_empty());
        Chunk {
            scratch,
            single: None,
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, bytes: Bytes) {
        if self.len == 0 {
            self.single = Some(bytes);
        } else {
            if let Some(first) = self.single.take() {
                self.scratch.reserve(first.len() + bytes.len());
                self.scratch.extend_from_slice(&first);
            }
            self.scratch.extend_from_slice(&bytes);
        }
        self.len = self.single.as_ref().map_or(self.scratch.len(), Bytes::len);
    }

    pub(super) fn into_bytes(self) -> Option<Bytes> {
        match self.single {
            Some(bytes) => Some(bytes),
            None if self.scratch.is_empty() => None,
            None => Some(self.scratch.split().freeze()),
        }
    }
}

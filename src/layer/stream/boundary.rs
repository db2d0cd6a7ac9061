//! Where the bytes an event stream has passed so far end: at an event boundary, or
//! inside an event. The layer writes its own frames (heartbeats, the shutdown event)
//! only at a boundary, whatever the chunking of a body it did not build.

use bytes::{Bytes, BytesMut};

/// A UTF-8 byte order mark: parsers drop one at the very start of a stream, and only
/// there.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the bytes so far end, as a parser of the HTML standard reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// At the start of a line that starts an event: the start of the stream, or just
    /// after a blank line.
    EventStart,
    /// At the start of a line inside an event.
    LineStart,
    /// Inside a line.
    InLine,
}

/// Follows the bytes of an event stream, a frame at a time, to tell whether they end
/// where an event ended.
///
/// A line ends at CRLF, at a lone LF or at a lone CR; an event ends at a blank line. A
/// frame is looked at only from its end: its last one to four bytes and what the
/// previous frames left (a line end split across frames, `\r` then `\n`, is one line
/// end). Nothing is ever scanned twice.
///
/// A byte order mark at the start of the stream is dropped: a parser drops it there
/// anyway, and the layer may write its own frames first (the `retry:` prelude, a
/// heartbeat), after which it would no longer be at the start and would spoil the first
/// line.
#[derive(Debug)]
pub(crate) struct Boundary {
    position: Position,
    /// The last byte was a CR: an LF next finishes that line end, it is not another.
    after_cr: bool,
    /// Bytes of a BOM matched at the start of the stream and held back, until the
    /// stream shows whether it starts with a whole one; `None` once that is known.
    bom: Option<usize>,
}

impl Boundary {
    pub(crate) fn new() -> Self {
        Boundary {
            position: Position::EventStart,
            after_cr: false,
            bom: Some(0),
        }
    }

    /// Whether the bytes so far end where an event ended (or nothing came yet), so that
    /// a frame of the layer's own can go out without changing any event.
    pub(crate) fn at_boundary(&self) -> bool {
        self.position == Position::EventStart
    }

    /// Follows `frame`, the next bytes of the stream, and gives the bytes to write for
    /// it: `frame` itself but at the start of the stream, where a BOM is dropped (and
    /// its first bytes held back until the stream shows whether a whole one comes).
    pub(crate) fn pass(&mut self, frame: Bytes) -> Option<Bytes> {
        let frame = match self.bom {
            None => frame,
            Some(matched) => self.strip_bom(matched, frame)?,
        };
        if !frame.is_empty() {
            self.follow(&frame);
        }
        Some(frame)
    }

    /// Records a frame of the layer's own, written at a boundary: a whole event or
    /// comment, ending with LF, so the stream is at a boundary with no CR pending.
    pub(crate) fn wrote_own(&mut self) {
        debug_assert!(self.at_boundary());
        self.after_cr = false;
    }

    fn strip_bom(&mut self, matched: usize, frame: Bytes) -> Option<Bytes> {
        let want = &BOM[matched..];
        let n = want.len().min(frame.len());
        if frame[..n] == want[..n] {
            if matched + n < BOM.len() {
                // All of this frame is the start of a BOM: held back.
                self.bom = Some(matched + n);
                return None;
            }
            self.bom = None;
            let rest = frame.slice(n..);
            return (!rest.is_empty()).then_some(rest);
        }
        // No BOM after all: what was held back goes out first, as it came.
        self.bom = None;
        if matched == 0 {
            return Some(frame);
        }
        let mut joined = BytesMut::with_capacity(matched + frame.len());
        joined.extend_from_slice(&BOM[..matched]);
        joined.extend_from_slice(&frame);
        Some(joined.freeze())
    }

    /// Moves past `frame` (not empty), looking only at its trailing line ends.
    fn follow(&mut self, frame: &[u8]) {
        let last = frame[frame.len() - 1];
        if last != b'\n' && last != b'\r' {
            self.position = Position::InLine;
            self.after_cr = false;
            return;
        }
        // Count the line ends the frame ends with, backwards, up to two: a CR before an
        // LF is one CRLF; an LF that opens the frame right after a CR that ended the
        // previous one finishes that CRLF.
        let mut ends = 0;
        let mut i = frame.len();
        while ends < 2 && i > 0 {
            match frame[i - 1] {
                b'\n' if i >= 2 && frame[i - 2] == b'\r' => {
                    ends += 1;
                    i -= 2;
                }
                b'\n' if i == 1 && self.after_cr => i -= 1,
                b'\n' | b'\r' => {
                    ends += 1;
                    i -= 1;
                }
                _ => break,
            }
        }
        self.position = match (ends, i > 0) {
            (2.., _) => Position::EventStart,
            // One line end after some text: a line of the event ended.
            (_, true) => Position::LineStart,
            // The frame is only line ends: where they leave the stream depends on where
            // it stood.
            (0, false) => self.position,
            (_, false) => match self.position {
                Position::InLine => Position::LineStart,
                Position::LineStart | Position::EventStart => Position::EventStart,
            },
        };
        self.after_cr = last == b'\r';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference: a forward reading of the whole stream, line by line, as the HTML
    /// standard describes it, telling whether `bytes` ends at an event boundary.
    fn ends_at_boundary(bytes: &[u8]) -> bool {
        if BOM.starts_with(bytes) {
            // Nothing but (the start of) a BOM, held back: nothing went out yet.
            return true;
        }
        let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        // At a boundary: nothing read yet, or the line that just ended was empty.
        let (mut boundary, mut line_len, mut i) = (true, 0, 0);
        while i < bytes.len() {
            if bytes[i] == b'\r' || bytes[i] == b'\n' {
                if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                boundary = line_len == 0;
                line_len = 0;
            } else {
                boundary = false;
                line_len += 1;
            }
            i += 1;
        }
        boundary
    }

    /// Passes `chunks` one after the other; gives what was written and, after each
    /// chunk, whether the stream stood at a boundary.
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<bool>) {
        let mut boundary = Boundary::new();
        let mut written = Vec::new();
        let mut at = Vec::new();
        for chunk in chunks {
            if let Some(out) = boundary.pass(Bytes::copy_from_slice(chunk)) {
                written.extend_from_slice(&out);
            }
            at.push(boundary.at_boundary());
        }
        (written, at)
    }

    #[test]
    fn every_blank_line_is_a_boundary_whatever_its_line_ends() {
        for stream in [
            &b"data: x\n\n"[..],
            b"data: x\r\r",
            b"data: x\r\n\r\n",
            b"data: x\n\r\n",
            b"data: x\r\n\n",
            b"data: x\n\r",
            b"data: x\r\n\r",
            b": comment\n\n",
            b"\n",
            b"\r\n",
            b"",
        ] {
            assert!(run(&[stream]).1.last().is_none_or(|at| *at), "{stream:?}");
            assert!(ends_at_boundary(stream), "{stream:?}");
        }
        for stream in [
            &b"data: x"[..],
            b"data: x\n",
            b"data: x\r",
            b"data: x\r\n",
            b"data: x\n\ndata",
            b"data: x\n\n:",
        ] {
            assert!(!run(&[stream]).1[0], "{stream:?}");
            assert!(!ends_at_boundary(stream), "{stream:?}");
        }
    }

    #[test]
    fn a_crlf_split_across_frames_is_one_line_end() {
        assert_eq!(run(&[b"data: x\r", b"\n"]).1, [false, false]);
        assert_eq!(run(&[b"data: x\r", b"\n", b"\n"]).1, [false, false, true]);
        assert_eq!(run(&[b"data: x\r", b"\n\r\n"]).1, [false, true]);
        assert_eq!(run(&[b"data: x\r", b"\r"]).1, [false, true]);
        assert_eq!(run(&[b"data: x\r", b"\r", b"\n"]).1, [false, true, true]);
        assert_eq!(run(&[b"data: x\r\r", b"\n"]).1, [true, true]);
        assert_eq!(run(&[b"data: x\n", b"\r", b"\n"]).1, [false, true, true]);
    }

    /// A stream with every kind of line end, blank lines of every kind, comments,
    /// fields without a value, and non-ASCII text.
    const MIXED: &[u8] = "\u{FEFF}data: one\r\n\r\nevent: two\ndata: 2\n\ndata: three\r\r\
        : comment\r\nid: 4\r\ndata: four\n\r\ndata: five\r\n\ndata: six\r\r\n\
        data\ndata: ไทย\n\r\r\n\n\rdata: end\r\n\r"
        .as_bytes();

    #[test]
    fn split_at_every_byte_the_frames_agree_with_a_forward_reading() {
        for split in 0..=MIXED.len() {
            let (head, tail) = MIXED.split_at(split);
            let (written, at) = run(&[head, tail]);
            assert_eq!(written, &MIXED[BOM.len()..], "split at {split}");
            assert_eq!(at[0], ends_at_boundary(head), "split at {split}");
            assert!(at[1], "the stream ends at a boundary");
        }
        let bytes: Vec<&[u8]> = MIXED.chunks(1).collect();
        let (written, at) = run(&bytes);
        assert_eq!(written, &MIXED[BOM.len()..]);
        for (n, at) in at.iter().enumerate() {
            assert_eq!(*at, ends_at_boundary(&MIXED[..=n]), "after byte {n}");
        }
    }

    #[test]
    fn a_bom_is_dropped_only_at_the_start_and_held_back_until_whole() {
        assert_eq!(run(&[b"\xEF", b"\xBB", b"\xBFdata"]).0, b"data");
        assert_eq!(run(&[b"\xEF\xBB", b"x"]).0, b"\xEF\xBBx");
        assert_eq!(run(&[b"\xEFx"]).0, b"\xEFx");
        assert_eq!(run(&[b"\xEF\xBB\xBF", b"\xEF\xBB\xBF"]).0, b"\xEF\xBB\xBF");
        let (_, at) = run(&[b"\xEF", b"\xBB"]);
        assert_eq!(at, [true, true], "nothing of the stream went out yet");
    }

    #[test]
    fn a_frame_of_the_layer_clears_a_pending_cr() {
        let mut boundary = Boundary::new();
        boundary.pass(Bytes::from_static(b"data: x\r\r"));
        boundary.wrote_own();
        // The LF now stands alone: a blank line, still at a boundary.
        boundary.pass(Bytes::from_static(b"\n"));
        assert!(boundary.at_boundary());
    }
}

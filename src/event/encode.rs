//! The lines of an event's frame, as the HTML standard's parser reads them back.

use std::time::Duration;

/// Writes `name: value\n`; `value` is known to hold no line break.
pub(super) fn write_field(buf: &mut Vec<u8>, name: &[u8], value: &str) {
    write_line(buf, name, value.as_bytes());
}

/// Writes one `name: line` per line of `text`; CRLF, LF and a lone CR each end one line.
/// An empty `name` writes comment lines.
pub(super) fn write_lines(buf: &mut Vec<u8>, name: &[u8], text: &str) {
    let mut rest = text.as_bytes();
    // Room for one line and the blank line that ends the frame; more lines grow it.
    buf.reserve(rest.len() + name.len() + 4);
    loop {
        match memchr::memchr2(b'\n', b'\r', rest) {
            None => {
                write_line(buf, name, rest);
                return;
            }
            Some(at) => {
                write_line(buf, name, &rest[..at]);
                let skip = if rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[at + skip..];
            }
        }
    }
}

pub(super) fn write_line(buf: &mut Vec<u8>, name: &[u8], line: &[u8]) {
    buf.extend_from_slice(name);
    if line.is_empty() {
        buf.extend_from_slice(b":\n");
    } else {
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }
}

/// Writes `retry: <milliseconds>\n`.
pub(crate) fn write_retry(buf: &mut Vec<u8>, retry: Duration) {
    let millis = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
    buf.extend_from_slice(b"retry: ");
    buf.extend_from_slice(itoa::Buffer::new().format(millis).as_bytes());
    buf.push(b'\n');
}

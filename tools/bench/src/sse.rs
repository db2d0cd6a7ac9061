//! The one SSE parser of the tools: incremental, any split of the input, the WHATWG
//! line rules (a line ends at LF, CR or CRLF; a blank line dispatches the event; a line
//! starting with `:` is a comment), keeping only what the tools need.

/// An incremental parser; events are handed to a callback with their data.
#[derive(Debug, Default)]
pub struct Parser {
    /// Collect each event's data (the load generator reads its stamp); without it the
    /// callback gets an empty slice (burst only counts).
    keep_data: bool,
    /// A line cut by the end of the input.
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    pending_cr: bool,
    /// Events dispatched.
    pub events: u64,
    /// Comment lines (heartbeats).
    pub comments: u64,
    /// Bytes fed.
    pub bytes: u64,
}

impl Parser {
    /// A parser that collects each event's data if `keep_data`.
    pub fn new(keep_data: bool) -> Parser {
        Parser {
            keep_data,
            ..Parser::default()
        }
    }

    /// Feeds the next bytes of the stream; calls `on_event` with the data of each event
    /// they complete.
    pub fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(&[u8])) {
        self.bytes += input.len() as u64;
        while !input.is_empty() {
            if std::mem::take(&mut self.pending_cr) && input[0] == b'\n' {
                input = &input[1..];
                continue;
            }
            let Some(at) = memchr::memchr2(b'\n', b'\r', input) else {
                self.line.extend_from_slice(input);
                return;
            };
            if self.line.is_empty() {
                self.end_line(&input[..at], on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&input[..at]);
                self.end_line(&line, on_event);
                line.clear();
                self.line = line;
            }
            self.pending_cr = input[at] == b'\r';
            input = &input[at + 1..];
        }
    }

    fn end_line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        match line.first() {
            None => {
                if std::mem::take(&mut self.has_data) {
                    self.events += 1;
                    on_event(&self.data);
                    self.data.clear();
                }
            }
            Some(b':') => self.comments += 1,
            Some(_) => {
                let (name, value) = match memchr::memchr(b':', line) {
                    Some(at) => {
                        let value = &line[at + 1..];
                        (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
                    }
                    None => (line, &b""[..]),
                };
                if name == b"data" {
                    if self.keep_data {
                        if self.has_data {
                            self.data.push(b'\n');
                        }
                        self.data.extend_from_slice(value);
                    }
                    self.has_data = true;
                }
            }
        }
    }
}

/// The unsigned integer after `key` (such as `"t":`) in `data`.
pub fn field(data: &[u8], key: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(data, key)? + key.len();
    let digits = data[at..].iter().take_while(|b| b.is_ascii_digit());
    digits.fold(None, |n, b| {
        Some(
            n.unwrap_or(0u64)
                .wrapping_mul(10)
                .wrapping_add(u64::from(b - b'0')),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pieces: &mut dyn Iterator<Item = &[u8]>, keep: bool) -> (Vec<Vec<u8>>, Parser) {
        let mut parser = Parser::new(keep);
        let mut events = Vec::new();
        for piece in pieces {
            parser.feed(piece, &mut |data| events.push(data.to_vec()));
        }
        (events, parser)
    }

    #[test]
    fn events_and_comments_across_any_split() {
        let stream = b": hi\n\ndata: {\"t\":5,\"seq\":1}\n\r\nid: 2\r\ndata: {\"t\":7,\r\
                       data: \"seq\":2}\r\n\r:\n\nid: 3\n\n";
        let (whole, parser) = parse(&mut std::iter::once(&stream[..]), true);
        let (bytewise, _) = parse(&mut stream.chunks(1), true);
        assert_eq!(whole, bytewise);
        assert_eq!(
            whole,
            [&b"{\"t\":5,\"seq\":1}"[..], b"{\"t\":7,\n\"seq\":2}"]
        );
        assert_eq!((parser.events, parser.comments), (2, 2));
        assert_eq!(parser.bytes, stream.len() as u64);
        // Two data lines are joined by a line feed: the fields are still found.
        assert_eq!(field(&whole[1], b"\"t\":"), Some(7));
        assert_eq!(field(&whole[1], b"\"seq\":"), Some(2));
        assert_eq!(field(&whole[1], b"\"k\":"), None);

        let (counted, parser) = parse(&mut stream.chunks(3), false);
        assert_eq!(counted, [Vec::<u8>::new(), Vec::new()]);
        assert_eq!((parser.events, parser.comments), (2, 2));
    }
}

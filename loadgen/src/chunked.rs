//! An incremental decoder for `Transfer-Encoding: chunked` bodies. nginx (so nchan) frames an
//! HTTP/1.1 event stream in chunks; the gateway does not. Pure: bytes in, body slices out,
//! borrowed from the input; no allocation.

/// Where the decoder is in the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size,
    /// Skipping a chunk extension up to the end of the size line.
    Ext,
    /// Saw `\r` after the size; expecting `\n`.
    SizeLf,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Chunk data ended; expecting `\r\n`.
    DataCr,
    /// Expecting the `\n` of the `\r\n` after chunk data.
    DataLf,
    /// After the last chunk: at the start of a trailer line.
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Saw `\r` at the start of a trailer line: the end.
    EndLf,
    /// The body is complete.
    Done,
}

/// Malformed chunk framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A size line without hex digits, or a size over 2^48.
    BadSize,
    /// Missing `\r\n` after chunk data.
    BadFraming,
}

/// Decoder state across reads.
#[derive(Debug, Clone)]
pub struct Dechunker {
    /// Framing position.
    state: State,
    /// Size accumulated so far on the current size line.
    size: u64,
    /// Hex digits seen on the current size line.
    digits: u32,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker {
            state: State::Size,
            size: 0,
            digits: 0,
        }
    }
}

impl Dechunker {
    /// Feeds one read; calls `out` with each run of body bytes. Returns how many input bytes
    /// were consumed and whether the body ended (bytes after its end are not consumed).
    pub fn feed(
        &mut self,
        input: &[u8],
        mut out: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let c = input[i];
            match self.state {
                State::Data(n) => {
                    let take = (n as usize).min(input.len() - i);
                    out(&input[i..i + take]);
                    i += take;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                State::Size => match c {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (c as char).to_digit(16).unwrap_or(0) as u64;
                        self.size = self.size * 16 + d;
                        self.digits += 1;
                        if self.size > 1 << 48 {
                            return Err(ChunkError::BadSize);
                        }
                    }
                    b';' | b' ' | b'\t' => self.state = State::Ext,
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => self.size_line_done()?,
                    _ => return Err(ChunkError::BadSize),
                },
                State::Ext => match c {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => self.size_line_done()?,
                    _ => {}
                },
                State::SizeLf => {
                    if c != b'\n' {
                        return Err(ChunkError::BadSize);
                    }
                    self.size_line_done()?;
                }
                State::DataCr => match c {
                    b'\r' => self.state = State::DataLf,
                    b'\n' => self.state = State::Size,
                    _ => return Err(ChunkError::BadFraming),
                },
                State::DataLf => {
                    if c != b'\n' {
                        return Err(ChunkError::BadFraming);
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => match c {
                    b'\r' => self.state = State::EndLf,
                    b'\n' => self.state = State::Done,
                    _ => self.state = State::Trailer,
                },
                State::Trailer => {
                    if c == b'\n' {
                        self.state = State::TrailerStart;
                    }
                }
                State::EndLf => {
                    if c != b'\n' {
                        return Err(ChunkError::BadFraming);
                    }
                    self.state = State::Done;
                }
                State::Done => return Ok((i, true)),
            }
            i += 1;
        }
        Ok((i, self.state == State::Done))
    }

    fn size_line_done(&mut self) -> Result<(), ChunkError> {
        if self.digits == 0 {
            return Err(ChunkError::BadSize);
        }
        self.state = if self.size == 0 {
            State::TrailerStart
        } else {
            State::Data(self.size)
        };
        self.size = 0;
        self.digits = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut d = Dechunker::default();
        let mut body = Vec::new();
        let mut done = false;
        for c in chunks {
            let (_, end) = d.feed(c, |b| body.extend_from_slice(b))?;
            done = end;
        }
        Ok((body, done))
    }

    #[test]
    fn table() {
        // (input, body, ended)
        let ok: &[(&[u8], &[u8], bool)] = &[
            (b"5\r\nhello\r\n", b"hello", false),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                b"hello world",
                true,
            ),
            (
                b"A;ext=1\r\n0123456789\r\n0\r\nX-T: y\r\n\r\n",
                b"0123456789",
                true,
            ),
            (b"3\nabc\n0\n\n", b"abc", true),
            (b"", b"", false),
        ];
        for (input, body, ended) in ok {
            let (b, e) = decode(&[input]).unwrap();
            assert_eq!(
                (b.as_slice(), e),
                (*body, *ended),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            for cut in 0..=input.len() {
                let (x, y) = input.split_at(cut);
                assert_eq!(
                    decode(&[x, y]).unwrap(),
                    (body.to_vec(), *ended),
                    "split at {cut}"
                );
            }
        }
        let bad: &[(&[u8], ChunkError)] = &[
            (b"zz\r\n", ChunkError::BadSize),
            (b"\r\n", ChunkError::BadSize),
            (b"3\r\nabcX", ChunkError::BadFraming),
            (b"3\rX", ChunkError::BadSize),
            (b"ffffffffffffffffff\r\n", ChunkError::BadSize),
        ];
        for (input, err) in bad {
            assert_eq!(
                decode(&[input]),
                Err(*err),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn stops_at_end_of_body() {
        let mut d = Dechunker::default();
        let input = b"1\r\nx\r\n0\r\n\r\nHTTP/1.1 200 OK";
        let (used, done) = d.feed(input, |_| {}).unwrap();
        assert!(done);
        assert_eq!(&input[used..], b"HTTP/1.1 200 OK");
    }
}

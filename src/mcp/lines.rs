//! Line framing, the stdio transport of MCP: one JSON-RPC message per line. Reading frames bytes
//! into lines (never splitting a UTF-8 character, tolerating `\r\n`, capping the length) and
//! hands them to a [`FrameSink`]; writing is [`queue`](super::queue)'s.
//!
//! Owns: bytes ↔ lines. Must not touch: processes, sessions, HTTP — whoever owns the pipe
//! (a child process, an in-process server, the bridge's stdin) hands it in.

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    sync::mpsc,
};

/// Where [`read_lines`] hands its frames: a channel, or a relay that handles them in place.
pub trait FrameSink: Send {
    /// Takes one frame; false stops the reading (nobody listens any more).
    fn frame(&mut self, frame: Frame) -> impl Future<Output = bool> + Send;
}

impl<T: From<Frame> + Send> FrameSink for &mpsc::Sender<T> {
    async fn frame(&mut self, frame: Frame) -> bool {
        self.send(T::from(frame)).await.is_ok()
    }
}

/// Frames `stdout` (a child's stdout, an in-memory pipe, the bridge's stdin) into frames until
/// it ends; lines that are not JSON (banners, stray logs) are logged and skipped.
pub async fn read_lines(
    mut stdout: impl AsyncRead + Unpin,
    max_line: usize,
    mut sink: impl FrameSink,
    session: &str,
) {
    let mut framer = LineFramer::new(max_line);
    // Starts small (an idle session holds it while waiting) and doubles, up to a pipe's
    // capacity, whenever a read fills it.
    let mut chunk = 4 * 1024;
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(chunk);
        let room = buf.capacity() - buf.len();
        match stdout.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if n >= room => chunk = (chunk * 2).min(64 * 1024),
            Ok(_) => {}
        }
        for frame in framer.push(&buf.split()) {
            if let Frame::Line(line) = &frame
                && !looks_like_json(line)
            {
                tracing::warn!(
                    session = %session,
                    line = %String::from_utf8_lossy(&line[..line.len().min(200)]),
                    "child wrote a non-JSON line on stdout; skipped"
                );
                continue;
            }
            if !sink.frame(frame).await {
                return;
            }
        }
    }
}

/// Cheap check before full parsing: a JSON-RPC message is an object or a batch array.
fn looks_like_json(line: &[u8]) -> bool {
    matches!(line.first(), Some(b'{') | Some(b'['))
}

/// A piece of stdout.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Line(Bytes),
    TooLong { prefix: Bytes, len: usize },
}

/// Splits a byte stream into lines on `\n`, dropping a trailing `\r` and blank lines, capping a
/// line at `max` bytes. Works on bytes, so a UTF-8 character split across reads is never
/// mangled.
pub struct LineFramer {
    max: usize,
    /// The incomplete line so far.
    partial: BytesMut,
    /// Length of an over-long line being discarded (its prefix is kept in `partial`).
    discarding: Option<usize>,
}

const TOO_LONG_PREFIX: usize = 256;

impl LineFramer {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            partial: BytesMut::new(),
            discarding: None,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) -> Vec<Frame> {
        let mut frames = vec![];
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, complete) = match newline {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &[][..], false),
            };
            data = rest;
            if let Some(len) = self.discarding.as_mut() {
                *len += chunk.len();
                if complete {
                    let len = *len;
                    self.discarding = None;
                    frames.push(Frame::TooLong {
                        prefix: self.partial.split().freeze(),
                        len,
                    });
                }
                continue;
            }
            if self.partial.len() + chunk.len() > self.max {
                let len = self.partial.len() + chunk.len();
                let keep = TOO_LONG_PREFIX
                    .saturating_sub(self.partial.len())
                    .min(chunk.len());
                self.partial.truncate(TOO_LONG_PREFIX);
                self.partial.extend_from_slice(&chunk[..keep]);
                if complete {
                    frames.push(Frame::TooLong {
                        prefix: self.partial.split().freeze(),
                        len,
                    });
                } else {
                    self.discarding = Some(len);
                }
                continue;
            }
            self.partial.extend_from_slice(chunk);
            if complete {
                let mut line = self.partial.split();
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                if !line.iter().all(u8::is_ascii_whitespace) {
                    frames.push(Frame::Line(line.freeze()));
                }
            }
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(frames: Vec<Frame>) -> Vec<String> {
        frames
            .into_iter()
            .map(|f| match f {
                Frame::Line(l) => String::from_utf8(l.to_vec()).unwrap(),
                Frame::TooLong { len, .. } => format!("<too long: {len}>"),
            })
            .collect()
    }

    #[test]
    fn splits_and_joins_across_reads() {
        let mut f = LineFramer::new(1024);
        assert!(f.push(b"{\"a\":").is_empty());
        assert_eq!(
            lines(f.push(b"1}\n{\"b\":2}\r\n\n  \n{\"c\"")),
            ["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(lines(f.push(b":3}\n")), ["{\"c\":3}"]);
    }

    #[test]
    fn multibyte_characters_split_across_reads_survive() {
        let text = "{\"t\":\"Bärn ⚠️\"}\n".as_bytes();
        let mut f = LineFramer::new(1024);
        let mut out = vec![];
        for b in text {
            out.extend(lines(f.push(&[*b])));
        }
        assert_eq!(out, ["{\"t\":\"Bärn ⚠️\"}"]);
    }

    #[test]
    fn over_long_lines_are_reported_once_and_framing_recovers() {
        let mut f = LineFramer::new(10);
        let mut frames = f.push(b"{\"id\":7,\"x\":\"aaaa");
        frames.extend(f.push(b"aaaaaaaa\"}\n{\"ok\":1}\n"));
        assert_eq!(frames.len(), 2);
        match &frames[0] {
            Frame::TooLong { prefix, len } => {
                assert!(prefix.starts_with(b"{\"id\":7"));
                assert_eq!(*len, 27);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(frames[1], Frame::Line(Bytes::from_static(b"{\"ok\":1}")));
    }

    #[test]
    fn exact_limit_is_allowed() {
        let mut f = LineFramer::new(4);
        assert_eq!(lines(f.push(b"{12}\n{123}\n")), ["{12}", "<too long: 5>"]);
    }
}

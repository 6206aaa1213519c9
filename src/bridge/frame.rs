//! The bridge's wire format between Rust and the Python processes.
//!
//! A frame is `u32 LE length of the rest | u8 kind | u64 LE id | fields`,
//! each field `u32 LE length | bytes`. The first field is a small JSON object
//! (the header); the others are Flower protobuf bytes or UTF-8 text. The same
//! format is written and read by `floret_bridge.py`.
//!
//! This module owns the byte layout and the reading and writing of frames on
//! a Unix socket (with a file descriptor attached, for SPAWN). It never
//! interprets a frame: that is the caller's business.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

/// Frame kinds, as `floret_bridge.py` numbers them.
pub(crate) mod kind {
    pub(crate) const HELLO: u8 = 1;
    pub(crate) const LOAD: u8 = 2;
    pub(crate) const LOADED: u8 = 3;
    pub(crate) const SPAWN: u8 = 4;
    pub(crate) const FORKED: u8 = 5;
    pub(crate) const EXITED: u8 = 6;
    pub(crate) const CALL: u8 = 7;
    pub(crate) const LOG: u8 = 8;
    pub(crate) const RESULT: u8 = 9;
    pub(crate) const START: u8 = 10;
    pub(crate) const GRID: u8 = 11;
    pub(crate) const GRID_REPLY: u8 = 12;
    pub(crate) const DONE: u8 = 13;
    pub(crate) const SHUTDOWN: u8 = 14;
    pub(crate) const STDIO: u8 = 15;
}

/// The largest frame either side may send: a model of a few hundred million
/// parameters. Anything larger is a protocol error, not an allocation.
pub(crate) const FRAME_MAX: usize = 2 << 30;

/// One frame.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub kind: u8,
    pub id: u64,
    pub header: Value,
    pub fields: Vec<Bytes>,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Python process closed its socket")]
    Closed,
    #[error("the Python process sent a malformed frame: {0}")]
    Malformed(String),
    #[error("bridge socket: {0}")]
    Io(#[from] io::Error),
}

impl Frame {
    pub fn new(kind: u8, id: u64, header: Value) -> Frame {
        Frame {
            kind,
            id,
            header,
            fields: Vec::new(),
        }
    }

    pub fn with(mut self, field: impl Into<Bytes>) -> Frame {
        self.fields.push(field.into());
        self
    }

    /// The frame's bytes, ready to write.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("JSON values always encode");
        let body: usize = 9 + 4 + header.len() + self.fields.iter().map(|f| 4 + f.len()).sum::<usize>();
        let mut out = Vec::with_capacity(4 + body);
        out.extend_from_slice(&(body as u32).to_le_bytes());
        out.push(self.kind);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for field in &self.fields {
            out.extend_from_slice(&(field.len() as u32).to_le_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// A string from the header, or "".
    pub fn str(&self, key: &str) -> &str {
        self.header.get(key).and_then(Value::as_str).unwrap_or("")
    }

    pub(crate) fn field(&self, index: usize) -> Bytes {
        self.fields.get(index).cloned().unwrap_or_default()
    }
}

/// Parses one frame body (everything after the length).
fn parse(body: Bytes) -> Result<Frame, Error> {
    if body.len() < 9 {
        return Err(Error::Malformed("frame shorter than its header".into()));
    }
    let kind = body[0];
    let id = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
    let mut fields = Vec::new();
    let mut pos = 9;
    while pos < body.len() {
        let Some(len_bytes) = body.get(pos..pos + 4) else {
            return Err(Error::Malformed("truncated field length".into()));
        };
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        pos += 4;
        if pos + len > body.len() {
            return Err(Error::Malformed("field longer than its frame".into()));
        }
        fields.push(body.slice(pos..pos + len));
        pos += len;
    }
    let Some(first) = fields.first() else {
        return Err(Error::Malformed("frame without a header field".into()));
    };
    let header: Value =
        serde_json::from_slice(first).map_err(|e| Error::Malformed(format!("header is not JSON: {e}")))?;
    fields.remove(0);
    Ok(Frame {
        kind,
        id,
        header,
        fields,
    })
}

/// Reads frames from a socket, with a deadline per read, keeping partial
/// frames across timeouts.
pub(crate) struct Reader {
    stream: UnixStream,
    buffer: Vec<u8>,
}

impl Reader {
    pub fn new(stream: UnixStream) -> Reader {
        Reader {
            stream,
            buffer: Vec::new(),
        }
    }

    /// The next frame, or `Ok(None)` when `timeout` passes first (`None`
    /// waits for ever).
    pub fn read(&mut self, timeout: Option<Duration>) -> Result<Option<Frame>, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(frame) = self.take()? {
                return Ok(Some(frame));
            }
            let wait = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    Some(left)
                }
            };
            self.stream.set_read_timeout(wait)?;
            // Read at least what the current frame still misses (a large
            // model arrives in few reads), at most what is there.
            let want = self.missing().max(64 * 1024);
            let start = self.buffer.len();
            self.buffer.resize(start + want, 0);
            let read = self.stream.read(&mut self.buffer[start..]);
            self.buffer.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Err(Error::Closed),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(Error::Closed),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Bytes still missing from the frame being read.
    fn missing(&self) -> usize {
        if self.buffer.len() < 4 {
            return 4 - self.buffer.len();
        }
        let len = u32::from_le_bytes(self.buffer[..4].try_into().expect("4 bytes")) as usize;
        (4 + len.min(FRAME_MAX)).saturating_sub(self.buffer.len())
    }

    fn take(&mut self) -> Result<Option<Frame>, Error> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buffer[..4].try_into().expect("4 bytes")) as usize;
        if len > FRAME_MAX {
            return Err(Error::Malformed(format!("frame of {len} bytes")));
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        let rest = self.buffer.split_off(4 + len);
        let frame = std::mem::replace(&mut self.buffer, rest);
        let body = Bytes::from(frame).slice(4..);
        parse(body).map(Some)
    }
}

/// Writes one frame.
pub(crate) fn write(stream: &UnixStream, frame: &Frame) -> Result<(), Error> {
    let mut writer = stream;
    match writer.write_all(&frame.encode()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => Err(Error::Closed),
        Err(e) => Err(e.into()),
    }
}

/// Writes one frame with file descriptors attached (SCM_RIGHTS), which the
/// receiver gets with the frame's first bytes.
pub(crate) fn write_with_fds(stream: &UnixStream, frame: &Frame, fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let bytes = frame.encode();
    let fds: Vec<i32> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let control = [ControlMessage::ScmRights(&fds)];
    let iov = [io::IoSlice::new(&bytes)];
    let sent = loop {
        match sendmsg::<()>(stream.as_raw_fd(), &iov, &control, MsgFlags::empty(), None) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EPIPE) | Err(nix::errno::Errno::ECONNRESET) => return Err(Error::Closed),
            Err(e) => return Err(Error::Io(io::Error::from(e))),
        }
    };
    if sent < bytes.len() {
        let mut writer = stream;
        writer.write_all(&bytes[sent..]).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Error::Closed,
            _ => Error::Io(e),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_round_trip_through_a_socket_in_pieces() {
        let (a, b) = UnixStream::pair().unwrap();
        let big = vec![7u8; 300_000];
        let frames = vec![
            Frame::new(kind::CALL, 42, json!({"node_id": 5}))
                .with(b"meta".to_vec())
                .with(big.clone()),
            Frame::new(kind::LOG, 0, json!({"stream": "out"})).with("hello\n"),
        ];
        let writer = std::thread::spawn({
            let frames = frames.clone();
            move || {
                for frame in &frames {
                    write(&a, frame).unwrap();
                }
            }
        });
        let mut reader = Reader::new(b);
        for expected in &frames {
            let frame = reader.read(Some(Duration::from_secs(10))).unwrap().unwrap();
            assert_eq!(frame.kind, expected.kind);
            assert_eq!(frame.id, expected.id);
            assert_eq!(frame.header, expected.header);
            assert_eq!(frame.fields, expected.fields);
        }
        writer.join().unwrap();
        assert!(matches!(
            reader.read(Some(Duration::from_millis(10))),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn a_read_times_out_and_keeps_partial_frames() {
        let (a, b) = UnixStream::pair().unwrap();
        let bytes = Frame::new(kind::HELLO, 1, json!({})).encode();
        let mut writer = &a;
        writer.write_all(&bytes[..5]).unwrap();
        let mut reader = Reader::new(b);
        assert!(reader.read(Some(Duration::from_millis(20))).unwrap().is_none());
        writer.write_all(&bytes[5..]).unwrap();
        let frame = reader.read(Some(Duration::from_secs(5))).unwrap().unwrap();
        assert_eq!(frame.kind, kind::HELLO);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for body in [vec![], vec![1, 2, 3], {
            let mut b = vec![kind::LOG];
            b.extend_from_slice(&0u64.to_le_bytes());
            b.extend_from_slice(&100u32.to_le_bytes());
            b
        }] {
            assert!(parse(Bytes::from(body)).is_err());
        }
    }
}

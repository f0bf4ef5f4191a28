//! The staging log's framing: each flush's IPC messages as one zstd frame (with its
//! content checksum) behind a 4-byte length. One frame per flush costs a few hundred
//! bytes of framing where per-buffer IPC compression cost 4 to 5 KB (a flush a second
//! at a low event rate cost more than its events). A torn last frame (a crash mid-
//! flush) fails its length or its checksum and ends the log there.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;

/// Level 3: at a flush a second, speed hardly matters and size does.
const LEVEL: i32 = 3;

/// Writes `bytes` as one frame.
pub(crate) fn write_frame(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let mut c = zstd::bulk::Compressor::new(LEVEL)?;
    c.include_checksum(true)?;
    let frame = c.compress(bytes)?;
    let len = u32::try_from(frame.len()).map_err(|_| io::Error::other("flush over 4 GiB"))?;
    let mut record = Vec::with_capacity(4 + frame.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&frame);
    out.write_all(&record)
}

/// The concatenated contents of a log's frames, up to the first torn one.
pub(crate) struct FrameReader<R> {
    inner: R,
    current: io::Cursor<Vec<u8>>,
    /// Set when a frame was cut short or corrupt (shared: the IPC reader owns this).
    torn: Rc<Cell<bool>>,
    done: bool,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> (Self, Rc<Cell<bool>>) {
        let torn = Rc::new(Cell::new(false));
        let r = FrameReader {
            inner,
            current: io::Cursor::new(Vec::new()),
            torn: torn.clone(),
            done: false,
        };
        (r, torn)
    }

    /// The next frame's contents; None at the end (clean or torn).
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        match read_full(&mut self.inner, &mut len) {
            Ok(0) => return None,
            Ok(4) => {}
            _ => {
                self.torn.set(true);
                return None;
            }
        }
        let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
        if !matches!(read_full(&mut self.inner, &mut frame), Ok(n) if n == frame.len()) {
            self.torn.set(true);
            return None;
        }
        let out = zstd::stream::decode_all(&frame[..]).ok();
        if out.is_none() {
            self.torn.set(true);
        }
        out
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || self.done || buf.is_empty() {
                return Ok(n);
            }
            match self.next_frame() {
                Some(bytes) => self.current = io::Cursor::new(bytes),
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            write_frame(&mut out, f).unwrap();
        }
        out
    }

    #[test]
    fn frames_read_back_as_one_stream() {
        let bytes = log(&[b"hello ", b"", b"world"]);
        let (mut r, torn) = FrameReader::new(&bytes[..]);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
        assert!(!torn.get());
    }

    #[test]
    fn a_cut_or_corrupt_last_frame_ends_the_log_there() {
        let bytes = log(&[b"kept", b"lost in the crash"]);
        let first = 4 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        for cut in [bytes.len() - 1, bytes.len() - 9, first + 2] {
            let (mut r, torn) = FrameReader::new(&bytes[..cut]);
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert!(torn.get(), "cut at {cut}");
            assert!(b"kept".starts_with(&got[..got.len().min(4)]));
        }
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0xff;
        let (mut r, torn) = FrameReader::new(&bad[..]);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"kept");
        assert!(torn.get());
    }
}

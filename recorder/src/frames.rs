//! The staging log's framing: one zstd stream per log, flushed (not ended) at every
//! append, so each flush's bytes are decodable on their own account while matching
//! what earlier flushes wrote. A flush of one event then costs tens of bytes where a
//! frame of its own cost about 440 (the IPC message header repeats at every flush and
//! compresses to a reference). Each flush is a record: a 4-byte length, a CRC-32 of
//! the compressed bytes, the bytes. A torn last record (a crash mid-flush) fails its
//! length or its CRC and ends the log there.
//!
//! A log begins with `MAGIC`. Logs of the previous framing (no magic; each record a
//! whole zstd frame with its own checksum, no CRC) are still read.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use zstd::stream::raw::{Decoder, Operation};

/// Level 3: at a flush a second, speed hardly matters and size does.
const LEVEL: i32 = 3;

/// The first bytes of a streamed log.
pub(crate) const MAGIC: &[u8; 8] = b"PHSTG\x00\x02\n";

/// Compresses a log's appends into one stream, a record per append.
pub(crate) struct FrameWriter {
    encoder: zstd::stream::write::Encoder<'static, Vec<u8>>,
}

impl FrameWriter {
    pub fn new() -> io::Result<Self> {
        Ok(FrameWriter {
            encoder: zstd::stream::write::Encoder::new(Vec::new(), LEVEL)?,
        })
    }

    /// `bytes` as the log's next record, ready to be written whole.
    pub fn record(&mut self, bytes: &[u8]) -> io::Result<Vec<u8>> {
        self.encoder.write_all(bytes)?;
        // A flush ends the block: everything given so far can be decoded from what
        // was written so far.
        self.encoder.flush()?;
        let chunk = std::mem::take(self.encoder.get_mut());
        let len = u32::try_from(chunk.len()).map_err(|_| io::Error::other("flush over 4 GiB"))?;
        let mut record = Vec::with_capacity(8 + chunk.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&chunk).to_le_bytes());
        record.extend_from_slice(&chunk);
        Ok(record)
    }
}

/// The decompressed contents of a log's records, up to the first torn one.
pub(crate) struct FrameReader<R> {
    inner: io::Chain<io::Cursor<Vec<u8>>, R>,
    /// Records carry a CRC (`MAGIC` logs); without one, each is a checksummed frame.
    with_crc: bool,
    decoder: Decoder<'static>,
    current: io::Cursor<Vec<u8>>,
    /// Set when a record was cut short or corrupt (shared: the IPC reader owns this).
    torn: Rc<Cell<bool>>,
    done: bool,
}

impl<R: Read> FrameReader<R> {
    pub fn new(mut inner: R) -> io::Result<(Self, Rc<Cell<bool>>)> {
        let mut head = vec![0u8; MAGIC.len()];
        let got = read_full(&mut inner, &mut head)?;
        head.truncate(got);
        let with_crc = head == MAGIC;
        if with_crc {
            head.clear();
        }
        let torn = Rc::new(Cell::new(false));
        let r = FrameReader {
            inner: io::Cursor::new(head).chain(inner),
            with_crc,
            decoder: Decoder::new()?,
            current: io::Cursor::new(Vec::new()),
            torn: torn.clone(),
            done: false,
        };
        Ok((r, torn))
    }

    /// The next record's decompressed contents; None at the end (clean or torn).
    fn next_record(&mut self) -> Option<Vec<u8>> {
        let head_len = if self.with_crc { 8 } else { 4 };
        let mut head = [0u8; 8];
        match read_full(&mut self.inner, &mut head[..head_len]) {
            Ok(0) => return None,
            Ok(n) if n == head_len => {}
            _ => return self.tear(),
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let mut chunk = vec![0u8; len];
        if !matches!(read_full(&mut self.inner, &mut chunk), Ok(n) if n == len) {
            return self.tear();
        }
        if self.with_crc && crc32fast::hash(&chunk).to_le_bytes() != head[4..8] {
            return self.tear();
        }
        match decode(&mut self.decoder, &chunk) {
            Ok(out) => Some(out),
            Err(_) => self.tear(),
        }
    }

    fn tear(&mut self) -> Option<Vec<u8>> {
        self.torn.set(true);
        None
    }
}

/// Everything `chunk` decodes to, given what the stream decoded before it.
fn decode(decoder: &mut Decoder<'static>, chunk: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0;
    loop {
        let status = decoder.run_on_buffers(&chunk[read..], &mut buf)?;
        read += status.bytes_read;
        out.extend_from_slice(&buf[..status.bytes_written]);
        // Done once the input is used up and the decoder had room to spare (it holds
        // nothing more back).
        if read == chunk.len() && status.bytes_written < buf.len() {
            return Ok(out);
        }
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
            match self.next_record() {
                Some(bytes) => self.current = io::Cursor::new(bytes),
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(records: &[&[u8]]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let mut w = FrameWriter::new().unwrap();
        for r in records {
            out.extend(w.record(r).unwrap());
        }
        out
    }

    fn read_back(bytes: &[u8]) -> (Vec<u8>, bool) {
        let (mut r, torn) = FrameReader::new(bytes).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        (got, torn.get())
    }

    #[test]
    fn records_read_back_as_one_stream() {
        let bytes = log(&[b"hello ", b"", b"world"]);
        assert_eq!(read_back(&bytes), (b"hello world".to_vec(), false));
        assert_eq!(read_back(MAGIC), (Vec::new(), false));
    }

    #[test]
    fn a_repeated_flush_costs_a_reference_not_its_size() {
        let message: Vec<u8> = (0..400u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = FrameWriter::new().unwrap();
        let first = w.record(&message).unwrap().len();
        let again = w.record(&message).unwrap().len();
        assert!(again < 30, "first {first} bytes, again {again}");
    }

    #[test]
    fn a_cut_or_corrupt_last_record_ends_the_log_there() {
        let bytes = log(&[b"kept", b"lost in the crash"]);
        let first = MAGIC.len() + 8 + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        for cut in [bytes.len() - 1, bytes.len() - 9, first + 2, first + 7] {
            let (got, torn) = read_back(&bytes[..cut]);
            assert!(torn, "cut at {cut}");
            assert_eq!(got, b"kept", "cut at {cut}");
        }
        for flip in [first + 5, bytes.len() - 3] {
            let mut bad = bytes.clone();
            bad[flip] ^= 0xff;
            assert_eq!(read_back(&bad), (b"kept".to_vec(), true), "flip at {flip}");
        }
    }

    /// The previous framing: each record one zstd frame with its checksum, no magic.
    #[test]
    fn a_log_of_whole_frames_is_still_read() {
        let mut bytes = Vec::new();
        for part in [&b"kept "[..], b"too", b"torn"] {
            let mut c = zstd::bulk::Compressor::new(LEVEL).unwrap();
            c.include_checksum(true).unwrap();
            let frame = c.compress(part).unwrap();
            bytes.extend((frame.len() as u32).to_le_bytes());
            bytes.extend(frame);
        }
        let whole = read_back(&bytes);
        assert_eq!(whole, (b"kept tootorn".to_vec(), false));
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        assert_eq!(read_back(&bytes), (b"kept too".to_vec(), true));
        assert_eq!(read_back(&bytes[..3]), (Vec::new(), true));
    }
}

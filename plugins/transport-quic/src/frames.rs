//! The frame codec, without any I/O: a frame on a stream is a `u32`
//! big-endian length followed by that many bytes.
//!
//! [`Decoder`] is fed whatever bytes a stream gives, in chunks of any size,
//! and hands back whole frames only. A length over the limit is refused as
//! soon as its four bytes are in, before any of its payload is buffered, and
//! the decoder then refuses everything after it: nothing partial and nothing
//! past a refusal is ever delivered.

use std::fmt;

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Why a stream's bytes are not a sequence of acceptable frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A frame announced more bytes than the limit.
    TooLong {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The stream finished in the middle of a frame.
    Truncated {
        /// Bytes of the unfinished frame (prefix included) that arrived.
        buffered: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            Self::Truncated { buffered } => {
                write!(f, "stream finished inside a frame ({buffered} bytes of it)")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes one frame: its length prefix, then its bytes.
///
/// # Errors
/// [`FrameError::TooLong`] when `payload` is longer than `max`.
pub fn encode(payload: &[u8], max: u32) -> Result<Vec<u8>, FrameError> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    if payload.len() > max as usize {
        return Err(FrameError::TooLong { len, max });
    }
    let mut out = Vec::with_capacity(PREFIX_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Reassembles frames from a stream's bytes. See the [module docs](self).
#[derive(Debug)]
pub struct Decoder {
    max: u32,
    buf: Vec<u8>,
    /// The length of the frame being read, once its prefix is in.
    want: Option<usize>,
    failed: Option<FrameError>,
}

impl Decoder {
    /// A decoder that refuses frames longer than `max` bytes.
    pub fn new(max: u32) -> Self {
        Self {
            max,
            buf: Vec::new(),
            want: None,
            failed: None,
        }
    }

    /// Takes the next bytes of the stream and appends the frames they
    /// complete to `frames`, in order.
    ///
    /// # Errors
    /// [`FrameError::TooLong`] for an oversized frame, and the same error
    /// for every later call. The frames completed before it (in this call
    /// too) are in `frames`, so what is delivered does not depend on how
    /// the bytes were chunked; nothing from the oversized frame on is.
    pub fn push(&mut self, mut data: &[u8], frames: &mut Vec<Vec<u8>>) -> Result<(), FrameError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        while !data.is_empty() {
            let want = match self.want {
                Some(want) => want,
                None => {
                    let take = (PREFIX_LEN - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() < PREFIX_LEN {
                        break;
                    }
                    let mut prefix = [0u8; PREFIX_LEN];
                    prefix.copy_from_slice(&self.buf);
                    let len = u32::from_be_bytes(prefix);
                    if len > self.max {
                        let err = FrameError::TooLong { len, max: self.max };
                        self.failed = Some(err);
                        self.buf = Vec::new();
                        return Err(err);
                    }
                    self.buf.clear();
                    self.buf.reserve(len as usize);
                    self.want = Some(len as usize);
                    len as usize
                }
            };
            let take = (want - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == want {
                frames.push(std::mem::take(&mut self.buf));
                self.want = None;
            }
        }
        Ok(())
    }

    /// The stream finished: fine between frames.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] when a frame was begun and not completed,
    /// or the earlier refusal.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let buffered = match self.want {
            Some(_) => PREFIX_LEN + self.buf.len(),
            None => self.buf.len(),
        };
        if buffered == 0 {
            Ok(())
        } else {
            Err(FrameError::Truncated { buffered })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `data`, returning what came out.
    fn push(d: &mut Decoder, data: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        d.push(data, &mut out).map(|()| out)
    }

    fn stream(frames: &[&[u8]]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| encode(f, u32::MAX).unwrap())
            .collect()
    }

    #[test]
    fn frames_come_out_whole_whatever_the_chunking() {
        let frames: [&[u8]; 4] = [b"hello", b"", b"x", &[7u8; 300]];
        let bytes = stream(&frames);
        for chunk in [1, 2, 3, 4, 5, 7, 64, bytes.len()] {
            let mut d = Decoder::new(1024);
            let mut out = Vec::new();
            for part in bytes.chunks(chunk) {
                d.push(part, &mut out).unwrap();
            }
            d.finish().unwrap();
            assert_eq!(out, frames.map(<[u8]>::to_vec), "chunk size {chunk}");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_on_its_prefix_alone() {
        let mut d = Decoder::new(10);
        assert_eq!(
            push(&mut d, &encode(b"ok", 10).unwrap()).unwrap(),
            vec![b"ok"]
        );
        let err = push(&mut d, &11u32.to_be_bytes()).unwrap_err();
        assert_eq!(err, FrameError::TooLong { len: 11, max: 10 });
        assert_eq!(err.to_string(), "frame of 11 bytes exceeds the limit of 10");
        // Nothing after the refusal comes out, even a well-formed frame.
        assert_eq!(push(&mut d, &encode(b"later", 10).unwrap()), Err(err));
        assert_eq!(d.finish(), Err(err));
    }

    #[test]
    fn frames_before_an_oversized_one_in_the_same_chunk_still_come_out() {
        let mut d = Decoder::new(4);
        let mut bytes = encode(b"ok", 4).unwrap();
        bytes.extend_from_slice(&5u32.to_be_bytes());
        bytes.extend_from_slice(b"12345");
        bytes.extend(encode(b"late", 4).unwrap());
        let mut out = Vec::new();
        assert_eq!(
            d.push(&bytes, &mut out),
            Err(FrameError::TooLong { len: 5, max: 4 })
        );
        assert_eq!(out, vec![b"ok".to_vec()]);
    }

    #[test]
    fn a_frame_of_exactly_the_limit_passes() {
        let mut d = Decoder::new(3);
        assert_eq!(push(&mut d, &stream(&[b"abc"])).unwrap(), vec![b"abc"]);
        assert_eq!(
            encode(b"abcd", 3),
            Err(FrameError::TooLong { len: 4, max: 3 })
        );
    }

    #[test]
    fn a_stream_that_ends_inside_a_frame_is_truncated() {
        let bytes = stream(&[b"hello"]);
        for cut in 1..bytes.len() {
            let mut d = Decoder::new(100);
            assert!(push(&mut d, &bytes[..cut]).unwrap().is_empty());
            assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: cut }));
        }
    }
}

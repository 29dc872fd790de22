//! The framing of the protocol: `len: u32 LE | postcard(Envelope<T>)`, at most
//! [`MAX_FRAME`] bytes after the length.
//!
//! A length is a claim, not a fact: a reader checks it against [`MAX_FRAME`] and then reads the
//! body in pieces of at most [`READ_CHUNK`] bytes, growing its buffer only by what arrived, so
//! that a peer announcing 64 MiB and sending one byte costs one chunk, not 64 MiB
//! ([`read_body`]; the master's asynchronous reader does the same with the same constants).

use serde::{Deserialize, Serialize};

use super::MAX_FRAME;

/// A request or response with the id that pairs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

/// A frame that cannot be decoded or is too long.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is longer than {MAX_FRAME}")]
    TooLong(usize),
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `envelope` as one frame (length prefix included), appended to `out`.
pub fn encode<T: Serialize>(envelope: &Envelope<T>, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let body = postcard::to_extend(envelope, std::mem::take(out))?;
    *out = body;
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(FrameError::TooLong(len));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// The body length a 4-byte frame header announces, checked against [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    Ok(len)
}

/// Decodes a frame body (without its length prefix); trailing bytes are malformed.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<Envelope<T>, FrameError> {
    let (envelope, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(postcard::Error::DeserializeBadEncoding));
    }
    Ok(envelope)
}

/// Writes one frame to a blocking stream.
pub fn write_frame<T: Serialize>(
    stream: &mut impl std::io::Write,
    envelope: &Envelope<T>,
    scratch: &mut Vec<u8>,
) -> Result<(), FrameError> {
    scratch.clear();
    encode(envelope, scratch)?;
    stream.write_all(scratch)?;
    Ok(())
}

/// The most a frame reader adds to its buffer before the bytes to fill it have arrived.
pub const READ_CHUNK: usize = 64 << 10;

/// A reader's buffer larger than this after a frame is given back to the allocator, so that
/// one large frame does not pin its memory for the connection's life.
pub const KEEP_SCRATCH: usize = 1 << 20;

/// Reads exactly `len` bytes into `buf` (cleared first), growing it by at most [`READ_CHUNK`]
/// at a time as the bytes arrive; the end of the stream before `len` is `UnexpectedEof`.
pub fn read_body(stream: &mut impl std::io::Read, len: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    if buf.capacity() > KEEP_SCRATCH.max(len) {
        buf.shrink_to(KEEP_SCRATCH);
    }
    while buf.len() < len {
        let start = buf.len();
        let step = (len - start).min(READ_CHUNK);
        buf.resize(start + step, 0);
        let n = match stream.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the peer closed mid-frame"));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        };
        buf.truncate(start + n);
    }
    Ok(())
}

/// Reads one frame from a blocking stream into `scratch` and decodes it.
pub fn read_frame<T: for<'a> Deserialize<'a>>(
    stream: &mut impl std::io::Read,
    scratch: &mut Vec<u8>,
) -> Result<Envelope<T>, FrameError> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = frame_len(header)?;
    read_body(stream, len, scratch)?;
    decode(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ReplicaConfig, Request};

    #[test]
    fn a_request_survives_a_round_trip() {
        let req = Envelope {
            id: 7,
            body: Request::PutStart {
                client: 1 << 100,
                key: "k".into(),
                size: 4096,
                config: ReplicaConfig { replica_num: 2, preferred_segments: vec!["a:1".into()], ..Default::default() },
                upsert: false,
            },
        };
        let mut buf = Vec::new();
        encode(&req, &mut buf).unwrap();
        let len = frame_len(buf[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, buf.len() - 4);
        let back: Envelope<Request> = decode(&buf[4..]).unwrap();
        assert_eq!(back, req);
    }

    /// A reader that hands out `data` a few bytes at a time and then reports the end.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn an_announced_body_is_not_allocated_before_it_arrives() {
        let mut buf = Vec::new();
        let err = read_body(&mut Trickle { data: &[7], step: 1 }, MAX_FRAME, &mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(buf.capacity() <= 2 * READ_CHUNK, "capacity {} for one byte received", buf.capacity());
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        read_body(&mut Trickle { data: &data, step: 7000 }, data.len(), &mut buf).unwrap();
        assert_eq!(buf, data);
        // A large buffer is given back before the next frame.
        let mut big = vec![0u8; 4 * KEEP_SCRATCH];
        read_body(&mut Trickle { data: &[1, 2], step: 2 }, 2, &mut big).unwrap();
        assert!(big.capacity() <= KEEP_SCRATCH);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(matches!(frame_len(((MAX_FRAME + 1) as u32).to_le_bytes()), Err(FrameError::TooLong(_))));
        assert!(decode::<Request>(&[0xff, 0xff, 0xff]).is_err());
        let mut buf = Vec::new();
        encode(&Envelope { id: 1, body: Request::Health }, &mut buf).unwrap();
        buf.push(0);
        assert!(decode::<Request>(&buf[4..]).is_err());
    }
}

//! The framing of the protocol: `len: u32 LE | postcard(Envelope<T>)`, at most
//! [`MAX_FRAME`] bytes after the length.

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

/// Reads one frame from a blocking stream into `scratch` and decodes it.
pub fn read_frame<T: for<'a> Deserialize<'a>>(
    stream: &mut impl std::io::Read,
    scratch: &mut Vec<u8>,
) -> Result<Envelope<T>, FrameError> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = frame_len(header)?;
    scratch.clear();
    scratch.resize(len, 0);
    stream.read_exact(scratch)?;
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

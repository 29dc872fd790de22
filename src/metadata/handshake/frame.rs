//! Handshake frames: `u64` little-endian length, one type byte, JSON text (`wire.md` §2).
//!
//! `length` counts the type byte and the JSON. A first payload byte in `0..=3` is the type; a
//! larger printable byte starts the JSON of Mooncake's old, typeless protocol (handled as a
//! Connection request and answered without a type byte); bytes of `0x80` and up are refused, as
//! Mooncake refuses them (it compares them as negative `char`s).
//!
//! The length is checked against the caller's cap (`MC_HANDSHAKE_MAX_LENGTH`, 1 MiB by default)
//! before anything is allocated, and the payload is read in pieces of at most [`READ_CHUNK`],
//! the buffer growing only with the bytes that arrived: a peer announcing the cap and sending
//! one byte costs one piece.

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The message types of the handshake port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// RDMA queue-pair exchange.
    Connection = 0,
    /// Segment descriptor exchange (P2P mode).
    Metadata = 1,
    Notify = 2,
    Probe = 3,
}

impl FrameType {
    fn from_byte(b: u8) -> Option<FrameType> {
        match b {
            0 => Some(FrameType::Connection),
            1 => Some(FrameType::Metadata),
            2 => Some(FrameType::Notify),
            3 => Some(FrameType::Probe),
            _ => None,
        }
    }
}

/// A decoded request or reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub kind: FrameType,
    /// True for the old protocol: no type byte on the wire, in either direction.
    pub typeless: bool,
    pub body: Value,
}

/// Why a frame was refused. The server closes the connection without a reply in every case.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is zero or above the limit of {1} bytes")]
    BadLength(u64, usize),
    #[error("unexpected frame type byte 0x{0:02x}")]
    BadType(u8),
    #[error("frame body is not JSON: {0}")]
    BadJson(#[from] serde_json::Error),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `body` as Mooncake writes it: compact JSON with a trailing newline.
pub fn encode(kind: FrameType, typeless: bool, body: &Value) -> Vec<u8> {
    let mut json = body.to_string();
    json.push('\n');
    let type_len = usize::from(!typeless);
    let length = (json.len() + type_len) as u64;
    let mut out = Vec::with_capacity(8 + length as usize);
    out.extend_from_slice(&length.to_le_bytes());
    if !typeless {
        out.push(kind as u8);
    }
    out.extend_from_slice(json.as_bytes());
    out
}

/// Splits a received payload (without its length prefix) into type and JSON.
pub fn decode_payload(payload: &[u8]) -> Result<Frame, FrameError> {
    let first = *payload.first().ok_or(FrameError::BadLength(0, 0))?;
    let (kind, typeless, json) = match FrameType::from_byte(first) {
        Some(kind) => (kind, false, &payload[1..]),
        None if first < 0x80 => (FrameType::Connection, true, payload),
        None => return Err(FrameError::BadType(first)),
    };
    let body = serde_json::from_slice(json)?;
    Ok(Frame { kind, typeless, body })
}

/// The most the reader adds to its buffer before the bytes to fill it have arrived.
pub const READ_CHUNK: usize = 64 << 10;

/// Reads one frame, refusing lengths of 0 or above `max_len`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max_len: usize) -> Result<Frame, FrameError> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len).await?;
    let len = u64::from_le_bytes(len);
    if len == 0 || len > max_len as u64 {
        return Err(FrameError::BadLength(len, max_len));
    }
    let len = len as usize;
    let mut payload = Vec::new();
    while payload.len() < len {
        let start = payload.len();
        payload.resize(start + (len - start).min(READ_CHUNK), 0);
        let n = r.read(&mut payload[start..]).await?;
        if n == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        payload.truncate(start + n);
    }
    decode_payload(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn probe_frame_bytes() {
        let bytes = encode(FrameType::Probe, false, &json!({}));
        assert_eq!(bytes, [4, 0, 0, 0, 0, 0, 0, 0, 3, b'{', b'}', b'\n']);
    }

    #[test]
    fn old_protocol_is_connection_without_type() {
        let f = decode_payload(br#"{"local_nic_path":"x"}"#).unwrap();
        assert_eq!(f.kind, FrameType::Connection);
        assert!(f.typeless);
    }

    #[test]
    fn refuses_high_type_bytes_and_bad_json() {
        assert!(matches!(decode_payload(&[0x90, b'{', b'}']), Err(FrameError::BadType(0x90))));
        assert!(matches!(decode_payload(b"\x04{}"), Err(FrameError::BadJson(_))));
        assert!(matches!(decode_payload(b"\x01{not json"), Err(FrameError::BadJson(_))));
    }

    #[test]
    fn accepts_json_with_and_without_newline() {
        assert!(decode_payload(b"\x03{}").is_ok());
        assert!(decode_payload(b"\x03{}\n").is_ok());
    }

    #[test]
    fn an_announced_payload_is_not_allocated_before_it_arrives() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A reader that has the header, one byte of a 1 GiB payload, and then stalls forever.
        let mut bytes = (1u64 << 30).to_le_bytes().to_vec();
        bytes.push(1);
        let (mut tx, mut rx) = tokio::io::duplex(64);
        rt.block_on(async {
            use tokio::io::AsyncWriteExt;
            tx.write_all(&bytes).await.unwrap();
            let read = tokio::time::timeout(std::time::Duration::from_millis(50), read_frame(&mut rx, 2 << 30));
            assert!(read.await.is_err(), "the frame cannot be complete");
            drop(tx);
            let short = read_frame(&mut rx, 2 << 30).await;
            assert!(matches!(short, Err(FrameError::Io(_))));
        });
        // A whole frame read in several pieces.
        let body = json!({"s": "x".repeat(200_000)});
        let framed = encode(FrameType::Notify, false, &body);
        let f = rt.block_on(read_frame(&mut &framed[..], 1 << 20)).unwrap();
        assert_eq!(f.body, body);
    }

    proptest! {
        #[test]
        fn roundtrip(kind in 0u8..4, s in ".{0,64}", n in any::<u64>()) {
            let kind = FrameType::from_byte(kind).unwrap();
            let body = json!({"s": s, "n": n});
            let bytes = encode(kind, false, &body);
            let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            prop_assert_eq!(len, bytes.len() - 8);
            let f = decode_payload(&bytes[8..]).unwrap();
            prop_assert_eq!(f.kind, kind);
            prop_assert_eq!(f.body, body);
        }

        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_payload(&bytes);
        }
    }
}

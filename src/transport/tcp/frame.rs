//! libmooncake's own TCP framing ("batch frames"), spoken only between two of our engines.
//!
//! Mooncake's protocol carries one request per round trip on a connection (`wire.md` §4.3), so
//! a batch of small blocks costs a round trip, a wake-up and a few system calls per block. Our
//! framing carries many requests per frame and several frames in flight per connection:
//!
//! - **Offer**: our descriptors say `libmooncake.tcp_framing: 1`; an initiator uses the framing
//!   only towards a descriptor that offers it (Mooncake ignores the field and never sees it).
//! - **Hello**: the connection's first 24 bytes are a Mooncake session header that Mooncake
//!   never sends (size 0, which its initiators complete locally, `wire.md` §4.3), with `addr` =
//!   `"LMCFRAME"` and the version in the first padding byte. A server that does not know it
//!   (Mooncake's, an older one of ours) refuses a size-0 request with the v2 rejected frame and
//!   closes, so nothing is misread either way. The server answers with an 8-byte ack
//!   (`"LMCA"`, version); the initiator does not wait for it before sending frames.
//! - **Request frame**: a 16-byte head (`"LMRQ"`, entry count, sequence number), the entries
//!   (24 bytes each: addr, len, opcode 1 = write / 0 = read, 7 bytes of padding), then the
//!   payloads of the write entries, in entry order.
//! - **Reply frame**, one per request frame, in order: a 16-byte head (`"LMRP"`, count, the
//!   request's sequence number), one status byte per entry (0 = OK, 1 = refused), then the data
//!   of the read entries whose status is OK, in entry order. A write's OK is sent only after its
//!   bytes are in the target's memory, as in protocol v2.
//!
//! An entry the target refuses (outside its registered regions) fails alone: its write payload
//! is read and discarded, so the stream stays in step and the other entries go on. A frame that
//! breaks the rules below (bad magic, count, length, opcode) ends the connection.
//! All integers are little-endian.

use super::wire::{HEADER_LEN, STATUS_MAGIC, STATUS_REJECTED, V2_FLAG};

/// The framing version this build speaks (and offers in its descriptor).
pub const FRAMING_VERSION: u32 = 1;
/// `addr` of the hello header.
pub const HELLO_MAGIC: u64 = u64::from_le_bytes(*b"LMCFRAME");
/// High half of the hello ack.
pub const ACK_MAGIC: u32 = u32::from_le_bytes(*b"LMCA");
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"LMRQ");
pub const REPLY_MAGIC: u32 = u32::from_le_bytes(*b"LMRP");
pub const HEAD_LEN: usize = 16;
pub const ENTRY_LEN: usize = 24;
pub const ACK_LEN: usize = 8;

/// Most entries one frame may carry (its entry table then fits the 64 KiB receive buffer).
pub const MAX_ENTRIES: usize = 1024;
/// Largest single entry.
pub const MAX_ENTRY_LEN: u64 = 64 << 20;
/// Most write payload, and most read data, one frame may carry.
pub const MAX_FRAME_BYTES: u64 = 64 << 20;

pub const ENTRY_OK: u8 = 0;
pub const ENTRY_REFUSED: u8 = 1;

const OP_WRITE: u8 = 1;
const OP_READ: u8 = 0;

/// The hello header, offering `version`.
pub fn hello(version: u32) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[8..16].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
    b[16] = V2_FLAG; // a v2 READ of 0 bytes: refused with a status frame by servers without it
    b[17] = version.min(255) as u8;
    b
}

/// The version a connection's first header offers, when it is our hello.
pub fn parse_hello(b: &[u8; HEADER_LEN]) -> Option<u32> {
    let size = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
    let addr = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    (size == 0 && addr == HELLO_MAGIC && b[16] == V2_FLAG && b[17] >= 1).then_some(u32::from(b[17]))
}

pub fn ack(version: u32) -> [u8; ACK_LEN] {
    ((u64::from(ACK_MAGIC) << 32) | u64::from(version)).to_le_bytes()
}

/// What the server answered to a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Version(u32),
    /// Mooncake's rejected status frame: the server does not know our framing.
    Refused,
    Garbage(u64),
}

pub fn parse_ack(b: [u8; ACK_LEN]) -> Ack {
    let v = u64::from_le_bytes(b);
    match ((v >> 32) as u32, v as u32) {
        (ACK_MAGIC, version) => Ack::Version(version),
        (STATUS_MAGIC, STATUS_REJECTED) => Ack::Refused,
        _ => Ack::Garbage(v),
    }
}

/// The head of a request or reply frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub magic: u32,
    pub count: u32,
    pub seq: u64,
}

impl Head {
    pub fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.magic.to_le_bytes());
        out[4..8].copy_from_slice(&self.count.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Head {
        Head {
            magic: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            count: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
            seq: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
        }
    }

    /// Checks a frame head against `magic` and the entry limit; returns the entry count.
    pub fn check(&self, magic: u32) -> Result<usize, FrameError> {
        if self.magic != magic {
            return Err(FrameError::Magic(self.magic));
        }
        let n = self.count as usize;
        if n == 0 || n > MAX_ENTRIES {
            return Err(FrameError::Count(self.count));
        }
        Ok(n)
    }
}

/// One request of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Absolute address in the target process.
    pub addr: u64,
    pub len: u64,
    pub write: bool,
}

impl Entry {
    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.addr.to_le_bytes());
        out[8..16].copy_from_slice(&self.len.to_le_bytes());
        out[16] = if self.write { OP_WRITE } else { OP_READ };
        out[17..ENTRY_LEN].fill(0);
    }

    /// Decodes and checks one entry. A zero length is legal here (the target refuses the
    /// entry alone); a length above [`MAX_ENTRY_LEN`] or an unknown opcode is not.
    pub fn decode(b: &[u8]) -> Result<Entry, FrameError> {
        let addr = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
        let len = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
        let write = match b[16] {
            OP_WRITE => true,
            OP_READ => false,
            other => return Err(FrameError::Opcode(other)),
        };
        if len > MAX_ENTRY_LEN {
            return Err(FrameError::EntryLen(len));
        }
        Ok(Entry { addr, len, write })
    }
}

/// Totals of a frame's entries, checked against [`MAX_FRAME_BYTES`].
pub fn check_totals(entries: &[Entry]) -> Result<(), FrameError> {
    let (mut writes, mut reads) = (0u64, 0u64);
    for e in entries {
        // Each len is at most MAX_ENTRY_LEN and there are at most MAX_ENTRIES: no overflow.
        if e.write {
            writes += e.len;
        } else {
            reads += e.len;
        }
    }
    if writes > MAX_FRAME_BYTES || reads > MAX_FRAME_BYTES {
        return Err(FrameError::Bytes(writes.max(reads)));
    }
    Ok(())
}

/// A frame that breaks the rules; the connection ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {0:#010x}")]
    Magic(u32),
    #[error("frame entry count {0} outside 1..={MAX_ENTRIES}")]
    Count(u32),
    #[error("frame entry length {0} above {MAX_ENTRY_LEN}")]
    EntryLen(u64),
    #[error("frame carries {0} bytes, above {MAX_FRAME_BYTES}")]
    Bytes(u64),
    #[error("unknown frame opcode {0}")]
    Opcode(u8),
    #[error("reply frame {got} does not answer request frame {want}")]
    Sequence { got: u64, want: u64 },
    #[error("reply frame has {got} entries, its request {want}")]
    ReplyCount { got: u32, want: usize },
    #[error("unknown entry status {0}")]
    Status(u8),
}

impl From<FrameError> for std::io::Error {
    fn from(e: FrameError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tcp::wire::{Header, status_frame};
    use proptest::prelude::*;

    #[test]
    fn hello_is_a_zero_size_mooncake_header_that_mooncake_refuses() {
        let h = hello(FRAMING_VERSION);
        let as_mooncake = Header::decode(&h);
        assert_eq!(as_mooncake.size, 0, "Mooncake never sends size 0, and refuses it");
        assert!(as_mooncake.v2 && !as_mooncake.write, "refused with a status frame, no body read");
        assert_eq!(parse_hello(&h), Some(FRAMING_VERSION));
    }

    #[test]
    fn no_real_mooncake_header_reads_as_hello() {
        // Any non-zero size is a Mooncake request, whatever its address.
        let h = Header { size: 1, addr: HELLO_MAGIC, write: false, v2: true }.encode();
        assert_eq!(parse_hello(&h), None);
        // Size 0 with another address, or without our version byte, is not ours either.
        assert_eq!(parse_hello(&Header { size: 0, addr: 0, write: false, v2: true }.encode()), None);
        assert_eq!(parse_hello(&Header { size: 0, addr: HELLO_MAGIC, write: false, v2: true }.encode()), None);
    }

    #[test]
    fn acks_parse() {
        assert_eq!(parse_ack(ack(1)), Ack::Version(1));
        assert_eq!(parse_ack(status_frame(STATUS_REJECTED)), Ack::Refused);
        assert!(matches!(parse_ack([0; 8]), Ack::Garbage(0)));
    }

    #[test]
    fn heads_are_checked() {
        let h = |count| Head { magic: REQUEST_MAGIC, count, seq: 7 };
        assert_eq!(h(3).check(REQUEST_MAGIC), Ok(3));
        assert_eq!(h(0).check(REQUEST_MAGIC), Err(FrameError::Count(0)));
        assert_eq!(h(u32::MAX).check(REQUEST_MAGIC), Err(FrameError::Count(u32::MAX)));
        assert_eq!(h(1).check(REPLY_MAGIC), Err(FrameError::Magic(REQUEST_MAGIC)));
    }

    #[test]
    fn entries_are_checked() {
        let mut b = [0u8; ENTRY_LEN];
        Entry { addr: 1, len: MAX_ENTRY_LEN + 1, write: true }.encode(&mut b);
        assert_eq!(Entry::decode(&b), Err(FrameError::EntryLen(MAX_ENTRY_LEN + 1)));
        Entry { addr: 1, len: 1, write: true }.encode(&mut b);
        b[16] = 9;
        assert_eq!(Entry::decode(&b), Err(FrameError::Opcode(9)));
        let big = vec![Entry { addr: 0, len: MAX_ENTRY_LEN, write: true }; 2];
        assert!(matches!(check_totals(&big), Err(FrameError::Bytes(_))));
        assert_eq!(check_totals(&big[..1]), Ok(()));
    }

    proptest! {
        #[test]
        fn entry_roundtrip(addr in any::<u64>(), len in 0..=MAX_ENTRY_LEN, write in any::<bool>()) {
            let e = Entry { addr, len, write };
            let mut b = [0xffu8; ENTRY_LEN];
            e.encode(&mut b);
            prop_assert_eq!(Entry::decode(&b), Ok(e));
        }

        #[test]
        fn head_roundtrip(magic in any::<u32>(), count in any::<u32>(), seq in any::<u64>()) {
            let h = Head { magic, count, seq };
            let mut b = [0u8; HEAD_LEN];
            h.encode(&mut b);
            prop_assert_eq!(Head::decode(&b), h);
        }

        #[test]
        fn garbage_entries_never_panic(b in proptest::collection::vec(any::<u8>(), ENTRY_LEN)) {
            let _ = Entry::decode(&b);
        }
    }
}

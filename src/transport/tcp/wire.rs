//! Mooncake's TCP data framing (`wire.md` §4.2–4.4): a 24-byte request header and, in protocol
//! v2, 8-byte status frames.

/// Bit 7 of the opcode byte: the request uses acknowledged (v2) framing.
pub const V2_FLAG: u8 = 0x80;
/// Low opcode bits meaning WRITE; any other value is READ.
pub const OP_WRITE: u8 = 1;
pub const OP_READ: u8 = 0;
pub const HEADER_LEN: usize = 24;
/// High 32 bits of every status frame: "MCTV".
pub const STATUS_MAGIC: u32 = 0x4D43_5456;
pub const STATUS_OK: u32 = 0;
pub const STATUS_REJECTED: u32 = 1;

/// One request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes of the request.
    pub size: u64,
    /// Absolute address in the target process.
    pub addr: u64,
    pub write: bool,
    pub v2: bool,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..16].copy_from_slice(&self.addr.to_le_bytes());
        let op = if self.write { OP_WRITE } else { OP_READ };
        b[16] = op | if self.v2 { V2_FLAG } else { 0 };
        b
    }

    /// Decodes as Mooncake's server does: the 7 padding bytes are ignored, and any opcode
    /// whose low bits are not 1 is a READ.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Header {
        let size = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
        let addr = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
        let op = b[16];
        Header { size, addr, write: op & !V2_FLAG == OP_WRITE, v2: op & V2_FLAG != 0 }
    }
}

/// An 8-byte status frame for `code`.
pub fn status_frame(code: u32) -> [u8; 8] {
    ((u64::from(STATUS_MAGIC) << 32) | u64::from(code)).to_le_bytes()
}

/// What a received status frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Rejected,
    /// Magic present, code unknown.
    Other(u32),
    /// No magic: the peer does not speak v2.
    NotV2,
}

pub fn parse_status(b: [u8; 8]) -> Status {
    let v = u64::from_le_bytes(b);
    if (v >> 32) as u32 != STATUS_MAGIC {
        return Status::NotV2;
    }
    match v as u32 {
        STATUS_OK => Status::Ok,
        STATUS_REJECTED => Status::Rejected,
        other => Status::Other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_captured_v2_write_header() {
        let h = Header { size: 4096, addr: 0x7f00_0000_1000, write: true, v2: true };
        let expect = [0x00, 0x10, 0, 0, 0, 0, 0, 0, 0x00, 0x10, 0, 0, 0, 0x7f, 0, 0, 0x81, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(h.encode(), expect);
    }

    #[test]
    fn status_frames_match_the_capture() {
        assert_eq!(status_frame(STATUS_OK), [0, 0, 0, 0, 0x56, 0x54, 0x43, 0x4d]);
        assert_eq!(status_frame(STATUS_REJECTED), [1, 0, 0, 0, 0x56, 0x54, 0x43, 0x4d]);
        assert_eq!(parse_status(status_frame(STATUS_OK)), Status::Ok);
        assert_eq!(parse_status([0; 8]), Status::NotV2);
    }

    #[test]
    fn odd_opcodes_read_as_mooncake_reads_them() {
        let mut b = [0u8; HEADER_LEN];
        b[16] = 0x05;
        assert_eq!(Header::decode(&b), Header { size: 0, addr: 0, write: false, v2: false });
        b[16] = 0x85;
        assert!(Header::decode(&b).v2 && !Header::decode(&b).write);
        b[16] = 0x01;
        assert!(Header::decode(&b).write);
    }

    proptest! {
        #[test]
        fn header_roundtrip(size in any::<u64>(), addr in any::<u64>(), write in any::<bool>(), v2 in any::<bool>()) {
            let h = Header { size, addr, write, v2 };
            prop_assert_eq!(Header::decode(&h.encode()), h);
        }

        #[test]
        fn status_roundtrip(code in any::<u32>()) {
            let parsed = parse_status(status_frame(code));
            match code {
                0 => prop_assert_eq!(parsed, Status::Ok),
                1 => prop_assert_eq!(parsed, Status::Rejected),
                c => prop_assert_eq!(parsed, Status::Other(c)),
            }
        }
    }
}

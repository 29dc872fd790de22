//! Our TCP framing (`src/transport/tcp/frame.rs`) as its two ends read it. The input is a
//! connection's bytes after the hello: either (first byte even) a request stream, read as the
//! data server reads it (head, entries, totals, the write payloads), or (first byte odd) a
//! request stream of the announced length (`u32` LE) and then the reply stream, read as the
//! initiator reads replies to those requests (head, sequence, count, a status byte per entry,
//! the data of the OK reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake::transport::tcp::frame::{
    ENTRY_LEN, ENTRY_OK, ENTRY_REFUSED, Entry, FrameError, HEAD_LEN, Head, MAX_ENTRIES, MAX_ENTRY_LEN, MAX_FRAME_BYTES,
    REPLY_MAGIC, REQUEST_MAGIC, check_totals,
};

/// Reads request frames until the input or a rule runs out: the whole ones, as (seq, entries).
fn requests(mut rest: &[u8]) -> Vec<(u64, Vec<Entry>)> {
    let mut frames = Vec::new();
    while rest.len() >= HEAD_LEN {
        let head = Head::decode(&rest[..HEAD_LEN]);
        let mut again = [0u8; HEAD_LEN];
        head.encode(&mut again);
        assert_eq!(again, rest[..HEAD_LEN]);
        rest = &rest[HEAD_LEN..];
        let Ok(count) = head.check(REQUEST_MAGIC) else { break };
        assert!((1..=MAX_ENTRIES).contains(&count));
        if rest.len() < count * ENTRY_LEN {
            break;
        }
        let mut entries = Vec::with_capacity(count);
        for chunk in rest[..count * ENTRY_LEN].chunks_exact(ENTRY_LEN) {
            match Entry::decode(chunk) {
                Ok(e) => {
                    assert!(e.len <= MAX_ENTRY_LEN);
                    let mut b = [0u8; ENTRY_LEN];
                    e.encode(&mut b);
                    assert_eq!(Entry::decode(&b), Ok(e));
                    assert_eq!(b[..17], chunk[..17]);
                    entries.push(e);
                }
                Err(FrameError::Opcode(_) | FrameError::EntryLen(_)) => return frames,
                Err(other) => panic!("entry decode gave {other:?}"),
            }
        }
        rest = &rest[count * ENTRY_LEN..];
        if check_totals(&entries).is_err() {
            break;
        }
        let writes: u64 = entries.iter().filter(|e| e.write).map(|e| e.len).sum();
        assert!(writes <= MAX_FRAME_BYTES);
        let Some(after) = rest.get(writes as usize..) else { break };
        rest = after;
        frames.push((head.seq, entries));
    }
    frames
}

/// Reads the replies to `sent`, in order, as `framed_lane/reply.rs` does.
fn replies(sent: &[(u64, Vec<Entry>)], mut rest: &[u8]) {
    for (seq, entries) in sent {
        if rest.len() < HEAD_LEN {
            return;
        }
        let head = Head::decode(&rest[..HEAD_LEN]);
        rest = &rest[HEAD_LEN..];
        let Ok(count) = head.check(REPLY_MAGIC) else { return };
        if head.seq != *seq || count != entries.len() || rest.len() < count {
            return;
        }
        let statuses = &rest[..count];
        if statuses.iter().any(|&s| s != ENTRY_OK && s != ENTRY_REFUSED) {
            return;
        }
        rest = &rest[count..];
        let data: u64 =
            entries.iter().zip(statuses).filter(|(e, s)| !e.write && **s == ENTRY_OK).map(|(e, _)| e.len).sum();
        assert!(data <= MAX_FRAME_BYTES);
        let Some(after) = rest.get(data as usize..) else { return };
        rest = after;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flag, rest)) = data.split_first() else { return };
    if flag & 1 == 0 {
        requests(rest);
        return;
    }
    let Some(len) = rest.get(..4) else { return };
    let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
    let Some(sent) = rest[4..].get(..len) else { return };
    replies(&requests(sent), &rest[4 + len..]);
});

//! A flood of unsolicited notifications costs bounded memory (issue 18, item 4): 300
//! notifications of 512 KiB from one peer over the real handshake port leave at most the
//! per-sender limit queued (16 MiB by default, `MC_NOTIFY_MAX_BYTES_PER_PEER`), `getNotifs`
//! returns the newest in order, and notifications sent after the flood, from that peer and
//! from another, are delivered. About 5 s.

mod support;

use mooncake::engine::notify::{DEFAULT_MAX_BYTES_PER_PEER, DEFAULT_MAX_PER_PEER};

const FLOOD: usize = 300;
const SIZE: usize = 512 << 10;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap()
}

#[test]
fn a_flood_keeps_the_newest_within_the_limits_and_later_notifications_arrive() {
    let target = support::engine();
    let limits = target.notify_limits();
    assert_eq!((limits.max_per_peer, limits.max_bytes_per_peer), (DEFAULT_MAX_PER_PEER, DEFAULT_MAX_BYTES_PER_PEER));
    let flooder = support::engine();
    let seg = flooder.open_segment(target.server_name(), false).unwrap();
    let before = rss_kib();
    let mut body = "x".repeat(SIZE);
    for i in 0..FLOOD {
        let tag = format!("{i:05}");
        body.replace_range(..tag.len(), &tag);
        flooder.send_notify(seg, "flooder", &body).expect("a notification is acknowledged");
    }
    let (count, bytes, dropped) = target.notifies_held();
    let grown = rss_kib().saturating_sub(before);
    eprintln!("after {FLOOD} × {SIZE} B: {count} held, {bytes} B, {dropped} dropped; RSS +{grown} KiB");
    assert!(bytes <= limits.max_bytes_per_peer, "{bytes} bytes held");
    assert!(count as u64 <= limits.max_per_peer);
    assert!(dropped as usize >= FLOOD - count, "{dropped} dropped");
    assert!(count > 0);

    // A legitimate notification after the flood, from the flooder and from another peer.
    flooder.send_notify(seg, "flooder", "done").unwrap();
    let other = support::engine();
    let seg2 = other.open_segment(target.server_name(), false).unwrap();
    other.send_notify(seg2, "decoder-1", "batch 7 finished").unwrap();

    let got = target.take_notifies();
    let flood: Vec<usize> =
        got.iter().filter(|(n, m)| n == "flooder" && m.len() == SIZE).map(|(_, m)| m[..5].parse().unwrap()).collect();
    // The newest survive, in order, ending with the last one sent.
    assert_eq!(flood.last(), Some(&(FLOOD - 1)));
    assert!(flood.windows(2).all(|w| w[1] == w[0] + 1), "the kept ones are the newest, consecutive");
    assert!(got.contains(&("flooder".to_string(), "done".to_string())));
    assert_eq!(got.last(), Some(&("decoder-1".to_string(), "batch 7 finished".to_string())));
    assert_eq!(target.notifies_held().0, 0);
}

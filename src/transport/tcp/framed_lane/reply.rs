//! The reply side of a framed connection: one thread per connection reads the reply of each
//! frame in flight, in order, and ends the frame's slices (statuses, then read data straight into
//! the slices' memory). Kept apart from the sending side so that a full socket buffer in one
//! direction never stops the other.

use super::*;

impl FramedLink {
    /// Reads replies on `conn` and ends their slices, until the connection ends.
    pub(super) fn run_receiver(self: Arc<Self>, conn: Arc<Conn>) {
        let mut rd = Reader::new(READ_BUFFER);
        let why = self.receive(&conn, &mut rd).err();
        self.abort(&conn, why);
    }

    /// Waits for the next `n` bytes on an idle-tolerant connection. `Ok(false)`: the
    /// connection ended normally (it is retiring or the link closed).
    fn await_bytes(&self, conn: &Conn, rd: &mut Reader, n: usize, what: &str) -> Result<bool, String> {
        loop {
            let ended = conn.closing.load(Ordering::Acquire);
            match rd.fill(&conn.sock, n) {
                Ok(true) => return Ok(true),
                Ok(false) if ended => return Ok(false),
                // A peer that closes an idle connection (it stopped, or restarts) fails nothing;
                // the next submission connects again.
                Ok(false) if conn.inflight.lock().frames.is_empty() => {
                    tracing::debug!(peer = %self.addr, "tcp peer closed an idle connection");
                    return Ok(false);
                }
                Ok(false) => return Err(format!("peer closed the connection while waiting for {what}")),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if ended {
                        return Ok(false);
                    }
                    if conn.inflight.lock().frames.is_empty() {
                        continue; // idle
                    }
                    return Err(format!(
                        "nothing received for {:?} while waiting for {what}",
                        self.settings.io_timeout
                    ));
                }
                Err(_) if ended => return Ok(false),
                Err(e) => return Err(format!("receiving {what}: {e}")),
            }
        }
    }

    fn receive(&self, conn: &Conn, rd: &mut Reader) -> Result<(), String> {
        if !self.await_bytes(conn, rd, frame::ACK_LEN, "the framing ack")? {
            return Ok(());
        }
        let ack = frame::parse_ack(rd.buffered()[..frame::ACK_LEN].try_into().expect("8 bytes"));
        rd.consume(frame::ACK_LEN);
        match ack {
            frame::Ack::Version(v) if (1..=frame::FRAMING_VERSION).contains(&v) => {}
            frame::Ack::Version(v) => return Err(format!("peer answered with unknown framing version {v}")),
            frame::Ack::Refused => {
                return Err("peer refused libmooncake's framing although its descriptor offers it".into());
            }
            frame::Ack::Garbage(v) => return Err(format!("peer answered the framing hello with {v:#018x}")),
        }
        let mut reads: Vec<Piece> = Vec::new();
        let mut trusted: Vec<bool> = Vec::new();
        let mut statuses: Vec<u8> = Vec::with_capacity(FRAME_ENTRIES);
        loop {
            if !self.await_bytes(conn, rd, HEAD_LEN, "a reply")? {
                return Ok(());
            }
            let head = Head::decode(&rd.buffered()[..HEAD_LEN]);
            let Some(rec) = ({
                let mut inflight = conn.inflight.lock();
                let rec = inflight.frames.pop_front();
                inflight.bytes -= rec.as_ref().map_or(0, |r| r.bytes);
                rec
            }) else {
                return Err("reply frame with no request frame in flight".into());
            };
            let checked = head.check(frame::REPLY_MAGIC).and_then(|n| {
                if head.seq != rec.seq {
                    Err(FrameError::Sequence { got: head.seq, want: rec.seq })
                } else if n != rec.slices.len() {
                    Err(FrameError::ReplyCount { got: head.count, want: rec.slices.len() })
                } else {
                    Ok(n)
                }
            });
            let n = match checked {
                Ok(n) => n,
                Err(e) => {
                    self.fail_all(rec.slices);
                    return Err(format!("bad reply: {e}"));
                }
            };
            rd.consume(HEAD_LEN);
            match rd.fill(&conn.sock, n) {
                Ok(true) => {}
                Ok(false) => {
                    self.fail_all(rec.slices);
                    return Err("peer closed inside a reply".into());
                }
                Err(e) => {
                    self.fail_all(rec.slices);
                    return Err(format!("receiving reply statuses: {e}"));
                }
            }
            statuses.clear();
            statuses.extend_from_slice(&rd.buffered()[..n]);
            rd.consume(n);
            if let Some(&bad) = statuses.iter().find(|&&s| s != ENTRY_OK && s != ENTRY_REFUSED) {
                self.fail_all(rec.slices);
                return Err(format!("bad reply: {}", FrameError::Status(bad)));
            }
            reads.clear();
            trusted.clear();
            for (s, _) in
                rec.slices.iter().zip(&statuses).filter(|(s, st)| s.opcode == Opcode::Read && **st == ENTRY_OK)
            {
                reads.push(Piece { ptr: s.local, len: s.len as usize });
                trusted.push(s.verified);
            }
            // SAFETY: verified read destinations are local ranges the engine checked against
            // registered regions at submission (the others only the kernel touches); the slices
            // (and so their tasks' memory) are still owned.
            if let Err(e) = unsafe { rd.read_into_checked(&conn.sock, &reads, |i| trusted[i]) } {
                self.fail_all(rec.slices);
                return Err(format!("receiving read data: {e}"));
            }
            self.finish_frame(rec, &statuses);
            // Wake the lane for queued work its window now has room for, or (without a
            // connection pool) to retire the connection once nothing is in flight.
            if self.queued.load(Ordering::Acquire) > 0 || !self.settings.keep_connections {
                let _st = self.state.lock();
                conn.wake.notify_one();
            }
        }
    }

    fn finish_frame(&self, mut rec: FrameRec, statuses: &[u8]) {
        let mut refused = None;
        for (s, &status) in rec.slices.drain(..).zip(statuses) {
            if status == ENTRY_OK {
                self.completed.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(s.len, Ordering::Relaxed);
                s.finish(true);
            } else {
                refused.get_or_insert((s.remote, s.len));
                self.failed.fetch_add(1, Ordering::Relaxed);
                s.finish(false);
            }
        }
        if let Some((addr, len)) = refused
            && let Some(suppressed) = self.warnings.allow()
        {
            tracing::warn!(
                peer = %self.addr,
                addr = format_args!("{addr:#x}"),
                len,
                similar_since_last = suppressed,
                "tcp transfer refused by the target: range is not inside one registered region"
            );
        }
        self.recycle(rec.slices);
    }
}

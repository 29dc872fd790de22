//! Warnings that a peer can trigger at line rate (a dead peer fails every queued slice, a buggy
//! or hostile one sends refused requests in a loop) are logged at most once per interval, with
//! the number of occurrences left out since the last line.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// See the module documentation.
pub struct LogLimit {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    pub const fn new(interval: Duration) -> LogLimit {
        LogLimit { interval, state: Mutex::new((None, 0)) }
    }

    /// `Some(suppressed)` when this occurrence may be logged (with how many were not since the
    /// last logged one), `None` when it must be counted and skipped.
    pub fn allow(&self) -> Option<u64> {
        let mut st = self.state.lock();
        let now = Instant::now();
        match st.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                st.1 += 1;
                None
            }
            _ => {
                st.0 = Some(now);
                Some(std::mem::take(&mut st.1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_counts_the_rest() {
        let l = LogLimit::new(Duration::from_millis(100));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(l.allow(), Some(2));
    }
}

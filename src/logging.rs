//! How faults are logged: peer identities in hex, and rate limiting so a
//! peer sending garbage cannot flood the log.

use std::time::Duration;
use tokio::time::Instant;

/// A peer identity (or any bytes) as lowercase hex.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Log a class of warnings at most once per second, counting the rest.
#[derive(Default)]
pub(crate) struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub(crate) fn warn(&mut self, log: impl FnOnce()) {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            if self.suppressed > 0 {
                tracing::warn!(
                    suppressed = self.suppressed,
                    "similar warnings suppressed in the last second"
                );
            }
            self.last = Some(now);
            self.suppressed = 0;
            log();
        } else {
            self.suppressed += 1;
        }
    }
}

//! A pacing bandwidth limiter for the process server's sends.

use std::time::Duration;

use tokio::time::Instant;

/// Paces sends to at most `bytes_per_sec`, allowing a short burst.
#[derive(Debug)]
pub struct BandwidthLimiter {
    bytes_per_sec: u64,
    next_free: Instant,
    burst: Duration,
}

impl BandwidthLimiter {
    /// A limiter for `bytes_per_sec` (must be > 0).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self { bytes_per_sec: bytes_per_sec.max(1), next_free: Instant::now(), burst: Duration::from_millis(50) }
    }

    /// Waits until `bytes` more may be sent.
    pub async fn consume(&mut self, bytes: u64) {
        let now = Instant::now();
        let start = self.next_free.max(now);
        self.next_free = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        if self.next_free > now + self.burst {
            tokio::time::sleep_until(self.next_free - self.burst).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The clock is tokio's paused virtual clock: the assertion is about pacing arithmetic,
    // not about how fast this machine is.
    #[tokio::test(start_paused = true)]
    async fn sending_a_megabyte_at_100k_per_second_takes_ten_virtual_seconds() {
        let start = Instant::now();
        let mut limiter = BandwidthLimiter::new(100_000);
        for _ in 0..100 {
            limiter.consume(10_000).await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(9_900), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(10_100), "{elapsed:?}");
    }
}

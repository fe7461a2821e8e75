//! The runtime's wall clock, as a dependency: production reads the system time, tests and the
//! simulator set it. Timers and timeouts are tokio's (paused and advanced in tests); this
//! clock answers only "what time is it", for windows such as the echo guard's.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds (`2026-12-01T12:00:00.000Z`):
/// how the store stamps rows and how imsg's history bounds are written.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug {
    fn now_ms(&self) -> u64;
}

/// The system time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    pub fn at(ms: u64) -> ManualClock {
        ManualClock {
            ms: AtomicU64::new(ms),
        }
    }

    pub fn set(&self, ms: u64) {
        self.ms.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: u64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

/// The system time plus an offset that only grows: the simulator's `/wait 61m` moves the
/// gateway an hour ahead (a pairing code expires) without anyone waiting.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicU64,
}

impl OffsetClock {
    pub fn advance(&self, ms: u64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::at(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(3_600_000);
        assert_eq!(c.now_ms(), 3_601_000);
        c.set(5);
        assert_eq!(c.now_ms(), 5);
        assert!(SystemClock.now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn an_offset_clock_runs_ahead_by_what_it_was_told() {
        let c = OffsetClock::default();
        let before = SystemClock.now_ms();
        c.advance(61 * 60_000);
        let ahead = c.now_ms() - before;
        assert!((61 * 60_000..62 * 60_000).contains(&ahead), "{ahead}");
    }
}

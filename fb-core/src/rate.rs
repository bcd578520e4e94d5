//! `--max-rate`: one limit on the bytes per second of a whole run, shared by every transfer
//! (with `--concurrency N` the N transfers together stay under it).
//!
//! The limiter keeps a schedule, not a clock-driven bucket: every byte taken is given its
//! slot on a timeline that advances by `1 / rate` seconds per byte, and a taker waits until
//! its slot, less a small allowance ([`BURST`]). Waking late (a timer's granularity, a busy
//! machine) costs nothing: the timeline runs up to the allowance ahead of the clock, so a
//! late taker still finds its next slot booked after the time it asks. Over any run of T seconds at most
//! `rate × (T + BURST)` bytes pass, and a taker that keeps up gets the full rate.
//! [`Schedule`] is the arithmetic alone, with the time passed in, so it is tested without
//! sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far ahead of the timeline takers may run: the burst after an idle moment, and the
/// slack that absorbs late wake-ups.
pub const BURST: Duration = Duration::from_millis(100);

/// The arithmetic of the limit: when each take may proceed, given the time it is asked.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Bytes per second (at least 1).
    rate: u64,
    /// The end of the last slot handed out, as time since the start of the run.
    booked_until: Duration,
}

impl Schedule {
    /// A schedule for `bytes_per_second` (0 is taken as 1).
    pub fn new(bytes_per_second: u64) -> Schedule {
        Schedule { rate: bytes_per_second.max(1), booked_until: Duration::ZERO }
    }

    /// The limit, in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Book `bytes` asked for at `now` (time since the start of the run); returns how long
    /// the taker waits before it may move them. A timeline left idle saves nothing up: after
    /// a pause, at most [`BURST`] worth moves at once.
    pub fn reserve(&mut self, bytes: u64, now: Duration) -> Duration {
        let start = self.booked_until.max(now);
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.rate);
        let length = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.booked_until = start.saturating_add(length);
        self.booked_until.saturating_sub(now + BURST)
    }
}

/// A rate limit shared by every transfer of a run.
#[derive(Debug)]
pub struct RateLimiter {
    started: Instant,
    schedule: Mutex<Schedule>,
}

impl RateLimiter {
    /// A limiter for `bytes_per_second`, starting now.
    pub fn new(bytes_per_second: u64) -> RateLimiter {
        RateLimiter { started: Instant::now(), schedule: Mutex::new(Schedule::new(bytes_per_second)) }
    }

    /// The limit, in bytes per second.
    pub fn rate(&self) -> u64 {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner()).rate()
    }

    /// Wait until `bytes` more may move.
    pub async fn take(&self, bytes: usize) {
        let wait = {
            let mut schedule = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
            schedule.reserve(bytes as u64, self.started.elapsed())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `takers` transfers against one schedule on a simulated clock: each moves chunks
    /// of `chunk(i)` bytes and wakes `late(i)` after the time it was told to wait (a
    /// scheduler's lateness). Returns the bytes moved by `until`.
    fn simulate(
        rate: u64,
        takers: usize,
        until: Duration,
        chunk: impl Fn(u64) -> u64,
        late: impl Fn(u64) -> Duration,
    ) -> u64 {
        let mut schedule = Schedule::new(rate);
        // Each taker's next moment to ask; the earliest asks first.
        let mut next = vec![Duration::ZERO; takers];
        let (mut moved, mut i) = (0u64, 0u64);
        loop {
            let (who, &now) = next.iter().enumerate().min_by_key(|(_, t)| **t).expect("takers");
            let n = chunk(i);
            let wait = schedule.reserve(n, now);
            let done = now + wait;
            if done > until {
                return moved;
            }
            moved += n;
            next[who] = done + late(i);
            i += 1;
        }
    }

    /// A deterministic spread of values from an index (no rand dependency).
    fn spread(i: u64, modulo: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % modulo
    }

    fn assert_rate(moved: u64, rate: u64, secs: u64, tolerance: f64, what: &str) {
        let achieved = moved as f64 / secs as f64;
        let error = (achieved - rate as f64).abs() / rate as f64;
        println!(
            "{what}: {achieved:.0} B/s for a limit of {rate} B/s ({:+.3}%)",
            (achieved / rate as f64 - 1.0) * 100.0
        );
        assert!(error <= tolerance, "{what}: {achieved:.0} B/s for a limit of {rate} B/s ({:.2}% off)", error * 100.0);
    }

    #[test]
    fn one_transfer_gets_the_rate_within_one_percent() {
        // 4 MB/s, 64 KiB chunks, waking exactly on time and 3 ms late.
        for late_ms in [0, 3] {
            let moved =
                simulate(4_000_000, 1, Duration::from_secs(20), |_| 64 << 10, |_| Duration::from_millis(late_ms));
            assert_rate(moved, 4_000_000, 20, 0.01, &format!("late by {late_ms} ms"));
        }
    }

    #[test]
    fn concurrent_transfers_share_one_total() {
        // 8 transfers at 20 MB/s in total, chunks of 1 B to 256 KiB, each waking 0-9 ms late.
        let moved = simulate(
            20_000_000,
            8,
            Duration::from_secs(20),
            |i| 1 + spread(i, 256 << 10),
            |i| Duration::from_millis(spread(i, 10)),
        );
        assert_rate(moved, 20_000_000, 20, 0.01, "8 transfers");
    }

    #[test]
    fn never_faster_than_the_rate_plus_the_burst() {
        // Takers that never wait longer than told cannot beat rate × (T + BURST) + one chunk,
        // at any moment of the run.
        let rate = 1_000_000;
        for secs in 1..=5 {
            let until = Duration::from_secs(secs);
            let moved = simulate(rate, 4, until, |i| 1 + spread(i, 100_000), |_| Duration::ZERO);
            let ceiling = rate as f64 * (until + BURST).as_secs_f64() + 100_000.0;
            assert!(moved as f64 <= ceiling, "{moved} bytes in {secs} s");
        }
    }

    #[test]
    fn idle_time_is_not_saved_up_beyond_the_burst() {
        let mut s = Schedule::new(1_000_000);
        assert_eq!(s.reserve(100_000, Duration::ZERO), Duration::ZERO, "the first burst moves at once");
        // Ten seconds idle: only BURST worth (100 kB) may move at once, the rest waits.
        let now = Duration::from_secs(10);
        assert_eq!(s.reserve(100_000, now), Duration::ZERO);
        assert_eq!(s.reserve(100_000, now), Duration::from_millis(100));
        assert_eq!(s.reserve(1_000_000, now), Duration::from_millis(1100));
    }

    #[test]
    fn a_chunk_larger_than_a_second_waits_its_length() {
        let mut s = Schedule::new(1000);
        assert_eq!(s.reserve(5000, Duration::ZERO), Duration::from_millis(4900));
        assert_eq!(s.reserve(1000, Duration::from_millis(4900)), Duration::from_millis(1000));
        assert_eq!(Schedule::new(0).rate(), 1);
    }
}

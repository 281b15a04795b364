//! Message budgets kept on the session, not the socket: a resume does not refill them.
//!
//! A [`Budget`] is a token bucket in the GCRA form (one number, the theoretical arrival
//! time of the next allowed message), driven by the caller's clock like the rest of the
//! core.

use matcher::Millis;

/// How fast a budget refills, and how much it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Microseconds between two allowances.
    interval_us: u64,
    /// Allowances usable at once.
    burst: u32,
}

impl Rate {
    /// `n` a second on average (at least 1), `burst` at once.
    pub const fn per_second(n: u32, burst: u32) -> Self {
        let n = if n == 0 { 1 } else { n };
        Self { interval_us: 1_000_000 / n as u64, burst }
    }

    /// One every `secs` seconds on average, `burst` at once.
    pub const fn one_every(secs: u64, burst: u32) -> Self {
        Self { interval_us: secs * 1_000_000, burst }
    }
}

/// A token bucket: full when new.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// When (in microseconds on the caller's scale) the bucket would be full again.
    full_at_us: u64,
}

impl Budget {
    /// The earliest time (ms) at which [`Budget::spend`] succeeds again.
    pub fn next_allowed(&self, rate: Rate, now: Millis) -> Millis {
        let capacity = rate.interval_us.saturating_mul(u64::from(rate.burst.max(1)));
        let at_us = self.full_at_us.saturating_add(rate.interval_us).saturating_sub(capacity);
        at_us.div_ceil(1_000).max(now)
    }

    /// Spends one allowance at `now`; `false` (and nothing spent) when none is left.
    pub fn spend(&mut self, rate: Rate, now: Millis) -> bool {
        let now_us = now.saturating_mul(1_000);
        let interval = rate.interval_us;
        let capacity = interval.saturating_mul(u64::from(rate.burst.max(1)));
        let full_at = self.full_at_us.max(now_us);
        let after = full_at.saturating_add(interval);
        if after - now_us > capacity {
            return false;
        }
        self.full_at_us = after;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let rate = Rate::per_second(50, 100);
        let mut b = Budget::default();
        assert_eq!((0..150).filter(|_| b.spend(rate, 1_000)).count(), 100, "the burst, no more");
        // 20 ms later one more allowance has come back.
        assert!(b.spend(rate, 1_020));
        assert!(!b.spend(rate, 1_020));
        // After a quiet 2 s the whole burst is back, and no more.
        assert_eq!((0..150).filter(|_| b.spend(rate, 3_100)).count(), 100);
    }

    #[test]
    fn slow_rates_refill_over_seconds() {
        let rate = Rate::one_every(10, 3);
        let mut b = Budget::default();
        assert_eq!((0..10).filter(|_| b.spend(rate, 0)).count(), 3);
        assert_eq!(b.next_allowed(rate, 5), 10_000);
        assert!(!b.spend(rate, 9_999));
        assert!(b.spend(rate, 10_000));
        assert!(!b.spend(rate, 10_000));
    }
}

//! Wall-clock time in nanoseconds since the Unix epoch, as spans record it.
//!
//! Every span reads the clock twice, and the system clock costs about 30 ns a reading here (the vDSO call and
//! the conversion of its `timespec`): a fifth of a `#[trace]` span. On x86-64 CPUs with an invariant
//! time-stamp counter the time is read from the counter instead and converted with a rate measured against
//! the system clock:
//!
//! ```text
//!   first reading ──20 ms──▶ calibrated ──2^30 ticks──▶ resync ──2^30 ticks──▶ resync …
//!   (system clock)           rate = Δns/Δticks          error < 1 ms: slew the rate to absorb it over the
//!                                                       next period (no step, time never goes back);
//!                                                       error ≥ 1 ms (the clock was set): step to it
//! ```
//!
//! Until calibration every reading comes from the system clock. The conversion state is published under a
//! sequence lock; whichever reader first finds the period over does the resync. Elsewhere, or when the
//! counter misbehaves (goes backwards), the system clock is read every time.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time.
#[inline]
pub(crate) fn now_ns() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        counter::now_ns()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        system_ns()
    }
}

/// The current time from the system clock.
pub(crate) fn system_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

#[cfg(target_arch = "x86_64")]
mod counter {
    use std::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};

    use super::system_ns;

    /// How long the first rate measurement runs.
    const CALIBRATION_NS: u64 = 20_000_000;
    /// Ticks between two comparisons with the system clock (0.25–0.5 s at 2–4 GHz).
    const RESYNC_TICKS: u64 = 1 << 30;
    /// An error at least this large is stepped over instead of slewed away.
    const STEP_NS: i64 = 1_000_000;
    /// A paired reading of both clocks longer than this (several microseconds) was interrupted.
    const PAIR_TICKS: u64 = 20_000;
    /// Rates are nanoseconds per tick in 32.32 fixed point.
    const RATE_SHIFT: u32 = 32;

    /// Even: the fields below are consistent (0: not calibrated yet). Odd: a writer is changing them.
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    /// The conversion: `ns = base_ns + (ticks - base_ticks) * rate >> 32`.
    static BASE_TICKS: AtomicU64 = AtomicU64::new(0);
    static BASE_NS: AtomicU64 = AtomicU64::new(0);
    static RATE: AtomicU64 = AtomicU64::new(0);
    /// The system clock's time at `BASE_TICKS`, to measure the rate from (written under the lock only); it
    /// differs from `BASE_NS` while an error is being slewed away. Before calibration, `BASE_TICKS` and this
    /// hold the first reading of both clocks.
    static REFERENCE_NS: AtomicU64 = AtomicU64::new(0);

    const UNKNOWN: u8 = 0;
    const UNUSABLE: u8 = 1;
    const USABLE: u8 = 2;
    static COUNTER: AtomicU8 = AtomicU8::new(UNKNOWN);

    #[inline]
    fn ticks() -> u64 {
        // SAFETY: RDTSC exists on every x86-64 CPU and only reads a register; it has no preconditions.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }

    /// The counter and the system clock read together: the counter at the middle of the system clock's
    /// reading. `None` when a reading took too long (the thread was preempted) three times running.
    fn paired_reading() -> Option<(u64, u64)> {
        (0..3).find_map(|_| {
            let before = ticks();
            let now = system_ns();
            let after = ticks();
            let took = after.checked_sub(before)?;
            (took < PAIR_TICKS).then_some((before + took / 2, now))
        })
    }

    /// Whether the CPU says its counter runs at a constant rate in every power state (CPUID
    /// 0x8000_0007, EDX bit 8). Such counters are kept in step across cores by the firmware and the kernel;
    /// a counter seen going backwards is given up on at the next resync.
    fn invariant_counter() -> bool {
        let highest = core::arch::x86_64::__cpuid(0x8000_0000).eax;
        highest >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
    }

    #[inline]
    pub(super) fn now_ns() -> u64 {
        let ticks = ticks();
        let sequence = SEQUENCE.load(Ordering::Acquire);
        if sequence == 0 || sequence & 1 == 1 {
            return uncalibrated_or_busy(sequence);
        }
        let base_ticks = BASE_TICKS.load(Ordering::Relaxed);
        let base_ns = BASE_NS.load(Ordering::Relaxed);
        let rate = RATE.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if SEQUENCE.load(Ordering::Relaxed) != sequence {
            return system_ns();
        }
        // Another thread may have moved the base past this reading: that is at most nanoseconds ago.
        let elapsed = ticks.saturating_sub(base_ticks);
        if elapsed >= RESYNC_TICKS {
            return resync(ticks, sequence);
        }
        base_ns + scale(elapsed, rate)
    }

    #[inline]
    fn scale(ticks: u64, rate: u64) -> u64 {
        u64::try_from((u128::from(ticks) * u128::from(rate)) >> RATE_SHIFT).unwrap_or(u64::MAX)
    }

    /// Before calibration, or while another thread publishes: the system clock. The first readings start
    /// and finish the calibration.
    #[cold]
    fn uncalibrated_or_busy(sequence: u64) -> u64 {
        let now = system_ns();
        if sequence != 0 {
            return now;
        }
        let usable = match COUNTER.load(Ordering::Relaxed) {
            UNKNOWN => {
                let usable = invariant_counter();
                COUNTER.store(if usable { USABLE } else { UNUSABLE }, Ordering::Relaxed);
                usable
            }
            state => state == USABLE,
        };
        if !usable
            || SEQUENCE
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return now;
        }
        let Some((ticks, now)) = paired_reading() else {
            SEQUENCE.store(0, Ordering::Release);
            return now;
        };
        let reference_ns = REFERENCE_NS.load(Ordering::Relaxed);
        let reference_ticks = BASE_TICKS.load(Ordering::Relaxed);
        let published = if reference_ns == 0 || ticks <= reference_ticks {
            BASE_TICKS.store(ticks, Ordering::Relaxed);
            REFERENCE_NS.store(now, Ordering::Relaxed);
            false
        } else if now.saturating_sub(reference_ns) >= CALIBRATION_NS {
            match measured_rate(ticks, now) {
                Some(rate) => {
                    publish(ticks, now, rate, now);
                    true
                }
                None => false,
            }
        } else {
            false
        };
        SEQUENCE.store(if published { 2 } else { 0 }, Ordering::Release);
        now
    }

    /// Nanoseconds per tick since the reference reading, if the counter moved forward.
    fn measured_rate(ticks: u64, now: u64) -> Option<u64> {
        let ticks = ticks.checked_sub(BASE_TICKS.load(Ordering::Relaxed))?;
        let ns = now.checked_sub(REFERENCE_NS.load(Ordering::Relaxed))?;
        if ticks == 0 {
            return None;
        }
        let rate = (u128::from(ns) << RATE_SHIFT) / u128::from(ticks);
        u64::try_from(rate).ok().filter(|&rate| rate > 0)
    }

    fn publish(base_ticks: u64, base_ns: u64, rate: u64, reference_ns: u64) {
        BASE_TICKS.store(base_ticks, Ordering::Relaxed);
        BASE_NS.store(base_ns, Ordering::Relaxed);
        RATE.store(rate, Ordering::Relaxed);
        REFERENCE_NS.store(reference_ns, Ordering::Relaxed);
    }

    /// Compares the counter's time with the system clock and starts a new period; a reader that finds
    /// another one resyncing already goes on with the current conversion.
    #[cold]
    fn resync(ticks: u64, sequence: u64) -> u64 {
        let base_ticks = BASE_TICKS.load(Ordering::Relaxed);
        let base_ns = BASE_NS.load(Ordering::Relaxed);
        let rate = RATE.load(Ordering::Relaxed);
        let predicted = base_ns + scale(ticks.saturating_sub(base_ticks), rate);
        if SEQUENCE
            .compare_exchange(sequence, sequence + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return predicted;
        }
        fence(Ordering::Release);
        let Some((ticks, now)) = paired_reading() else {
            SEQUENCE.store(sequence, Ordering::Release);
            return predicted;
        };
        let predicted = base_ns + scale(ticks.saturating_sub(base_ticks), rate);
        let Some(measured) = measured_rate(ticks, now) else {
            // The counter went backwards: it cannot be trusted on this machine.
            COUNTER.store(UNUSABLE, Ordering::Relaxed);
            SEQUENCE.store(0, Ordering::Release);
            return now;
        };
        let error = i64::try_from(i128::from(now) - i128::from(predicted)).unwrap_or(i64::MAX);
        let result = if error.abs() >= STEP_NS {
            publish(ticks, now, measured, now);
            now
        } else {
            // Spread the error over the next period: the rate changes, the time does not jump.
            let correction = (i128::from(error) << RATE_SHIFT) / i128::from(RESYNC_TICKS);
            let slewed =
                u64::try_from((i128::from(measured) + correction).max(1)).unwrap_or(measured);
            publish(ticks, predicted, slewed, now);
            predicted
        };
        SEQUENCE.store(sequence + 2, Ordering::Release);
        result
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn counter_time_follows_the_system_clock() {
            if !invariant_counter() {
                return;
            }
            let started = system_ns();
            // Calibrate, then run across several resync periods, comparing with the system clock.
            let mut worst = 0i64;
            let mut last = 0u64;
            while system_ns() - started < 1_500_000_000 {
                let before = system_ns();
                let counter = now_ns();
                let after = system_ns();
                assert!(counter >= last, "time went back: {counter} < {last}");
                last = counter;
                if SEQUENCE.load(Ordering::Relaxed) >= 2 && system_ns() - started > 100_000_000 {
                    let off = if counter < before {
                        i64::try_from(before - counter).unwrap()
                    } else if counter > after {
                        i64::try_from(counter - after).unwrap()
                    } else {
                        0
                    };
                    worst = worst.max(off);
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            assert!(SEQUENCE.load(Ordering::Relaxed) >= 4, "never resynced");
            assert!(
                worst < 500_000,
                "the counter's time was {worst} ns off the system clock"
            );
        }
    }
}

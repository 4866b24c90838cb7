//! Random trace and span ids from a per-thread generator: no lock, no syscall after the first call.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use mlflow_tracing_core::{SpanId, TraceId};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(crate::clock::now_ns().into());
    hasher.finish()
}

/// wyrand: a fast generator with good statistical quality; ids need uniqueness, not secrecy.
fn next_u64() -> u64 {
    STATE
        .try_with(|state| {
            let next = state.get().wrapping_add(0xa076_1d64_78bd_642f);
            state.set(next);
            let product = u128::from(next) * u128::from(next ^ 0xe703_7ed1_a0b4_28db);
            ((product >> 64) as u64) ^ (product as u64)
        })
        .unwrap_or_else(|_| seed())
}

pub(crate) fn new_span_id() -> SpanId {
    loop {
        let id = SpanId(next_u64().to_be_bytes());
        if id.is_valid() {
            return id;
        }
    }
}

pub(crate) fn new_trace_id() -> TraceId {
    loop {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&next_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&next_u64().to_be_bytes());
        let id = TraceId(bytes);
        if id.is_valid() {
            return id;
        }
    }
}

/// OpenTelemetry's ratio sampler: keep the trace when the low 63 bits of its id fall below `ratio * 2^63`.
pub(crate) fn is_sampled(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let low = u64::from_be_bytes(trace_id.0[8..].try_into().unwrap_or_default()) >> 1;
    (low as f64) < ratio * (1_u64 << 63) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_valid() {
        let spans: HashSet<_> = (0..10_000).map(|_| new_span_id()).collect();
        assert_eq!(spans.len(), 10_000);
        assert!(new_trace_id().is_valid());
    }

    #[test]
    fn sampling_keeps_about_the_ratio() {
        let kept = (0..20_000)
            .filter(|_| is_sampled(new_trace_id(), 0.25))
            .count();
        assert!((4_000..6_000).contains(&kept), "{kept}");
        assert!((0..100).all(|_| !is_sampled(new_trace_id(), 0.0)));
    }
}

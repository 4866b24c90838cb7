//! Wall-clock time in nanoseconds since the Unix epoch, as spans record it.

use std::time::{SystemTime, UNIX_EPOCH};

#[inline]
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

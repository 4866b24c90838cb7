//! Run-time settings, read from the environment once and changeable at run time.
//!
//! They live in atomics because the hot path reads them on every span: a relaxed load costs nothing next to
//! a lock, and tracing disabled must cost a few nanoseconds.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Default limit on one recorded payload (inputs, outputs, one attribute): 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Default number of finished traces kept in process for [`crate::get_trace`] (MLflow's buffer size).
pub const DEFAULT_FINISHED_BUFFER_SIZE: usize = 1000;
/// Default capacity of the export queue, in traces.
pub const DEFAULT_QUEUE_CAPACITY: usize = 2048;
/// Default cap on the spans one trace keeps; later spans are dropped and counted.
pub const DEFAULT_MAX_SPANS_PER_TRACE: usize = 1_000_000;

static ENABLED: AtomicBool = AtomicBool::new(true);
static SAMPLING_RATIO_BITS: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000); // 1.0_f64
static MAX_PAYLOAD_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_PAYLOAD_BYTES);
static FINISHED_BUFFER_SIZE: AtomicUsize = AtomicUsize::new(DEFAULT_FINISHED_BUFFER_SIZE);
static MAX_SPANS_PER_TRACE: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_SPANS_PER_TRACE);
/// 0 means no timeout.
static TRACE_TIMEOUT_MILLIS: AtomicU64 = AtomicU64::new(0);
static ENVIRONMENT_READ: OnceLock<()> = OnceLock::new();

/// Reads the `MLFLOW_*` variables once: `MLFLOW_TRACE_SAMPLING_RATIO`, `MLFLOW_TRACE_TIMEOUT_SECONDS`,
/// `MLFLOW_TRACE_MAX_PAYLOAD_BYTES`, `MLFLOW_TRACE_BUFFER_MAX_SIZE`, `MLFLOW_TRACING_ENABLED`. Called when the first trace starts.
pub(crate) fn read_environment_once() {
    ENVIRONMENT_READ.get_or_init(|| {
        let variable = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        if let Some(ratio) =
            variable("MLFLOW_TRACE_SAMPLING_RATIO").and_then(|text| text.trim().parse().ok())
        {
            set_sampling_ratio(ratio);
        }
        if let Some(seconds) = variable("MLFLOW_TRACE_TIMEOUT_SECONDS")
            .and_then(|text| text.trim().parse::<f64>().ok())
        {
            set_trace_timeout(Duration::try_from_secs_f64(seconds).ok());
        }
        if let Some(bytes) =
            variable("MLFLOW_TRACE_MAX_PAYLOAD_BYTES").and_then(|text| text.trim().parse().ok())
        {
            set_max_payload_bytes(bytes);
        }
        if let Some(traces) =
            variable("MLFLOW_TRACE_BUFFER_MAX_SIZE").and_then(|text| text.trim().parse().ok())
        {
            set_finished_buffer_size(traces);
        }
        if let Some(enabled) = variable("MLFLOW_TRACING_ENABLED") {
            ENABLED.store(
                !matches!(
                    enabled.trim().to_ascii_lowercase().as_str(),
                    "false" | "0" | "no"
                ),
                Ordering::Relaxed,
            );
        }
    });
}

/// Turns tracing on (the default). Spans started while it is off are no-ops.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Turns tracing off: every span API becomes a no-op costing a few nanoseconds.
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Whether tracing is on.
#[inline]
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Keeps this fraction of new traces (head sampling on the trace id, like OpenTelemetry's ratio sampler);
/// clamped to `0.0..=1.0`.
pub fn set_sampling_ratio(ratio: f64) {
    let clamped = if ratio.is_nan() {
        1.0
    } else {
        ratio.clamp(0.0, 1.0)
    };
    SAMPLING_RATIO_BITS.store(clamped.to_bits(), Ordering::Relaxed);
}

/// The sampling ratio in force.
pub fn sampling_ratio() -> f64 {
    f64::from_bits(SAMPLING_RATIO_BITS.load(Ordering::Relaxed))
}

/// Limits each recorded payload (inputs, outputs, one attribute) to this many bytes of JSON.
pub fn set_max_payload_bytes(bytes: usize) {
    MAX_PAYLOAD_BYTES.store(bytes.max(16), Ordering::Relaxed);
}

pub(crate) fn max_payload_bytes() -> usize {
    MAX_PAYLOAD_BYTES.load(Ordering::Relaxed)
}

/// Keeps this many finished traces in process for [`crate::get_trace`] (`MLFLOW_TRACE_BUFFER_MAX_SIZE`).
pub fn set_finished_buffer_size(traces: usize) {
    FINISHED_BUFFER_SIZE.store(traces, Ordering::Relaxed);
}

pub(crate) fn finished_buffer_size() -> usize {
    FINISHED_BUFFER_SIZE.load(Ordering::Relaxed)
}

/// Caps the spans kept per trace; spans past the cap are dropped and counted.
pub fn set_max_spans_per_trace(spans: usize) {
    MAX_SPANS_PER_TRACE.store(spans.max(1), Ordering::Relaxed);
}

pub(crate) fn max_spans_per_trace() -> usize {
    MAX_SPANS_PER_TRACE.load(Ordering::Relaxed)
}

/// Finishes traces still open after this long, with state ERROR (MLflow's `MLFLOW_TRACE_TIMEOUT_SECONDS`).
/// `None` (the default) never times out.
pub fn set_trace_timeout(timeout: Option<Duration>) {
    let millis = timeout.map_or(0, |timeout| {
        u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    });
    TRACE_TIMEOUT_MILLIS.store(millis, Ordering::Relaxed);
}

pub(crate) fn trace_timeout() -> Option<Duration> {
    match TRACE_TIMEOUT_MILLIS.load(Ordering::Relaxed) {
        0 => None,
        millis => Some(Duration::from_millis(millis)),
    }
}

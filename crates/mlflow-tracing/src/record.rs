//! Turning arguments, return values and attribute values into MLflow's JSON text.
//!
//! A value is recorded as JSON through `serde::Serialize` when its type implements it, else as the JSON string
//! of its `Debug` text, else as a `"<type name>"` placeholder: a missing trait never fails to compile. The
//! choice is made at compile time by autoref specialization: the macro calls `(&&&&Arg(&value)).__record(..)`
//! and method lookup picks the first of [`ViaFloat`], [`ViaSerialize`], [`ViaDebug`], [`ViaTypeName`] whose bound holds.
//!
//! Payloads larger than [`crate::Config::max_payload_bytes`] are cut: the value becomes a JSON string holding
//! the start of the text, a visible marker and the original size, so a 10 MB argument costs at most the limit.

use std::fmt::{self, Debug, Write as _};
use std::panic::{self, AssertUnwindSafe};

use serde::Serialize;

use crate::arena::{self, PayloadText, ScratchRange};
use crate::config;

/// Wraps a reference for autoref specialization; see the module docs.
#[derive(Debug)]
pub struct Arg<'a, T: ?Sized>(pub &'a T);

/// Top priority, for a bare `f32`/`f64`: its JSON number, or its name (`"NaN"`, `"inf"`) when not finite.
pub trait ViaFloat {
    fn __record(&self, out: &mut Payload<'_>);
}

/// Next: the value's own JSON.
pub trait ViaSerialize {
    fn __record(&self, out: &mut Payload<'_>);
}

/// Second: the JSON string of the `Debug` text.
pub trait ViaDebug {
    fn __record(&self, out: &mut Payload<'_>);
}

/// Last: the type's name.
pub trait ViaTypeName {
    fn __record(&self, out: &mut Payload<'_>);
}

macro_rules! record_float {
    ($($float:ty),*) => {$(
        impl ViaFloat for &&&Arg<'_, $float> {
            fn __record(&self, out: &mut Payload<'_>) {
                if self.0.is_finite() {
                    out.write_serialize(self.0);
                } else {
                    out.write_json_string(&self.0.to_string());
                }
            }
        }
    )*};
}
record_float!(f32, f64);

impl<T: Serialize + ?Sized> ViaSerialize for &&Arg<'_, T> {
    fn __record(&self, out: &mut Payload<'_>) {
        out.write_serialize(self.0);
    }
}

impl<T: Debug + ?Sized> ViaDebug for &Arg<'_, T> {
    fn __record(&self, out: &mut Payload<'_>) {
        out.write_debug(self.0);
    }
}

impl<T: ?Sized> ViaTypeName for Arg<'_, T> {
    fn __record(&self, out: &mut Payload<'_>) {
        out.write_type_name(std::any::type_name::<T>());
    }
}

/// Wraps a return value for autoref specialization: `(&&&&&OutArg(&value)).__record_output(..)` picks a bare
/// float, then the `Ok` value of a `Result` whose value is `Serialize`, then `Serialize`, `Debug`, the type
/// name. (The `Err` side of a `Result` is recorded by [`crate::exception::ErrProbe`].)
#[derive(Debug)]
pub struct OutArg<'a, T: ?Sized>(pub &'a T);

pub trait OutFloat {
    fn __record_output(&self, out: &mut Payload<'_>);
}
pub trait OutOk {
    fn __record_output(&self, out: &mut Payload<'_>);
}
pub trait OutSerialize {
    fn __record_output(&self, out: &mut Payload<'_>);
}
pub trait OutDebug {
    fn __record_output(&self, out: &mut Payload<'_>);
}
pub trait OutTypeName {
    fn __record_output(&self, out: &mut Payload<'_>);
}

macro_rules! output_float {
    ($($float:ty),*) => {$(
        impl OutFloat for &&&&OutArg<'_, $float> {
            fn __record_output(&self, out: &mut Payload<'_>) {
                (&&&&Arg(self.0)).__record(out);
            }
        }
    )*};
}
output_float!(f32, f64);

impl<T: Serialize, E> OutOk for &&&OutArg<'_, Result<T, E>> {
    fn __record_output(&self, out: &mut Payload<'_>) {
        match self.0 {
            Ok(value) => out.write_serialize(value),
            Err(_) => out.write_json_string("<error>"),
        }
    }
}

impl<T: Serialize + ?Sized> OutSerialize for &&OutArg<'_, T> {
    fn __record_output(&self, out: &mut Payload<'_>) {
        out.write_serialize(self.0);
    }
}

impl<T: Debug + ?Sized> OutDebug for &OutArg<'_, T> {
    fn __record_output(&self, out: &mut Payload<'_>) {
        out.write_debug(self.0);
    }
}

impl<T: ?Sized> OutTypeName for OutArg<'_, T> {
    fn __record_output(&self, out: &mut Payload<'_>) {
        out.write_type_name(std::any::type_name::<T>());
    }
}

/// A JSON text being built, with the size limit applied: at the end of the thread's scratch buffer,
/// written where that buffer lives (see the `arena` module), or in a buffer of its own when the scratch is
/// busy (a value whose `Serialize` records a payload too).
#[derive(Debug)]
pub struct Payload<'a> {
    bytes: &'a mut Vec<u8>,
    /// Where this payload starts in `bytes`.
    start: usize,
    /// Set by `finish`; a payload dropped unfinished (a panicking `Serialize`) cuts `bytes` back to `start`.
    finished: bool,
    limit: usize,
    /// Bytes written past the limit and not kept.
    dropped: usize,
}

#[derive(Debug, Clone, Copy)]
enum OverflowSize {
    Exact(usize),
    AtLeast(usize),
}

/// What a value whose `Serialize` refused is recorded as.
const UNSERIALIZABLE: &str = "<unserializable value>";

/// `Debug` text is a fallback for humans: it is kept to this size at most, whatever the payload limit.
const MAX_DEBUG_BYTES: usize = 16 * 1024;

/// `Debug` output is counted up to this multiple of its limit, then abandoned: an endless or self-referencing
/// `Debug` implementation must neither run forever nor recurse until the stack overflows.
const DEBUG_COUNT_FACTOR: usize = 4;

impl Payload<'_> {
    /// Records what `write` writes as one payload, with the configured limit: in the thread's scratch
    /// buffer, borrowed for the whole of `write`, or in a buffer of its own when the scratch is busy.
    #[inline]
    pub fn record(mut write: impl FnMut(&mut Payload<'_>)) -> PayloadText {
        let limit = config::max_payload_bytes();
        let in_scratch = arena::with_scratch(|scratch| {
            let start = scratch.len();
            let mut payload = Payload::over(scratch, start, limit);
            write(&mut payload);
            payload.finish_range()
        });
        match in_scratch {
            Some(range) => ScratchRange::payload(range),
            None => {
                let mut bytes = Vec::new();
                let mut payload = Payload::over(&mut bytes, 0, limit);
                write(&mut payload);
                PayloadText::Owned(payload.finish_owned())
            }
        }
    }
}

impl<'a> Payload<'a> {
    /// A payload written at the end of `bytes`, which holds `start` bytes already.
    fn over(bytes: &'a mut Vec<u8>, start: usize, limit: usize) -> Self {
        Self {
            bytes,
            start,
            finished: false,
            limit,
            dropped: 0,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// Appends `chunk`, or as much of it as the limit leaves room for. The usual case, where all of it
    /// fits, appends a length known at the call site (a key, a bracket), which compiles to a few stores.
    #[inline]
    fn push_bytes(&mut self, chunk: &[u8]) {
        if self.len() + chunk.len() <= self.limit {
            self.bytes.extend_from_slice(chunk);
        } else {
            self.push_cut(chunk);
        }
    }

    #[cold]
    fn push_cut(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.len());
        let kept = chunk.len().min(room);
        self.bytes.extend_from_slice(&chunk[..kept]);
        self.dropped += chunk.len() - kept;
    }

    /// Starts the inputs object; follow with [`Payload::key`] and a value per argument, then
    /// [`Payload::end_object`].
    #[inline]
    pub fn begin_object(&mut self) {
        self.push_bytes(b"{");
    }

    /// Writes an object key, already JSON-escaped with quotes and colon (`"a":`), with the comma before it
    /// when needed.
    #[inline]
    pub fn key(&mut self, quoted_key_and_colon: &str) {
        if self.len() + self.dropped > 1 {
            self.push_bytes(b",");
        }
        self.push_bytes(quoted_key_and_colon.as_bytes());
    }

    /// Closes the inputs object.
    #[inline]
    pub fn end_object(&mut self) {
        self.push_bytes(b"}");
    }

    #[inline]
    /// Serializes straight into the buffer (a writer that checks the limit on every write costs more
    /// than the serialization), then cuts what went past the limit. A value far over the limit is thus
    /// held whole for a moment, and only its first `limit` bytes are kept.
    fn write_serialize<T: Serialize + ?Sized>(&mut self, value: &T) {
        let before = self.bytes.len();
        let written = crate::json::write_value(self.bytes, value);
        self.settle_serialized(before, written);
    }

    /// Applies the limit to a value serialized from `before` on, or, when its `Serialize` refused (for
    /// example a map with non-string keys), replaces what it wrote with a marker.
    #[inline]
    fn settle_serialized(&mut self, before: usize, written: Result<(), crate::json::JsonError>) {
        if written.is_err() {
            self.bytes.truncate(before);
            self.write_json_string(UNSERIALIZABLE);
        } else if self.len() > self.limit {
            self.cut_to_limit();
        }
    }

    /// Moves whatever is past the limit into the dropped count.
    fn cut_to_limit(&mut self) {
        let length = self.len();
        if length > self.limit {
            self.dropped += length - self.limit;
            self.bytes.truncate(self.start + self.limit);
        }
    }

    fn write_debug<T: Debug + ?Sized>(&mut self, value: &T) {
        // Three quarters of the payload limit leaves room for the marker and for escaping.
        let limit = (self.limit / 4 * 3).min(MAX_DEBUG_BYTES);
        let mut text = LimitedString {
            text: String::new(),
            limit,
            counted: 0,
        };
        let complete = write!(text, "{value:?}").is_ok();
        if text.counted > text.text.len() {
            let size = if complete {
                OverflowSize::Exact(text.counted)
            } else {
                OverflowSize::AtLeast(text.counted)
            };
            let marked = truncated_text(&text.text, limit, size);
            self.write_json_string(&marked);
        } else {
            self.write_json_string(&text.text);
        }
    }

    fn write_type_name(&mut self, type_name: &str) {
        self.write_json_string(&format!("<{type_name}>"));
    }

    fn write_json_string(&mut self, text: &str) {
        crate::json::write_str(self.bytes, text);
        self.cut_to_limit();
    }

    /// The finished text of a payload written in a buffer of its own (it takes the buffer); one over the
    /// limit becomes a JSON string with a truncation marker.
    fn finish_owned(&mut self) -> String {
        self.finish_in_place();
        String::from_utf8(std::mem::take(self.bytes))
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }

    /// The finished payload's range, for one written in the scratch, marked the same way. By reference:
    /// moving the payload would copy its fields with wide loads right after they were stored.
    #[inline(always)]
    fn finish_range(&mut self) -> Option<ScratchRange> {
        self.finish_in_place();
        ScratchRange::new(self.start, self.bytes.len())
    }

    #[inline(always)]
    fn finish_in_place(&mut self) {
        if self.dropped > 0 {
            self.mark_truncated();
        }
        self.finished = true;
    }

    /// Replaces what was kept of a payload over the limit by a JSON string with the marker.
    #[cold]
    fn mark_truncated(&mut self) {
        let kept = String::from_utf8_lossy(&self.bytes[self.start..]).into_owned();
        let size = OverflowSize::Exact(kept.len() + self.dropped);
        let marked = serde_json::Value::String(truncated_text(&kept, self.limit, size)).to_string();
        self.bytes.truncate(self.start);
        self.bytes.extend_from_slice(marked.as_bytes());
    }
}

impl Drop for Payload<'_> {
    fn drop(&mut self) {
        // A payload abandoned half-written (a panicking `Serialize`) leaves nothing behind.
        if !self.finished {
            self.bytes.truncate(self.start);
        }
    }
}

/// The first `limit` bytes of `text`, a visible marker and the original size.
fn truncated_text(text: &str, limit: usize, size: OverflowSize) -> String {
    let mut end = limit.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let size_note = match size {
        OverflowSize::Exact(bytes) => format!("{bytes} bytes"),
        OverflowSize::AtLeast(bytes) => format!("more than {bytes} bytes"),
    };
    format!(
        "{}...[truncated by mlflow-tracing: original size {size_note}]",
        &text[..end]
    )
}

/// Encodes one value with the configured limit into a string of its own.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> String {
    let mut bytes = Vec::new();
    let mut payload = Payload::over(&mut bytes, 0, config::max_payload_bytes());
    payload.write_serialize(value);
    payload.finish_owned()
}

/// Encodes one value with the configured limit into the thread's scratch buffer, for a span on this
/// thread's stack; into a string of its own when the scratch is busy.
///
/// This is most of the cost of `set_inputs` and `set_outputs`, so the usual case (the value serializes and
/// fits the limit) is written straight onto the scratch and taken as it is, without a [`Payload`]. A
/// panicking `Serialize` leaves the scratch cut back to where it was before the panic goes on.
#[inline]
pub(crate) fn encode_in_scratch<T: Serialize + ?Sized>(value: &T) -> PayloadText {
    let limit = config::max_payload_bytes();
    // Kept out of the closure's result, which then fits in registers (see `ScratchRange`).
    let mut panicked = None;
    let written = arena::with_scratch(|scratch| {
        let start = scratch.len();
        let written = panic::catch_unwind(AssertUnwindSafe(|| {
            crate::json::write_value(scratch, value)
        }));
        match written {
            Ok(Ok(())) if scratch.len() - start <= limit => ScratchRange::new(start, scratch.len()),
            Ok(written) => {
                let mut payload = Payload::over(scratch, start, limit);
                payload.settle_serialized(start, written);
                payload.finish_range()
            }
            Err(panic) => {
                scratch.truncate(start);
                panicked = Some(panic);
                None
            }
        }
    });
    if let Some(panic) = panicked {
        panic::resume_unwind(panic);
    }
    match written {
        Some(range) => ScratchRange::payload(range),
        None => PayloadText::Owned(encode(value)),
    }
}

/// Keeps the first `limit` bytes of `Debug` output, counts up to [`DEBUG_COUNT_FACTOR`] times more, then
/// stops the formatter.
struct LimitedString {
    text: String,
    limit: usize,
    counted: usize,
}

impl fmt::Write for LimitedString {
    fn write_str(&mut self, chunk: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.text.len());
        if room > 0 {
            let mut end = chunk.len().min(room);
            while !chunk.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&chunk[..end]);
        }
        self.counted += chunk.len();
        if self.counted > self.limit.saturating_mul(DEBUG_COUNT_FACTOR) {
            return Err(fmt::Error);
        }
        Ok(())
    }
}

#[cfg(test)]
// The extra borrows are the autoref specialization under test.
#[allow(clippy::needless_borrow)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn record_one<F: FnOnce(&mut Payload<'_>)>(limit: usize, write: F) -> Value {
        let mut bytes = Vec::new();
        let mut payload = Payload::over(&mut bytes, 0, limit);
        write(&mut payload);
        serde_json::from_str(&payload.finish_owned()).expect("always valid JSON")
    }

    #[derive(Debug)]
    struct OnlyDebug {
        #[allow(dead_code)]
        field: u8,
    }

    struct Opaque;

    #[test]
    fn serialize_wins_over_debug_and_debug_over_the_type_name() {
        let numbers = vec![1, 2];
        assert_eq!(
            record_one(1024, |out| (&&&&Arg(&numbers)).__record(out)),
            json!([1, 2])
        );
        let debug_only = OnlyDebug { field: 3 };
        assert_eq!(
            record_one(1024, |out| (&&&&Arg(&debug_only)).__record(out)),
            json!("OnlyDebug { field: 3 }")
        );
        let opaque = Opaque;
        let recorded = record_one(1024, |out| (&&&&Arg(&opaque)).__record(out));
        assert!(
            recorded.as_str().unwrap().ends_with("Opaque>"),
            "{recorded}"
        );
    }

    #[test]
    fn inputs_form_an_object_keyed_by_parameter_name() {
        let recorded = record_one(1024, |out| {
            out.begin_object();
            out.key("\"a\":");
            (&&&&Arg(&1_i64)).__record(out);
            out.key("\"b\":");
            (&&&&Arg(&"two")).__record(out);
            out.end_object();
        });
        assert_eq!(recorded, json!({"a": 1, "b": "two"}));
    }

    #[test]
    fn oversized_values_are_cut_with_a_marker_and_the_original_size() {
        let big = "x".repeat(10 * 1024 * 1024);
        let recorded = record_one(1000, |out| (&&&&Arg(&big)).__record(out));
        let text = recorded.as_str().unwrap();
        assert!(text.len() < 1200, "{}", text.len());
        assert!(
            text.contains("[truncated by mlflow-tracing: original size 10485762 bytes]"),
            "{text}"
        );
    }

    #[test]
    fn endless_debug_output_is_abandoned() {
        struct Endless;
        impl Debug for Endless {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                loop {
                    f.write_str("again ")?;
                }
            }
        }
        let recorded = record_one(1000, |out| (&&&&Arg(&Endless)).__record(out));
        let text = recorded.as_str().unwrap();
        let size: usize = text
            .split("more than ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((3000..3100).contains(&size), "{text}");
    }

    #[test]
    fn non_finite_floats_and_non_json_strings_stay_valid_json() {
        let recorded = record_one(1024, |out| {
            (&&&&Arg(&vec![f64::NAN, 1.5, f64::INFINITY])).__record(out)
        });
        assert_eq!(recorded, json!([null, 1.5, null]));
        assert_eq!(
            record_one(1024, |out| (&&&&Arg(&f64::NAN)).__record(out)),
            json!("NaN")
        );
        assert_eq!(
            record_one(1024, |out| (&&&&Arg(&f32::NEG_INFINITY)).__record(out)),
            json!("-inf")
        );
        assert_eq!(
            record_one(1024, |out| (&&&&Arg(&2.5_f64)).__record(out)),
            json!(2.5)
        );
        let not_json = "{not json";
        assert_eq!(
            record_one(1024, |out| (&&&&Arg(&not_json)).__record(out)),
            json!("{not json")
        );
    }

    #[test]
    fn outputs_record_the_ok_value_of_a_result() {
        let ok: Result<Vec<i32>, String> = Ok(vec![1]);
        assert_eq!(
            record_one(1024, |out| (&&&&&OutArg(&ok)).__record_output(out)),
            json!([1])
        );
        assert_eq!(
            record_one(1024, |out| (&&&&&OutArg(&"text")).__record_output(out)),
            json!("text")
        );
        assert_eq!(
            record_one(1024, |out| (&&&&&OutArg(&f64::NAN)).__record_output(out)),
            json!("NaN")
        );
        let debug_only = OnlyDebug { field: 1 };
        assert_eq!(
            record_one(1024, |out| (&&&&&OutArg(&debug_only)).__record_output(out)),
            json!("OnlyDebug { field: 1 }")
        );
    }

    #[test]
    fn maps_serde_cannot_encode_fall_back_to_a_marker() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1_u8], 2);
        assert_eq!(
            record_one(1024, |out| (&&&&Arg(&map)).__record(out)),
            json!("<unserializable value>")
        );
    }
}

//! Where payload JSON lives, so that recording a span allocates nothing in the steady state.
//!
//! ```text
//!  set_inputs / #[trace] args ──▶ thread scratch (one String per thread, stack-like)
//!                                   │ span ends: its bytes are copied under the trace lock
//!                                   ▼
//!                                 trace arena (one String per trace) ──▶ export thread: one shared text
//! ```
//!
//! While a span is open its payloads are ranges in the thread's scratch buffer; a span ending at the top
//! of the stack truncates the scratch back to where it started. When the span ends they are copied into its
//! trace's arena (spans ending on the root's thread leave them in the scratch, which goes with the trace).
//! The export thread copies each buffer once into a shared text that the exported spans' payloads are
//! ranges of ([`SharedBuffer`]), and gives the buffer back to the pool: no small allocation per payload on
//! either thread. Payloads of spans not held on a thread's stack (client API, detached spans) are plain
//! `String`s.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use mlflow_tracing_core::JsonText;

/// The scratch buffer is kept at most this large between traces.
const MAX_IDLE_SCRATCH_CAPACITY: usize = 64 * 1024;

thread_local! {
    /// Borrowed while a payload is written into it, in place: a payload whose `Serialize` writes one too
    /// finds it borrowed and uses a buffer of its own.
    ///
    /// Written in place, the buffer stays where it is. Moving it out and back for every payload stores
    /// its three words and soon loads them again with wider loads, which wait for the stores to reach the
    /// cache (the CPU forwards one store to a load, not several).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A payload's JSON text, wherever it is.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadText {
    Owned(String),
    Static(&'static str),
    /// A range of this thread's scratch buffer.
    Thread(u32, u32),
    /// A range of the trace's arena.
    Trace(u32, u32),
}

fn range(start: u32, end: u32) -> Range<usize> {
    start as usize..end as usize
}

/// The text of a range; payload bytes are always written whole from UTF-8 text.
fn text_of(buffer: &[u8], start: u32, end: u32) -> &str {
    buffer
        .get(range(start, end))
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .unwrap_or("null")
}

impl PayloadText {
    /// An owned copy of the text; a range of the scratch is released when it ends the buffer.
    pub(crate) fn into_owned(self, trace_arena: &[u8]) -> String {
        match self {
            PayloadText::Owned(text) => text,
            PayloadText::Static(text) => text.to_owned(),
            PayloadText::Trace(start, end) => text_of(trace_arena, start, end).to_owned(),
            PayloadText::Thread(start, end) => with_scratch(|scratch| {
                let text = text_of(scratch, start, end).to_owned();
                if end as usize == scratch.len() {
                    scratch.truncate(start as usize);
                }
                text
            })
            .unwrap_or_else(|| "null".to_owned()),
        }
    }

    /// A copy of the text, leaving the payload in place.
    pub(crate) fn to_string_in(&self, trace_arena: &[u8]) -> String {
        match self {
            PayloadText::Owned(text) => text.clone(),
            PayloadText::Static(text) => (*text).to_owned(),
            PayloadText::Trace(start, end) => text_of(trace_arena, *start, *end).to_owned(),
            PayloadText::Thread(start, end) => {
                with_scratch(|scratch| text_of(scratch, *start, *end).to_owned())
                    .unwrap_or_else(|| "null".to_owned())
            }
        }
    }

    /// The JSON text on the export thread, pointing into the trace's buffers: scratch ranges into the
    /// scratch buffer the trace's root thread handed over, arena ranges into the trace's arena.
    pub(crate) fn into_json_text(
        self,
        trace_arena: &SharedBuffer<'_>,
        root_scratch: &SharedBuffer<'_>,
    ) -> JsonText {
        match self {
            PayloadText::Owned(text) => JsonText::from_raw(text),
            PayloadText::Static(text) => JsonText::from_static(text),
            PayloadText::Trace(start, end) => trace_arena.json_text(start, end),
            PayloadText::Thread(start, end) => root_scratch.json_text(start, end),
        }
    }

    /// Makes a scratch range a string of its own, for a span that leaves this thread's stack.
    pub(crate) fn detach(self) -> PayloadText {
        match self {
            PayloadText::Thread(..) => PayloadText::Owned(self.into_owned(&[])),
            other => other,
        }
    }

    /// Moves a scratch range into the trace arena; other payloads are unchanged.
    #[inline]
    pub(crate) fn move_to_trace(&mut self, scratch: Option<&[u8]>, trace_arena: &mut Vec<u8>) {
        let PayloadText::Thread(start, end) = *self else {
            return;
        };
        let bytes = scratch
            .and_then(|scratch| scratch.get(range(start, end)))
            .unwrap_or(b"null");
        let trace_start = trace_arena.len();
        trace_arena.extend_from_slice(bytes);
        *self = match (u32::try_from(trace_start), u32::try_from(trace_arena.len())) {
            (Ok(start), Ok(end)) => PayloadText::Trace(start, end),
            _ => PayloadText::Owned(String::from_utf8_lossy(bytes).into_owned()),
        };
    }
}

/// A trace's payload buffer on the export thread, made one shared text that the trace's payloads point
/// into: each span's inputs, outputs and attributes then cost no allocation and no copy of their own.
pub(crate) struct SharedBuffer<'a> {
    bytes: &'a [u8],
    /// `None` for an empty buffer, or one that is not UTF-8 (never expected: payloads are written whole).
    text: Option<Arc<str>>,
}

impl<'a> SharedBuffer<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        let text = (!bytes.is_empty())
            .then(|| std::str::from_utf8(bytes).ok().map(Arc::from))
            .flatten();
        SharedBuffer { bytes, text }
    }

    fn json_text(&self, start: u32, end: u32) -> JsonText {
        let part = self
            .text
            .as_ref()
            .and_then(|text| JsonText::part_of(text, range(start, end)));
        part.unwrap_or_else(|| JsonText::from_raw(text_of(self.bytes, start, end)))
    }
}

impl From<String> for PayloadText {
    fn from(text: String) -> Self {
        PayloadText::Owned(text)
    }
}

/// Runs `work` on the scratch buffer in place; `None` when it is borrowed already (`work` writing a
/// payload whose `Serialize` writes one too) or the thread is being torn down.
#[inline]
pub(crate) fn with_scratch<R>(work: impl FnOnce(&mut Vec<u8>) -> R) -> Option<R> {
    SCRATCH
        .try_with(|cell| {
            cell.try_borrow_mut()
                .ok()
                .map(|mut scratch| work(&mut scratch))
        })
        .ok()
        .flatten()
}

/// The scratch length, to truncate back to when the span pushed now ends; `u32::MAX` when it is
/// borrowed.
#[inline]
pub(crate) fn scratch_mark() -> u32 {
    with_scratch(|scratch| u32::try_from(scratch.len()).unwrap_or(u32::MAX)).unwrap_or(u32::MAX)
}

/// Releases the scratch from `mark` on; with `mark == 0` (the stack is empty) also gives back a buffer that
/// grew large for one big payload.
pub(crate) fn release_scratch(mark: u32) {
    let _ = with_scratch(|scratch| {
        if (mark as usize) < scratch.len() {
            scratch.truncate(mark as usize);
        }
        if mark == 0 && scratch.capacity() > MAX_IDLE_SCRATCH_CAPACITY {
            *scratch = Vec::new();
        }
    });
}

/// Hands this thread's scratch buffer to a trace whose root ended: the payloads of its spans that ended on
/// this thread are read from it on the export thread. With `mark == 0` (the usual case: the root was the
/// bottom of the stack) the buffer itself moves and the thread gets a recycled one.
pub(crate) fn take_whole_scratch(mark: u32) -> Vec<u8> {
    with_scratch(|scratch| {
        if mark == 0 {
            std::mem::replace(scratch, crate::pool::arena())
        } else {
            let copy = scratch.clone();
            scratch.truncate(mark as usize);
            copy
        }
    })
    .unwrap_or_default()
}

/// A range of the scratch buffer, as one number (start in the high half, end in the low half).
///
/// Code that writes a payload into the scratch returns this out of the scratch's borrow, and the payload
/// is built from it after: a `PayloadText` built inside would come out through memory, and the wide load
/// that moves it waits for the narrower stores that built it to reach the cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScratchRange(u64);

impl ScratchRange {
    /// `None` past 4 GiB, which a range of the scratch never reaches in practice.
    #[inline]
    pub(crate) fn new(start: usize, end: usize) -> Option<ScratchRange> {
        let (start, end) = (u32::try_from(start).ok()?, u32::try_from(end).ok()?);
        Some(ScratchRange((u64::from(start) << 32) | u64::from(end)))
    }

    #[inline]
    pub(crate) fn payload(range: Option<ScratchRange>) -> PayloadText {
        match range {
            Some(ScratchRange(packed)) => PayloadText::Thread((packed >> 32) as u32, packed as u32),
            None => PayloadText::Owned("null".to_owned()),
        }
    }
}

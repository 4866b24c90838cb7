//! Traces being recorded: their finished spans, their detached open spans, and what the user set on them.
//!
//! A trace is complete when its root span ends. Spans of a trace end on any thread; each ends by taking the
//! trace's lock once to push its data. Completion takes the spans out and hands them to the export
//! processor; a span that ends after that is dropped and counted.
//!
//! Every open trace is in a registry by id, so the client API can find it from any thread and the export
//! thread can finish traces that outlive the timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use mlflow_tracing_core::{SpanId, TraceId};

use crate::config;
use crate::context::move_extras;
use crate::processor;
use crate::span_data::{Extra, SpanData, SpanMutation};

/// What the user set on a trace with `update_current_trace` or the client API.
#[derive(Debug, Default, Clone)]
pub(crate) struct TraceUpdates {
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) client_request_id: Option<String>,
    pub(crate) request_preview: Option<String>,
    pub(crate) response_preview: Option<String>,
}

impl TraceUpdates {
    pub(crate) fn merge(&mut self, other: TraceUpdates) {
        self.tags.extend(other.tags);
        self.metadata.extend(other.metadata);
        self.client_request_id = other.client_request_id.or(self.client_request_id.take());
        self.request_preview = other.request_preview.or(self.request_preview.take());
        self.response_preview = other.response_preview.or(self.response_preview.take());
    }
}

#[derive(Debug, Default)]
struct TraceBody {
    finished: Vec<SpanData>,
    /// Payloads of the finished spans that ended on a thread's stack.
    arena: Vec<u8>,
    /// Attributes, events and status messages of the spans, oldest first.
    extras: Vec<(SpanId, Extra)>,
    /// Spans ended explicitly (client API, detached and async spans), by id.
    open: HashMap<SpanId, SpanData>,
    /// Changes to spans held by another thread's stack, applied when the trace completes.
    pending: Vec<(SpanId, SpanMutation)>,
    updates: TraceUpdates,
}

/// A trace that has not completed.
#[derive(Debug)]
pub(crate) struct OpenTrace {
    pub(crate) trace_id: TraceId,
    pub(crate) experiment_id: Option<String>,
    pub(crate) root_span_id: SpanId,
    opened_at: Instant,
    completed: AtomicBool,
    body: Mutex<TraceBody>,
}

/// Everything the export thread needs to build the model's trace.
#[derive(Debug)]
pub(crate) struct FinishedTrace {
    pub(crate) trace_id: TraceId,
    pub(crate) experiment_id: Option<String>,
    pub(crate) spans: Vec<SpanData>,
    pub(crate) arena: Vec<u8>,
    /// The scratch buffer of the thread the root ended on, when the root was on that thread's stack.
    pub(crate) root_scratch: Vec<u8>,
    pub(crate) extras: Vec<(SpanId, Extra)>,
    pub(crate) updates: TraceUpdates,
    /// Set when the trace was finished by the timeout rather than by its root.
    pub(crate) forced_error: Option<String>,
}

impl FinishedTrace {
    /// Gives the trace's buffers back to the pool, for a trace that will not be exported.
    pub(crate) fn recycle(self) {
        let (spans_used, extras_used) = (self.spans.len(), self.extras.len());
        crate::pool::recycle_span_list(self.spans, spans_used);
        crate::pool::recycle_extras_list(self.extras, extras_used);
        crate::pool::recycle_arena(self.arena);
        crate::pool::recycle_arena(self.root_scratch);
    }
}

static REGISTRY: LazyLock<Mutex<HashMap<TraceId, Arc<OpenTrace>>>> =
    LazyLock::new(Default::default);
static LATE_SPANS: AtomicU64 = AtomicU64::new(0);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-written (every critical section
    // is a push or a map operation), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl OpenTrace {
    /// Opens a trace and registers it.
    pub(crate) fn open(
        trace_id: TraceId,
        root_span_id: SpanId,
        experiment_id: Option<String>,
    ) -> Arc<OpenTrace> {
        let trace = Arc::new(OpenTrace {
            trace_id,
            experiment_id,
            root_span_id,
            opened_at: Instant::now(),
            completed: AtomicBool::new(false),
            body: Mutex::new(TraceBody {
                finished: crate::pool::span_list(),
                extras: crate::pool::extras_list(),
                ..TraceBody::default()
            }),
        });
        lock(&REGISTRY).insert(trace_id, Arc::clone(&trace));
        processor::ensure_started();
        trace
    }

    /// The open trace with this id.
    pub(crate) fn find(trace_id: TraceId) -> Option<Arc<OpenTrace>> {
        lock(&REGISTRY).get(&trace_id).cloned()
    }

    pub(crate) fn is_completed(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }

    /// Records a span that ended on this thread's stack, taking it from its frame and its extras from the
    /// thread's list (see [`move_extras`]); ending the root completes the trace. With `keep_in_scratch` (the
    /// root is on this thread's stack too) its payloads stay in the thread's scratch, which the root hands
    /// over as `root_scratch` when it ends.
    pub(crate) fn finish_span_from(
        &self,
        slot: &mut Option<SpanData>,
        extras_mark: u32,
        extras_from_mark: bool,
        keep_in_scratch: bool,
        root_scratch: Vec<u8>,
    ) {
        let Some(data) = slot.as_mut() else {
            return;
        };
        let span_id = data.span_id;
        let is_root = span_id == self.root_span_id;
        let discard_extras = || {
            move_extras(
                span_id,
                extras_mark,
                extras_from_mark,
                &mut Vec::new(),
                |_| {},
            )
        };
        let mut body = lock(&self.body);
        if self.is_completed() {
            drop(body);
            discard_extras();
            crate::pool::recycle_arena(root_scratch);
            if let Some(data) = slot.take() {
                count_late_span(&data);
            }
            return;
        }
        if over_cap(&body, is_root) {
            discard_extras();
            LATE_SPANS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let TraceBody {
            arena,
            finished,
            extras,
            ..
        } = &mut *body;
        if keep_in_scratch {
            move_extras(span_id, extras_mark, extras_from_mark, extras, |_| {});
        } else {
            let mut move_payloads = |scratch: Option<&[u8]>| {
                data.move_payloads_to_trace(scratch, arena);
                move_extras(span_id, extras_mark, extras_from_mark, extras, |extra| {
                    extra.move_payload_to_trace(scratch, arena);
                });
            };
            // When the scratch is out of reach (borrowed, or the thread is being torn down), the payloads
            // read as `null`, never as other bytes.
            if crate::arena::with_scratch(|scratch| move_payloads(Some(scratch))).is_none() {
                move_payloads(None);
            }
        }
        if let Some(data) = slot.take() {
            finished.push(data);
        }
        if is_root {
            self.complete(body, None, root_scratch);
        }
    }

    /// Keeps a span that will be ended explicitly.
    pub(crate) fn insert_open(&self, data: SpanData) -> bool {
        let mut body = lock(&self.body);
        if self.is_completed() {
            return false;
        }
        body.open.insert(data.span_id, data);
        true
    }

    /// Removes an explicitly ended span and records it as finished; `end` returns extras to add.
    pub(crate) fn end_open(
        self: &Arc<Self>,
        span_id: SpanId,
        end: impl FnOnce(&mut SpanData) -> Vec<Extra>,
    ) -> Result<(), EndError> {
        let mut body = lock(&self.body);
        let Some(mut data) = body.open.remove(&span_id) else {
            let already_ended = body.finished.iter().any(|span| span.span_id == span_id);
            return Err(if already_ended {
                EndError::AlreadyEnded
            } else {
                EndError::NotFound
            });
        };
        let extras = end(&mut data);
        let is_root = span_id == self.root_span_id;
        if over_cap(&body, is_root) {
            LATE_SPANS.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        body.extras
            .extend(extras.into_iter().map(|extra| (span_id, extra.detach())));
        body.finished.push(data);
        if is_root {
            self.complete(body, None, Vec::new());
        }
        Ok(())
    }

    /// Applies a change to a span of this trace that is not on the calling thread's stack.
    pub(crate) fn mutate(&self, span_id: SpanId, mutation: SpanMutation) {
        let mut body = lock(&self.body);
        if self.is_completed() {
            return;
        }
        let mutation = mutation.detach();
        let TraceBody {
            open,
            finished,
            pending,
            extras,
            ..
        } = &mut *body;
        let data = open.get_mut(&span_id).or_else(|| {
            finished
                .iter_mut()
                .rev()
                .find(|span| span.span_id == span_id)
        });
        match data {
            Some(data) => extras.extend(data.apply(mutation).map(|extra| (span_id, extra))),
            None => pending.push((span_id, mutation)),
        }
    }

    /// Reads a span held in the trace (open or finished), with the arena its payloads may be in and the
    /// trace's extras.
    pub(crate) fn read_span<R>(
        &self,
        span_id: SpanId,
        read: impl FnOnce(&SpanData, &[u8], &[(SpanId, Extra)]) -> R,
    ) -> Option<R> {
        let body = lock(&self.body);
        body.open
            .get(&span_id)
            .or_else(|| body.finished.iter().find(|span| span.span_id == span_id))
            .map(|data| read(data, &body.arena, &body.extras))
    }

    pub(crate) fn update(&self, updates: TraceUpdates) {
        lock(&self.body).updates.merge(updates);
    }

    fn complete(
        &self,
        mut body: MutexGuard<'_, TraceBody>,
        forced_error: Option<String>,
        root_scratch: Vec<u8>,
    ) {
        self.completed.store(true, Ordering::Release);
        let mut spans = std::mem::take(&mut body.finished);
        // Spans never ended stay in the trace, unfinished, as MLflow shows them.
        spans.extend(std::mem::take(&mut body.open).into_values());
        for (span_id, mutation) in std::mem::take(&mut body.pending) {
            if let Some(data) = spans.iter_mut().find(|span| span.span_id == span_id) {
                let extra = data.apply(mutation);
                body.extras.extend(extra.map(|extra| (span_id, extra)));
            }
        }
        let updates = std::mem::take(&mut body.updates);
        let arena = std::mem::take(&mut body.arena);
        let extras = std::mem::take(&mut body.extras);
        drop(body);
        lock(&REGISTRY).remove(&self.trace_id);
        crate::fluent::note_last_trace(self.trace_id);
        processor::submit(FinishedTrace {
            trace_id: self.trace_id,
            experiment_id: self.experiment_id.clone(),
            spans,
            arena,
            root_scratch,
            extras,
            updates,
            forced_error,
        });
    }
}

/// Why an explicit end failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndError {
    NotFound,
    AlreadyEnded,
}

/// Whether a span ending now is past the cap on spans per trace. A slot is kept for the root, so a capped
/// trace still has its top.
fn over_cap(body: &TraceBody, is_root: bool) -> bool {
    !is_root && body.finished.len() + 1 >= config::max_spans_per_trace()
}

fn count_late_span(data: &SpanData) {
    LATE_SPANS.fetch_add(1, Ordering::Relaxed);
    log::debug!(span_name:% = data.name; "span ended after its trace completed; dropped");
}

/// Spans dropped because their trace had completed or was over the span cap.
pub fn dropped_span_count() -> u64 {
    LATE_SPANS.load(Ordering::Relaxed)
}

/// Finishes every trace open longer than the configured timeout, with state ERROR. Called by the export thread.
pub(crate) fn finish_timed_out_traces() {
    let Some(timeout) = config::trace_timeout() else {
        return;
    };
    let expired: Vec<Arc<OpenTrace>> = lock(&REGISTRY)
        .values()
        .filter(|trace| trace.opened_at.elapsed() >= timeout)
        .cloned()
        .collect();
    for trace in expired {
        let body = lock(&trace.body);
        if trace.is_completed() {
            continue;
        }
        log::warn!(trace_id:% = trace.trace_id.to_mlflow(), timeout_ms = timeout.as_millis(); "trace timed out; finishing it with state ERROR");
        // Spans that ended on the root's thread keep their payloads in that thread's scratch, out of reach
        // here: a timed-out trace shows them as null.
        trace.complete(
            body,
            Some(format!("trace timed out after {} ms", timeout.as_millis())),
            Vec::new(),
        );
    }
}

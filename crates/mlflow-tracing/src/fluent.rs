//! The fluent API: spans that nest by themselves, following the execution on each thread.
//!
//! [`start_span`] returns a [`SpanGuard`]: the span is current on this thread until the guard drops (or
//! [`SpanGuard::end`]). `#[trace]` and [`crate::trace_call!`] use the same machinery.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlflow_tracing_core::{SpanId, SpanStatusCode, SpanType, Trace, TraceId, keys};
use serde::Serialize;

use crate::__private::FnMeta;
use crate::arena::{self, PayloadText};
use crate::context::{
    Frame, FrameTrace, Parent, StackParent, current_parent, extras_mark, pop_frame, remove_frame,
    stack_parent, top_trace, with_extras, with_stack,
};
use crate::live::{LiveSpan, span_type_text};
use crate::span_data::{Extra, SpanData, SpanMutation, Text};
use crate::trace_state::{OpenTrace, TraceUpdates};
use crate::{config, ids, processor, record};

/// How a new span is described: name, type, attributes and inputs.
///
/// ```
/// use mlflow_tracing::{SpanType, span};
///
/// let guard = span("retrieve").span_type(SpanType::Retriever).attribute("k", &3).start();
/// guard.set_outputs(&["doc 1", "doc 2"]);
/// ```
#[derive(Debug, Clone)]
pub struct SpanBuilder {
    name: Text,
    span_type: Text,
    attributes: Vec<(Text, PayloadText)>,
    inputs: Option<PayloadText>,
    function: Option<&'static FnMeta>,
    start_time_ns: Option<u64>,
    experiment_id: Option<String>,
}

/// Starts describing a span named `name`.
pub fn span(name: impl Into<Cow<'static, str>>) -> SpanBuilder {
    SpanBuilder {
        name: name.into(),
        span_type: Cow::Borrowed("UNKNOWN"),
        attributes: Vec::new(),
        inputs: None,
        function: None,
        start_time_ns: None,
        experiment_id: None,
    }
}

/// Starts a span named `name` as a child of the current span (or as the root of a new trace) and makes it
/// current until the guard drops.
pub fn start_span(name: impl Into<Cow<'static, str>>) -> SpanGuard {
    let name = name.into();
    enter(None, |span_id, parent_id, start_ns| {
        SpanData::new(span_id, parent_id, name, Cow::Borrowed("UNKNOWN"), start_ns)
    })
}

/// Runs `work` inside a span named `name`; the span ends when `work` returns.
pub fn with_span<R>(name: impl Into<Cow<'static, str>>, work: impl FnOnce(&SpanGuard) -> R) -> R {
    let guard = start_span(name);
    work(&guard)
}

impl SpanBuilder {
    /// The span type (default `UNKNOWN`).
    pub fn span_type(mut self, span_type: impl Into<SpanType>) -> Self {
        self.span_type = span_type_text(span_type.into());
        self
    }

    /// Adds an attribute, recorded as the value's JSON.
    pub fn attribute<T: Serialize + ?Sized>(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: &T,
    ) -> Self {
        self.attributes
            .push((key.into(), PayloadText::Owned(record::encode(value))));
        self
    }

    /// Sets the inputs.
    pub fn inputs<T: Serialize + ?Sized>(mut self, inputs: &T) -> Self {
        self.inputs = Some(PayloadText::Owned(record::encode(inputs)));
        self
    }

    /// Records the start at this time (nanoseconds since the epoch) instead of now.
    pub fn start_time_ns(mut self, start_time_ns: u64) -> Self {
        self.start_time_ns = Some(start_time_ns);
        self
    }

    /// Records the trace in this experiment when the span starts a trace.
    pub fn experiment_id(mut self, experiment_id: impl Into<String>) -> Self {
        self.experiment_id = Some(experiment_id.into());
        self
    }

    /// Records the span as a call of this `#[trace]` function, with its static attributes.
    pub(crate) fn function(mut self, function: &'static FnMeta) -> Self {
        self.function = Some(function);
        self
    }

    /// Adds inputs and attributes that are JSON text already.
    pub(crate) fn encoded(
        mut self,
        inputs: Option<PayloadText>,
        attributes: Vec<(Text, PayloadText)>,
    ) -> Self {
        if inputs.is_some() {
            self.inputs = inputs;
        }
        self.attributes.extend(attributes);
        self
    }

    fn into_data(self, span_id: SpanId, parent_id: Option<SpanId>, now_ns: u64) -> SpanData {
        let start_ns = self.start_time_ns.unwrap_or(now_ns);
        let mut data = SpanData::new(span_id, parent_id, self.name, self.span_type, start_ns);
        data.function = self.function;
        data.inputs = self.inputs;
        data
    }

    /// Starts the span as a child of the current span and makes it current on this thread.
    pub fn start(mut self) -> SpanGuard {
        let experiment_id = self.experiment_id.take();
        let attributes = std::mem::take(&mut self.attributes);
        let guard = enter(experiment_id, |span_id, parent_id, start_ns| {
            self.into_data(span_id, parent_id, start_ns)
        });
        for (key, json) in attributes {
            guard.mutate(SpanMutation::Attribute(key, json));
        }
        guard
    }

    /// Starts the span without making it current (MLflow's `start_span_no_context`): it is a child of the
    /// current span, or of `parent` when given, and ends with [`LiveSpan::end`].
    pub fn start_detached(self, parent: Option<&LiveSpan>) -> LiveSpan {
        if !config::is_enabled() {
            return LiveSpan::no_op();
        }
        let parent = match parent {
            Some(parent) if parent.unsampled => Parent::Unsampled,
            Some(LiveSpan {
                trace: Some(trace),
                span_id,
                ..
            }) if !trace.is_completed() => Parent::Span(Arc::clone(trace), *span_id),
            Some(_) => Parent::None,
            None => with_stack(|stack| current_parent(stack)).unwrap_or(Parent::None),
        };
        self.start_detached_under(parent)
    }

    /// Starts the span as the root of a new trace, whatever span is current.
    pub(crate) fn start_detached_root(self) -> LiveSpan {
        if !config::is_enabled() {
            return LiveSpan::no_op();
        }
        self.start_detached_under(Parent::None)
    }

    fn start_detached_under(mut self, parent: Parent) -> LiveSpan {
        let span_id = ids::new_span_id();
        let (trace, parent_id) = match parent {
            Parent::Unsampled => {
                return LiveSpan {
                    trace: None,
                    span_id,
                    parent_id: None,
                    unsampled: true,
                };
            }
            Parent::Span(trace, parent_id) => (trace, Some(parent_id)),
            Parent::None => match open_sampled_trace(span_id, self.experiment_id.clone()) {
                Some(trace) => (trace, None),
                None => {
                    return LiveSpan {
                        trace: None,
                        span_id,
                        parent_id: None,
                        unsampled: true,
                    };
                }
            },
        };
        let attributes = std::mem::take(&mut self.attributes);
        if !trace.insert_open(self.into_data(span_id, parent_id, crate::clock::now_ns())) {
            return LiveSpan::no_op();
        }
        let span = LiveSpan {
            trace: Some(trace),
            span_id,
            parent_id,
            unsampled: false,
        };
        for (key, json) in attributes {
            span.mutate(SpanMutation::Attribute(key, json));
        }
        span
    }
}

/// Opens a new trace rooted at `root_span_id`, unless sampling drops it.
pub(crate) fn open_sampled_trace(
    root_span_id: SpanId,
    experiment_id: Option<String>,
) -> Option<Arc<OpenTrace>> {
    config::read_environment_once();
    let trace_id = ids::new_trace_id();
    if !ids::is_sampled(trace_id, config::sampling_ratio()) {
        return None;
    }
    Some(OpenTrace::open(trace_id, root_span_id, experiment_id))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardState {
    /// Tracing was off: nothing was pushed.
    Inactive,
    /// The trace is not sampled: a marker frame was pushed so children are not recorded either.
    Unsampled,
    Recording,
}

/// The current span of this thread, until dropped. Not `Send`: the span belongs to this thread's stack (use
/// [`SpanGuard::live`] for a handle other threads can use).
#[derive(Debug)]
#[must_use = "the span ends when the guard is dropped"]
pub struct SpanGuard {
    span_id: SpanId,
    state: GuardState,
    _not_send: PhantomData<*const ()>,
}

/// Pushes a new span on this thread's stack. The hot path: no allocation beyond the span's own payloads, and
/// a lock only when the span starts a trace.
#[inline]
pub(crate) fn enter(
    experiment_id: Option<String>,
    make: impl FnOnce(SpanId, Option<SpanId>, u64) -> SpanData,
) -> SpanGuard {
    if !config::is_enabled() {
        return SpanGuard::inactive();
    }
    // Read before the parent is worked out. Read after, the clock's slow path (a call) has the compiler
    // store the parent's parts to the stack in pieces, then copy them into the frame with wider loads,
    // which wait for those stores to reach the cache.
    let start_ns = crate::clock::now_ns();
    let span_id = ids::new_span_id();
    let state = with_stack(|stack| {
        let (trace, parent_id, root_here) = match stack_parent(stack) {
            StackParent::Unsampled => (None, None, false),
            StackParent::Span {
                owner,
                span_id,
                root_here,
            } => (Some(FrameTrace::Below(owner)), Some(span_id), root_here),
            StackParent::None => (
                open_sampled_trace(span_id, experiment_id).map(FrameTrace::Own),
                None,
                true,
            ),
        };
        let Some(trace) = trace else {
            let frame = Frame {
                trace: FrameTrace::Unsampled,
                span_id,
                parent_id: None,
                data: None,
                arena_mark: u32::MAX,
                extras_mark: u32::MAX,
                root_here: false,
            };
            stack.push(frame);
            return GuardState::Unsampled;
        };
        let arena_mark = arena::scratch_mark();
        let extras_mark = extras_mark();
        stack.push(Frame {
            trace,
            span_id,
            parent_id,
            data: Some(make(span_id, parent_id, start_ns)),
            arena_mark,
            extras_mark,
            root_here,
        });
        GuardState::Recording
    });
    match state {
        Some(state) => SpanGuard {
            span_id,
            state,
            _not_send: PhantomData,
        },
        None => SpanGuard::inactive(),
    }
}

impl SpanGuard {
    #[inline]
    pub(crate) fn inactive() -> SpanGuard {
        SpanGuard {
            span_id: SpanId::INVALID,
            state: GuardState::Inactive,
            _not_send: PhantomData,
        }
    }

    /// Whether this span is recorded.
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.state == GuardState::Recording
    }

    /// Applies a change to this guard's frame.
    ///
    /// Inputs, outputs and attributes (most changes) each take a path of their own: a single path for
    /// every kind of change is one function, which moves the change through memory and picks its arm with
    /// a jump. Always inlined, so that a caller that builds the change keeps only its arm.
    #[inline(always)]
    pub(crate) fn mutate(&self, mutation: SpanMutation) {
        match mutation {
            SpanMutation::Inputs(json) => self.with_data(|data| data.inputs = Some(json)),
            SpanMutation::Outputs(json) => self.with_data(|data| data.outputs = Some(json)),
            // Kept beside the span, which a recording guard's frame always holds.
            SpanMutation::Attribute(key, json) => {
                if self.is_recording() {
                    let span_id = self.span_id;
                    with_extras(|extras| extras.push((span_id, Extra::Attribute(key, json))));
                }
            }
            other => {
                let span_id = self.span_id;
                self.with_data(|data| {
                    if let Some(extra) = data.apply(other) {
                        with_extras(|extras| extras.push((span_id, extra)));
                    }
                });
            }
        }
    }

    /// Runs `change` on the data of this guard's span, when it is recorded.
    #[inline]
    fn with_data(&self, change: impl FnOnce(&mut SpanData)) {
        if !self.is_recording() {
            return;
        }
        let span_id = self.span_id;
        let _ = with_stack(|stack| {
            let data = stack
                .iter_mut()
                .rev()
                .find(|frame| frame.span_id == span_id)
                .and_then(|frame| frame.data.as_mut());
            if let Some(data) = data {
                change(data);
            }
        });
    }

    /// Reads this guard's frame, with its trace.
    fn frame_value<R>(&self, read: impl FnOnce(&Frame, Option<&Arc<OpenTrace>>) -> R) -> Option<R> {
        if !self.is_recording() {
            return None;
        }
        with_stack(|stack| {
            let position = stack
                .iter()
                .rposition(|frame| frame.span_id == self.span_id)?;
            let frame = &stack[position];
            Some(read(frame, frame.trace.resolve(&stack[..position])))
        })
        .flatten()
    }

    /// The MLflow trace id (`tr-…`), when recorded.
    pub fn trace_id(&self) -> Option<String> {
        self.frame_value(|_, trace| trace.map(|trace| trace.trace_id.to_mlflow()))
            .flatten()
    }

    /// This span's id, when recorded.
    pub fn span_id(&self) -> Option<SpanId> {
        self.is_recording().then_some(self.span_id)
    }

    /// The parent's id; `None` for a root or when not recorded.
    pub fn parent_id(&self) -> Option<SpanId> {
        self.frame_value(|frame, _| frame.parent_id).flatten()
    }

    /// A handle to this span that other threads can use.
    pub fn live(&self) -> LiveSpan {
        self.frame_value(|frame, trace| LiveSpan {
            trace: trace.cloned(),
            span_id: frame.span_id,
            parent_id: frame.parent_id,
            unsampled: false,
        })
        .unwrap_or_else(LiveSpan::no_op)
    }

    crate::live::span_mutation_methods!(record::encode_in_scratch);

    /// Ends the span now.
    pub fn end(self) {}

    pub(crate) fn end_with_outputs(mut self, json: PayloadText) {
        self.finish(Some(json));
        self.state = GuardState::Inactive;
    }

    pub(crate) fn set_outputs_if_unset(&self, json: PayloadText) {
        self.with_data(|data| match data.outputs {
            None => data.outputs = Some(json),
            // Set by the function itself: the scratch range written for nothing is released.
            Some(_) => drop(json.detach()),
        });
    }

    pub(crate) fn set_json(&self, mutation: SpanMutation) {
        self.mutate(mutation);
    }

    pub(crate) fn record_panic(&self, payload: &(dyn std::any::Any + Send)) {
        for mutation in crate::exception::error_mutations(crate::exception::panic_parts(payload)) {
            self.mutate(mutation);
        }
    }
}

impl Drop for SpanGuard {
    #[inline]
    fn drop(&mut self) {
        if self.state != GuardState::Inactive {
            self.close();
        }
    }
}

impl SpanGuard {
    /// Ends the span of a guard dropped while active.
    fn close(&mut self) {
        match self.state {
            GuardState::Inactive => {}
            GuardState::Unsampled => {
                pop_frame(self.span_id);
            }
            GuardState::Recording => self.finish(None),
        }
    }

    /// Ends a recording span, with outputs when they were not set already.
    fn finish(&mut self, outputs: Option<PayloadText>) {
        let end_ns = crate::clock::now_ns();
        let panicking = std::thread::panicking();
        let span_id = self.span_id;
        // Everything happens inside one borrow of the stack, on the frame in place: moving a span out
        // through several layers costs a copy per layer.
        let _ = with_stack(|stack| {
            let position = stack.iter().rposition(|frame| frame.span_id == span_id)?;
            let is_top = position + 1 == stack.len();
            let (below, from_position) = stack.split_at_mut(position);
            let frame = &mut from_position[0];
            let arena_mark = frame.arena_mark;
            let trace = frame.trace.resolve(below);
            if let (Some(trace), Some(data)) = (trace, frame.data.as_mut()) {
                if data.outputs.is_none() {
                    data.outputs = outputs;
                }
                if panicking && data.status_code != SpanStatusCode::Error {
                    let parts =
                        crate::exception::panic_parts(&"the thread panicked inside this span");
                    for mutation in crate::exception::error_mutations(parts) {
                        if let Some(extra) = data.apply(mutation) {
                            with_extras(|extras| extras.push((span_id, extra)));
                        }
                    }
                }
                data.end_at(end_ns);
                let keep_in_scratch = frame.root_here;
                let root_scratch = if keep_in_scratch && data.parent_id.is_none() {
                    arena::take_whole_scratch(arena_mark)
                } else {
                    Vec::new()
                };
                trace.finish_span_from(
                    &mut frame.data,
                    frame.extras_mark,
                    is_top,
                    keep_in_scratch,
                    root_scratch,
                );
            }
            // A span whose payloads stayed in the scratch (its root is below it) must not release them.
            let release = !frame.root_here;
            if is_top {
                stack.truncate(position);
                if stack.is_empty() {
                    arena::release_scratch(0);
                } else if release {
                    arena::release_scratch(arena_mark);
                }
            } else {
                remove_frame(stack, position);
            }
            Some(())
        });
    }
}

/// The current span of this thread, as a handle (MLflow's `get_current_active_span`).
pub fn get_current_active_span() -> Option<LiveSpan> {
    with_stack(|stack| {
        let frame = stack.last()?;
        let trace = top_trace(stack).filter(|trace| !trace.is_completed())?;
        Some(LiveSpan {
            trace: Some(Arc::clone(trace)),
            span_id: frame.span_id,
            parent_id: frame.parent_id,
            unsampled: false,
        })
    })
    .flatten()
}

/// The trace id (`tr-…`) of this thread's current span (MLflow's `get_active_trace_id`).
pub fn get_active_trace_id() -> Option<String> {
    get_current_active_span().map(|span| span.trace_id())
}

/// What [`update_current_trace`] changes: tags, metadata and the trace-level fields.
#[derive(Debug, Clone, Default)]
pub struct TraceUpdate {
    updates: TraceUpdates,
}

impl TraceUpdate {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a tag (mutable, searchable with `tags.<key>`).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.updates.tags.insert(key.into(), value.into());
        self
    }

    /// Sets a metadata entry (write-once, searchable with `metadata.<key>`).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.updates.metadata.insert(key.into(), value.into());
        self
    }

    /// The conversation this trace belongs to (`mlflow.trace.session`).
    pub fn session_id(self, session_id: impl Into<String>) -> Self {
        self.metadata(keys::META_SESSION, session_id)
    }

    /// The end user (`mlflow.trace.user`).
    pub fn user(self, user: impl Into<String>) -> Self {
        self.metadata(keys::META_USER, user)
    }

    /// The caller's own id for this request.
    pub fn client_request_id(mut self, id: impl Into<String>) -> Self {
        self.updates.client_request_id = Some(id.into());
        self
    }

    /// Replaces the derived request preview.
    pub fn request_preview(mut self, preview: impl Into<String>) -> Self {
        self.updates.request_preview = Some(preview.into());
        self
    }

    /// Replaces the derived response preview.
    pub fn response_preview(mut self, preview: impl Into<String>) -> Self {
        self.updates.response_preview = Some(preview.into());
        self
    }

    pub(crate) fn tags_map(tags: BTreeMap<String, String>) -> Self {
        TraceUpdate {
            updates: TraceUpdates {
                tags,
                ..TraceUpdates::default()
            },
        }
    }

    pub(crate) fn into_updates(self) -> TraceUpdates {
        self.updates
    }
}

/// Updates the trace of this thread's current span. Returns `false` (and changes nothing) when there is none.
pub fn update_current_trace(update: TraceUpdate) -> bool {
    let Some(trace) = with_stack(|stack| top_trace(stack).cloned()).flatten() else {
        log::warn!("update_current_trace called with no active trace; ignored");
        return false;
    };
    trace.update(update.into_updates());
    true
}

static LAST_TRACE: Mutex<Option<TraceId>> = Mutex::new(None);
thread_local! {
    static LAST_TRACE_IN_THREAD: Cell<Option<TraceId>> = const { Cell::new(None) };
}

pub(crate) fn note_last_trace(trace_id: TraceId) {
    *LAST_TRACE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(trace_id);
    let _ = LAST_TRACE_IN_THREAD.try_with(|last| last.set(Some(trace_id)));
}

/// The id of the trace that completed last in this process.
pub fn get_last_active_trace_id() -> Option<String> {
    LAST_TRACE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .map(|trace_id| trace_id.to_mlflow())
}

/// The id of the trace whose root ended last on this thread.
pub fn get_last_active_trace_id_in_thread() -> Option<String> {
    LAST_TRACE_IN_THREAD
        .try_with(Cell::get)
        .ok()
        .flatten()
        .map(|trace_id| trace_id.to_mlflow())
}

/// A finished trace from the in-process buffer (the last [`crate::config::DEFAULT_FINISHED_BUFFER_SIZE`]
/// traces). Waits up to five seconds for the export thread to process traces already ended.
pub fn get_trace(trace_id: &str) -> Option<Arc<Trace>> {
    let wanted = TraceId::parse_any(trace_id).ok()?.to_mlflow();
    if let Some(trace) = processor::find(&wanted) {
        return Some(trace);
    }
    processor::flush(Duration::from_secs(5));
    processor::find(&wanted)
}

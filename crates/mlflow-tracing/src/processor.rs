//! The export processor: finished traces leave the caller's thread here.
//!
//! ```text
//!  root span ends ──try_send──▶ [bounded queue] ──▶ export thread "mlflow-trace-export"
//!  (never blocks; full → drop,                         │ build Trace (TraceInfo, spans)
//!   count, warn once)                                  ├─▶ in-process buffer (get_trace)
//!                                                      └─▶ Exporter::export(batch)
//!  flush()/shutdown()/set_exporter() ──▶ control list + wake ──▶ handled once the queue is drained
//! ```
//!
//! The thread starts with the first finished trace. Control requests wait for an answer with a timeout, so
//! a stuck exporter cannot hang the application.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use mlflow_tracing_core::{
    JsonText, Span, SpanId, SpanStatusCode, Trace, TraceData, TraceInfo, TraceLocation, TraceState,
    keys,
};

use crate::arena::SharedBuffer;
use crate::config;
use crate::export::Exporter;
use crate::span_data::{Extra, SpanData};
use crate::trace_state::{self, FinishedTrace};

const MAX_BATCH: usize = 512;
const TICK: Duration = Duration::from_millis(200);
/// After a batch the thread waits this long before blocking again, so traces accumulate and a producer
/// finishing a trace rarely has to wake it (a futex system call per trace otherwise).
const LINGER: Duration = Duration::from_millis(2);

enum Message {
    Trace(Box<FinishedTrace>),
    Wake,
}

enum Control {
    Flush(SyncSender<()>),
    SetExporter(Option<Box<dyn Exporter>>, SyncSender<()>),
}

struct Processor {
    sender: SyncSender<Message>,
    control: Mutex<Vec<Control>>,
    control_pending: AtomicBool,
    finished: Mutex<VecDeque<Arc<Trace>>>,
}

static PROCESSOR: OnceLock<Arc<Processor>> = OnceLock::new();
static DROPPED_TRACES: AtomicU64 = AtomicU64::new(0);
static WARNED_FULL: AtomicBool = AtomicBool::new(false);
static EXPORT_FAILURES: AtomicU64 = AtomicU64::new(0);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn processor() -> &'static Arc<Processor> {
    PROCESSOR.get_or_init(|| {
        let (sender, receiver) = mpsc::sync_channel(config::DEFAULT_QUEUE_CAPACITY);
        let processor = Arc::new(Processor {
            sender,
            control: Mutex::new(Vec::new()),
            control_pending: AtomicBool::new(false),
            finished: Mutex::new(VecDeque::new()),
        });
        let worker = Worker { processor: Arc::clone(&processor), exporter: None, receiver };
        let spawned = std::thread::Builder::new().name("mlflow-trace-export".to_owned()).spawn(move || worker.run());
        if let Err(error) = spawned {
            log::error!(error:% = error; "could not start the trace export thread; traces will be dropped");
        }
        processor
    })
}

/// Starts the export thread if it is not running: it also finishes traces that outlive the timeout, so it
/// must run as soon as a trace is open.
pub(crate) fn ensure_started() {
    processor();
}

/// Hands a finished trace to the export thread without blocking.
pub(crate) fn submit(trace: FinishedTrace) {
    match processor().sender.try_send(Message::Trace(Box::new(trace))) {
        Ok(()) => {}
        Err(TrySendError::Full(message)) | Err(TrySendError::Disconnected(message)) => {
            // The buffers go back to the pool: freed here, new traces would allocate and grow fresh ones.
            if let Message::Trace(trace) = message {
                trace.recycle();
            }
            let dropped = DROPPED_TRACES.fetch_add(1, Ordering::Relaxed) + 1;
            if !WARNED_FULL.swap(true, Ordering::Relaxed) {
                log::warn!(dropped = dropped; "trace export queue is full; dropping traces (see dropped_trace_count())");
            }
        }
    }
}

/// Traces dropped because the export queue was full.
pub fn dropped_trace_count() -> u64 {
    DROPPED_TRACES.load(Ordering::Relaxed)
}

/// Export batches that failed.
pub fn export_failure_count() -> u64 {
    EXPORT_FAILURES.load(Ordering::Relaxed)
}

fn request(make: impl FnOnce(SyncSender<()>) -> Control, timeout: Duration) -> bool {
    let processor = processor();
    let (reply, answer) = mpsc::sync_channel(1);
    lock(&processor.control).push(make(reply));
    processor.control_pending.store(true, Ordering::Release);
    // When the queue is full the worker is busy and will see the request anyway.
    let _ = processor.sender.try_send(Message::Wake);
    answer.recv_timeout(timeout).is_ok()
}

/// Waits until every trace finished before the call is exported, at most `timeout`. Returns whether it
/// finished in time.
pub(crate) fn flush(timeout: Duration) -> bool {
    request(Control::Flush, timeout)
}

pub(crate) fn set_exporter(exporter: Option<Box<dyn Exporter>>, timeout: Duration) -> bool {
    request(|reply| Control::SetExporter(exporter, reply), timeout)
}

pub(crate) fn find(trace_id: &str) -> Option<Arc<Trace>> {
    let finished = lock(&processor().finished);
    finished
        .iter()
        .rev()
        .find(|trace| trace.info.trace_id == trace_id)
        .cloned()
}

struct Worker {
    processor: Arc<Processor>,
    exporter: Option<Box<dyn Exporter>>,
    receiver: Receiver<Message>,
}

impl Worker {
    fn run(mut self) {
        let mut last_sweep = Instant::now();
        loop {
            match self.receiver.recv_timeout(TICK) {
                Ok(Message::Trace(trace)) => {
                    let mut batch = vec![build_trace(*trace)];
                    while batch.len() < MAX_BATCH {
                        match self.receiver.try_recv() {
                            Ok(Message::Trace(trace)) => batch.push(build_trace(*trace)),
                            Ok(Message::Wake) => {}
                            Err(_) => break,
                        }
                    }
                    self.deliver(batch);
                    if !self.processor.control_pending.load(Ordering::Acquire) {
                        std::thread::sleep(LINGER);
                    }
                }
                Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if last_sweep.elapsed() >= TICK {
                trace_state::finish_timed_out_traces();
                last_sweep = Instant::now();
            }
            if self.processor.control_pending.swap(false, Ordering::AcqRel) {
                self.drain();
                let requests = std::mem::take(&mut *lock(&self.processor.control));
                for request in requests {
                    self.handle(request);
                }
            }
        }
    }

    fn drain(&mut self) {
        let mut batch = Vec::new();
        while let Ok(message) = self.receiver.try_recv() {
            if let Message::Trace(trace) = message {
                batch.push(build_trace(*trace));
            }
        }
        if !batch.is_empty() {
            self.deliver(batch);
        }
    }

    fn handle(&mut self, request: Control) {
        match request {
            Control::Flush(reply) => {
                if let Some(exporter) = self.exporter.as_mut() {
                    if let Err(error) = exporter.force_flush() {
                        log::warn!(error:% = error; "trace exporter flush failed");
                    }
                }
                let _ = reply.send(());
            }
            Control::SetExporter(exporter, reply) => {
                if let Some(mut previous) = std::mem::replace(&mut self.exporter, exporter) {
                    if let Err(error) = previous.shutdown() {
                        log::warn!(error:% = error; "trace exporter shutdown failed");
                    }
                }
                let _ = reply.send(());
            }
        }
    }

    fn deliver(&mut self, batch: Vec<Trace>) {
        let batch: Vec<Arc<Trace>> = batch.into_iter().map(Arc::new).collect();
        {
            let capacity = config::finished_buffer_size();
            let mut finished = lock(&self.processor.finished);
            finished.extend(batch.iter().cloned());
            let excess = finished.len().saturating_sub(capacity);
            finished.drain(..excess);
        }
        let Some(exporter) = self.exporter.as_mut() else {
            return;
        };
        if let Err(error) = exporter.export(&batch) {
            EXPORT_FAILURES.fetch_add(1, Ordering::Relaxed);
            log::warn!(error:% = error, traces = batch.len(); "trace export failed; batch dropped");
        }
    }
}

/// Whether each span's extras form one run in the list, in the order of the spans, so that each span takes
/// the run at the front: spans that end on a thread's stack or through the client API add theirs together as
/// they end, under the lock that records them. Changes applied when the trace completed (to spans another
/// thread's stack held) come later, out of order.
fn extras_in_span_order(spans: &[SpanData], extras: &[(SpanId, Extra)]) -> bool {
    let mut at = 0;
    for span in spans {
        while extras
            .get(at)
            .is_some_and(|(owner, _)| *owner == span.span_id)
        {
            at += 1;
        }
    }
    at == extras.len()
}

/// Builds the model's trace: spans parents-first, the derived record, then what the user set.
fn build_trace(finished: FinishedTrace) -> Trace {
    let trace_id = finished.trace_id;
    // Every span carries it: one shared text, not a copy per span (`tr-` and hex need no escaping).
    let request_id_json = JsonText::shared(format!("\"{}\"", trace_id.to_mlflow()));
    let arena = finished.arena;
    let root_scratch = finished.root_scratch;
    let mut span_list = finished.spans;
    let mut extras = finished.extras;
    let (spans_used, extras_used) = (span_list.len(), extras.len());
    if !extras_in_span_order(&span_list, &extras) {
        // Each span's extras together, in the order of the spans, each span's in their own order; extras of
        // spans that were not kept (over the cap) go.
        let position: HashMap<SpanId, usize> = span_list
            .iter()
            .enumerate()
            .map(|(position, span)| (span.span_id, position))
            .collect();
        extras.retain(|(owner, _)| position.contains_key(owner));
        extras.sort_by_key(|(owner, _)| position.get(owner).copied());
    }
    let (shared_arena, shared_scratch) =
        (SharedBuffer::new(&arena), SharedBuffer::new(&root_scratch));
    let resources = (&shared_arena, &shared_scratch);
    let mut remaining = extras.drain(..);
    let mut spans: Vec<Span> = span_list
        .drain(..)
        .map(|data| {
            let own = remaining
                .as_slice()
                .iter()
                .take_while(|(owner, _)| *owner == data.span_id)
                .count();
            let own = remaining.by_ref().take(own).map(|(_, extra)| extra);
            data.into_span(trace_id, &request_id_json, resources, own)
        })
        .collect();
    drop(remaining);
    drop((shared_arena, shared_scratch));
    crate::pool::recycle_span_list(span_list, spans_used);
    crate::pool::recycle_extras_list(extras, extras_used);
    crate::pool::recycle_arena(arena);
    crate::pool::recycle_arena(root_scratch);
    spans.sort_by_key(|span| (span.parent_id.is_some(), span.start_time_unix_nano));
    if let Some(reason) = &finished.forced_error {
        if let Some(root) = spans.iter_mut().find(|span| span.is_root()) {
            if root.status.code != SpanStatusCode::Error {
                root.status = mlflow_tracing_core::SpanStatus::error(reason.clone());
            }
        }
    }
    let location =
        TraceLocation::experiment(finished.experiment_id.unwrap_or_else(|| "0".to_owned()));
    let mut info = TraceInfo::from_spans(trace_id, location, &spans);
    if finished.forced_error.is_some() {
        info.state = TraceState::Error;
    }
    for (key, value) in source_metadata() {
        info.trace_metadata
            .entry((*key).to_owned())
            .or_insert_with(|| value.clone());
    }
    let updates = finished.updates;
    info.tags.extend(updates.tags);
    info.trace_metadata.extend(updates.metadata);
    info.client_request_id = updates.client_request_id;
    if updates.request_preview.is_some() {
        info.request_preview = updates.request_preview;
    }
    if updates.response_preview.is_some() {
        info.response_preview = updates.response_preview;
    }
    Trace {
        info,
        data: TraceData { spans },
    }
}

/// `mlflow.source.name`, `mlflow.source.type` and `mlflow.user`, as the Python client records them.
fn source_metadata() -> &'static [(&'static str, String)] {
    static SOURCE: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let program = std::env::current_exe()
            .ok()
            .and_then(|path| {
                path.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_default();
        [
            (keys::META_SOURCE_NAME, program),
            (keys::META_SOURCE_TYPE, "LOCAL".to_owned()),
            ("mlflow.user", user),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect()
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use mlflow_tracing_core::TraceId;

    use super::*;
    use crate::arena::PayloadText;
    use crate::trace_state::TraceUpdates;

    fn finished(spans: &[SpanId], extras: &[(SpanId, &'static str)]) -> FinishedTrace {
        let root = spans[0];
        let spans = spans
            .iter()
            .map(|&span_id| {
                let parent = (span_id != root).then_some(root);
                let mut data = SpanData::new(
                    span_id,
                    parent,
                    Cow::Borrowed("step"),
                    Cow::Borrowed("TOOL"),
                    1_000,
                );
                data.end_at(data.start_ns + 5);
                data
            })
            .collect();
        let extras = extras
            .iter()
            .map(|&(owner, json)| {
                (
                    owner,
                    Extra::Attribute(Cow::Borrowed("n"), PayloadText::Static(json)),
                )
            })
            .collect();
        FinishedTrace {
            trace_id: TraceId([7; 16]),
            experiment_id: None,
            spans,
            arena: Vec::new(),
            root_scratch: Vec::new(),
            extras,
            updates: TraceUpdates::default(),
            forced_error: None,
        }
    }

    #[test]
    fn extras_are_in_span_order_only_when_each_span_has_one_run_at_its_place() {
        let (a, b, c) = (SpanId([1; 8]), SpanId([2; 8]), SpanId([3; 8]));
        let order = |extras: &[(SpanId, &'static str)]| {
            let trace = finished(&[a, b], extras);
            extras_in_span_order(&trace.spans, &trace.extras)
        };
        assert!(order(&[]));
        assert!(order(&[(a, "1"), (a, "2"), (b, "3")]));
        assert!(order(&[(b, "3")]));
        assert!(!order(&[(b, "3"), (a, "1")]));
        assert!(!order(&[(a, "1"), (b, "3"), (a, "2")]));
        assert!(!order(&[(c, "4")]));
    }

    #[test]
    fn extras_reach_their_spans_in_order_or_not() {
        let (a, b) = (SpanId([1; 8]), SpanId([2; 8]));
        let attribute = |trace: &Trace, span_id: SpanId| {
            let span = trace
                .data
                .spans
                .iter()
                .find(|span| span.span_id == span_id)
                .expect("span");
            span.attributes
                .get("n")
                .map(|json| json.as_str().to_owned())
        };
        // In order: a's two values (the later wins), then b's. Out of order: the same extras, b's first and
        // one of a's after it, as changes applied at completion arrive, and one of a span that was not kept.
        let c = SpanId([3; 8]);
        let in_order = build_trace(finished(&[a, b], &[(a, "1"), (a, "2"), (b, "3")]));
        let out_of_order =
            build_trace(finished(&[a, b], &[(a, "1"), (c, "4"), (b, "3"), (a, "2")]));
        for trace in [&in_order, &out_of_order] {
            assert_eq!(attribute(trace, a).as_deref(), Some("2"));
            assert_eq!(attribute(trace, b).as_deref(), Some("3"));
        }
    }
}

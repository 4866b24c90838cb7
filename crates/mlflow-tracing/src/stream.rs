//! Tracing producers of chunks: iterators and streams (MLflow 3.x generator semantics).
//!
//! The span opens when the wrapper is made and stays open while the items are produced; the work done to
//! produce each item nests under it. Each item becomes an event `mlflow.chunk.item.<i>` whose attribute
//! `mlflow.chunk.value` is the item's JSON, and the span's outputs are the list of items. The span ends when
//! the producer is exhausted or the wrapper is dropped; a panic while producing marks it ERROR.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures_core::Stream;
use mlflow_tracing_core::{SpanEvent, keys};
use serde::Serialize;
use serde_json::Value;

use crate::arena::PayloadText;
use crate::fluent::SpanBuilder;
use crate::live::LiveSpan;
use crate::span_data::SpanMutation;

/// Collects chunk events and the outputs list.
#[derive(Debug)]
struct Chunks {
    span: LiveSpan,
    count: usize,
    outputs: String,
    ended: bool,
}

impl Chunks {
    fn new(span: LiveSpan) -> Self {
        Chunks {
            span,
            count: 0,
            outputs: String::from("["),
            ended: false,
        }
    }

    fn record<T: Serialize>(&mut self, item: &T) {
        if !self.span.is_recording() {
            return;
        }
        let json = crate::record::encode(item);
        if self.count > 0 {
            self.outputs.push(',');
        }
        self.outputs.push_str(&json);
        let attributes = [(keys::CHUNK_VALUE.to_owned(), Value::String(json))]
            .into_iter()
            .collect();
        let name = format!("{}{}", keys::CHUNK_EVENT_PREFIX, self.count);
        self.span.mutate(SpanMutation::Event(Box::new(SpanEvent {
            name,
            time_unix_nano: crate::clock::now_ns(),
            attributes,
        })));
        self.count += 1;
    }

    fn finish(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.outputs.push(']');
        self.span
            .mutate(SpanMutation::Outputs(PayloadText::Owned(std::mem::take(
                &mut self.outputs,
            ))));
        self.span.end();
    }

    fn fail(&mut self, payload: &(dyn std::any::Any + Send)) {
        for mutation in crate::exception::error_mutations(crate::exception::panic_parts(payload)) {
            self.span.mutate(mutation);
        }
        self.finish();
    }

    fn produce<R>(&mut self, produce: impl FnOnce() -> R) -> R {
        let attached = self.span.context().attach();
        let produced = catch_unwind(AssertUnwindSafe(produce));
        drop(attached);
        produced.unwrap_or_else(|payload| {
            self.fail(&*payload);
            resume_unwind(payload)
        })
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        self.finish();
    }
}

/// An iterator whose items are recorded on a span; see the module docs.
#[derive(Debug)]
pub struct TracedIter<I> {
    inner: I,
    chunks: Chunks,
}

/// Traces `iter` in a span described by `span` (a child of the current span).
///
/// ```
/// use mlflow_tracing::{span, trace_iter};
///
/// let tokens: Vec<_> = trace_iter(span("generate"), ["Hello", " world"]).collect();
/// assert_eq!(tokens, ["Hello", " world"]);
/// ```
pub fn trace_iter<I>(span: SpanBuilder, iter: I) -> TracedIter<I::IntoIter>
where
    I: IntoIterator,
    I::Item: Serialize,
{
    TracedIter {
        inner: iter.into_iter(),
        chunks: Chunks::new(span.start_detached(None)),
    }
}

impl<I> Iterator for TracedIter<I>
where
    I: Iterator,
    I::Item: Serialize,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let inner = &mut self.inner;
        let item = self.chunks.produce(|| inner.next());
        match &item {
            Some(value) => self.chunks.record(value),
            None => self.chunks.finish(),
        }
        item
    }
}

/// A stream whose items are recorded on a span; see the module docs.
pub struct TracedStream<S> {
    inner: Pin<Box<S>>,
    chunks: Chunks,
}

impl<S> std::fmt::Debug for TracedStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedStream")
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

/// Traces `stream` in a span described by `span` (a child of the current span). Each poll runs with the span
/// current, so work done to produce the items nests under it.
pub fn trace_stream<S>(span: SpanBuilder, stream: S) -> TracedStream<S>
where
    S: Stream,
    S::Item: Serialize,
{
    TracedStream {
        inner: Box::pin(stream),
        chunks: Chunks::new(span.start_detached(None)),
    }
}

impl<S> Stream for TracedStream<S>
where
    S: Stream,
    S::Item: Serialize,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        let polled = this.chunks.produce(|| inner.as_mut().poll_next(cx));
        match &polled {
            Poll::Ready(Some(item)) => this.chunks.record(item),
            Poll::Ready(None) => this.chunks.finish(),
            Poll::Pending => {}
        }
        polled
    }
}

//! Which span is current, per thread, and how to carry it to other threads and tasks.
//!
//! Each thread has a stack of frames. `#[trace]` and [`crate::start_span`] push a frame holding the span's
//! data and pop it when the guard drops, so a span on the fast path costs no allocation and no lock until it
//! ends. A *remote* frame holds only a trace and a span id: it makes a span that lives elsewhere (a span of
//! the spawning thread, an async span between polls) the parent of new spans on this thread.
//!
//! ```text
//!   thread A stack: [root (data)] [child (data)]
//!        │ Context::current() captures (trace, child id)
//!        ▼
//!   thread B stack: [child (remote)] [grandchild (data)]   ← grandchild.parent = child
//! ```
//!
//! The rule: spans nest under the current span of *their* thread or task. A new thread or task starts with
//! no current span, so its spans start new traces, unless you carry the context there with
//! [`Context::wrap`], [`Context::wrap_future`], [`spawn`] or [`FutureExt::in_current_trace`].

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::Arc;

use mlflow_tracing_core::SpanId;

use crate::span_data::{Extra, SpanData};
use crate::trace_state::OpenTrace;

pub(crate) struct Frame {
    pub(crate) trace: FrameTrace,
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: Option<SpanId>,
    /// `Some` when this frame owns the span's data (a guard on this thread); `None` for a remote frame.
    pub(crate) data: Option<SpanData>,
    /// Length of the thread's payload scratch when the frame was pushed (see [`crate::arena`]).
    pub(crate) arena_mark: u32,
    /// Length of the thread's extras list when the frame was pushed.
    pub(crate) extras_mark: u32,
    /// Whether the root span of this frame's trace is on this thread's stack (this frame or below it).
    pub(crate) root_here: bool,
}

/// The trace of a frame.
pub(crate) enum FrameTrace {
    /// A span of an unsampled trace: its children are not recorded either.
    Unsampled,
    Own(Arc<OpenTrace>),
    /// The trace of the frame at this index, further down the stack, which holds it as [`FrameTrace::Own`].
    /// A span pushed on its parent shares the parent's trace this way: pushing and popping it then touches
    /// no reference count, whose atomic update waits for all the span's stores to reach the cache.
    Below(u32),
}

impl Frame {
    /// The trace this frame holds itself.
    pub(crate) fn own_trace(&self) -> Option<&Arc<OpenTrace>> {
        match &self.trace {
            FrameTrace::Own(trace) => Some(trace),
            FrameTrace::Unsampled | FrameTrace::Below(_) => None,
        }
    }
}

impl FrameTrace {
    /// The trace, where `below` is the part of the stack under its frame. On the frame's `trace` field
    /// alone, so that the frame's span can be borrowed beside it.
    pub(crate) fn resolve<'a>(&'a self, below: &'a [Frame]) -> Option<&'a Arc<OpenTrace>> {
        match self {
            FrameTrace::Own(trace) => Some(trace),
            FrameTrace::Below(owner) => below.get(*owner as usize).and_then(Frame::own_trace),
            FrameTrace::Unsampled => None,
        }
    }
}

/// The trace of the frame at `index`.
pub(crate) fn trace_at(stack: &[Frame], index: usize) -> Option<&Arc<OpenTrace>> {
    stack.get(index)?.trace.resolve(&stack[..index])
}

/// The trace of the top frame.
pub(crate) fn top_trace(stack: &[Frame]) -> Option<&Arc<OpenTrace>> {
    trace_at(stack, stack.len().checked_sub(1)?)
}

/// The position of a frame of `span_id` in `trace`, the highest if several (a span made current again
/// on its own thread has a remote frame above its own).
pub(crate) fn position_of(
    stack: &[Frame],
    span_id: SpanId,
    trace: &Arc<OpenTrace>,
) -> Option<usize> {
    find_frame(stack, span_id, trace, |_| true)
}

/// The position of the frame holding the data of `span_id` in `trace`.
pub(crate) fn data_position_of(
    stack: &[Frame],
    span_id: SpanId,
    trace: &Arc<OpenTrace>,
) -> Option<usize> {
    find_frame(stack, span_id, trace, |frame| frame.data.is_some())
}

fn find_frame(
    stack: &[Frame],
    span_id: SpanId,
    trace: &Arc<OpenTrace>,
    wanted: impl Fn(&Frame) -> bool,
) -> Option<usize> {
    (0..stack.len()).rev().find(|&index| {
        let frame = &stack[index];
        frame.span_id == span_id
            && wanted(frame)
            && trace_at(stack, index).is_some_and(|owner| Arc::ptr_eq(owner, trace))
    })
}

/// Removes the frame at `position`; the indices of the frames above it move down with them.
///
/// A frame sharing the removed frame's trace is pushed on it, or on a frame pushed on it, so when there is
/// one, the frame now at `position` is one: it takes the trace over, at the index the others point to.
pub(crate) fn remove_frame(stack: &mut Vec<Frame>, position: usize) -> Frame {
    let mut removed = stack.remove(position);
    let Ok(removed_index) = u32::try_from(position) else {
        return removed;
    };
    if let Some(heir) = stack.get_mut(position) {
        if matches!(heir.trace, FrameTrace::Below(owner) if owner == removed_index) {
            heir.trace = std::mem::replace(&mut removed.trace, FrameTrace::Unsampled);
        }
    }
    for frame in &mut stack[position..] {
        if let FrameTrace::Below(owner) = &mut frame.trace {
            if *owner > removed_index {
                *owner -= 1;
            }
        }
    }
    removed
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    /// Attributes, events and status messages of the spans on this thread's stack, in the order set.
    static EXTRAS: RefCell<Vec<(SpanId, Extra)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `work` on this thread's extras list.
#[inline]
pub(crate) fn with_extras<R>(work: impl FnOnce(&mut Vec<(SpanId, Extra)>) -> R) -> Option<R> {
    EXTRAS
        .try_with(|extras| {
            extras
                .try_borrow_mut()
                .ok()
                .map(|mut extras| work(&mut extras))
        })
        .ok()
        .flatten()
}

/// Moves the extras of `span_id` off this thread's list onto `into`, oldest first, each through `prepare`.
/// With `from_mark` (the span is the top of the stack) they are all the entries from its mark on, moved
/// without an intermediate list.
#[inline]
pub(crate) fn move_extras(
    span_id: SpanId,
    mark: u32,
    from_mark: bool,
    into: &mut Vec<(SpanId, Extra)>,
    mut prepare: impl FnMut(&mut Extra),
) {
    let mut moved = |(owner, mut extra): (SpanId, Extra)| {
        prepare(&mut extra);
        (owner, extra)
    };
    let _ = with_extras(|extras| {
        let mark = mark as usize;
        if extras.is_empty() || (from_mark && mark >= extras.len()) {
            return;
        }
        if from_mark {
            into.extend(extras.drain(mark..).map(&mut moved));
        } else {
            let (taken, kept): (Vec<_>, Vec<_>) =
                extras.drain(..).partition(|(owner, _)| *owner == span_id);
            *extras = kept;
            into.extend(taken.into_iter().map(&mut moved));
        }
    });
}

/// The length of this thread's extras list.
#[inline]
pub(crate) fn extras_mark() -> u32 {
    with_extras(|extras| u32::try_from(extras.len()).unwrap_or(u32::MAX)).unwrap_or(u32::MAX)
}

/// Runs `work` on this thread's stack. `None` while the thread is being torn down or if the stack is borrowed
/// already (no user code ever runs inside, so that only happens from a TLS destructor).
#[inline]
pub(crate) fn with_stack<R>(work: impl FnOnce(&mut Vec<Frame>) -> R) -> Option<R> {
    STACK
        .try_with(|stack| {
            stack
                .try_borrow_mut()
                .ok()
                .map(|mut stack| work(&mut stack))
        })
        .ok()
        .flatten()
}

/// The parent a new span on this thread gets.
pub(crate) enum Parent {
    /// No current span: the new span is a root.
    None,
    /// The current span belongs to an unsampled trace.
    Unsampled,
    Span(Arc<OpenTrace>, SpanId),
}

/// The current span of this thread, skipping frames of traces that already completed (timed out).
pub(crate) fn current_parent(stack: &[Frame]) -> Parent {
    match stack_parent(stack) {
        StackParent::None => Parent::None,
        StackParent::Unsampled => Parent::Unsampled,
        StackParent::Span { owner, span_id, .. } => {
            match stack.get(owner as usize).and_then(Frame::own_trace) {
                Some(trace) => Parent::Span(Arc::clone(trace), span_id),
                None => Parent::None,
            }
        }
    }
}

/// The parent of a span pushed on this stack now.
pub(crate) enum StackParent {
    /// No current span, or one of a trace that already completed (timed out): the new span is a root.
    None,
    Unsampled,
    Span {
        /// The index of the frame holding the trace.
        owner: u32,
        span_id: SpanId,
        /// Whether the root of the trace is on this stack.
        root_here: bool,
    },
}

/// What a span pushed on this stack now nests under: the top frame, if its trace is still open.
#[inline]
pub(crate) fn stack_parent(stack: &[Frame]) -> StackParent {
    let Some(top) = stack.len().checked_sub(1) else {
        return StackParent::None;
    };
    let frame = &stack[top];
    let owner = match frame.trace {
        FrameTrace::Unsampled => return StackParent::Unsampled,
        FrameTrace::Below(owner) => owner,
        FrameTrace::Own(_) => match u32::try_from(top) {
            Ok(top) => top,
            Err(_) => return StackParent::None,
        },
    };
    match stack.get(owner as usize).and_then(Frame::own_trace) {
        Some(trace) if !trace.is_completed() => StackParent::Span {
            owner,
            span_id: frame.span_id,
            root_here: frame.root_here,
        },
        _ => StackParent::None,
    }
}

/// Removes the frame of `span_id` (normally the top one) and returns it, with whether it was the top one
/// and whether the stack is now empty.
#[inline]
pub(crate) fn pop_frame(span_id: SpanId) -> Option<(Frame, bool, bool)> {
    with_stack(|stack| {
        let position = stack.iter().rposition(|frame| frame.span_id == span_id)?;
        let was_top = position + 1 == stack.len();
        let frame = if was_top {
            stack.pop()?
        } else {
            remove_frame(stack, position)
        };
        Some((frame, was_top, stack.is_empty()))
    })
    .flatten()
}

/// The span that is current at the point of capture, to be made current elsewhere.
///
/// ```
/// use mlflow_tracing::{Context, start_span};
///
/// let _parent = start_span("parent");
/// let context = Context::current();
/// std::thread::spawn(context.wrap(|| {
///     let _child = start_span("child"); // nests under "parent"
/// }))
/// .join()
/// .unwrap();
/// ```
#[derive(Clone, Default)]
pub struct Context {
    current: Option<(Option<Arc<OpenTrace>>, SpanId)>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.current {
            None => f.write_str("Context(none)"),
            Some((None, span_id)) => write!(f, "Context(unsampled {span_id})"),
            Some((Some(trace), span_id)) => {
                write!(f, "Context({} {span_id})", trace.trace_id.to_mlflow())
            }
        }
    }
}

impl Context {
    /// Captures this thread's current span (or nothing, when there is none).
    pub fn current() -> Context {
        let current = with_stack(|stack| {
            let frame = stack.last()?;
            Some((top_trace(stack).cloned(), frame.span_id))
        })
        .flatten();
        Context { current }
    }

    pub(crate) fn of_span(trace: Option<Arc<OpenTrace>>, span_id: SpanId) -> Context {
        Context {
            current: Some((trace, span_id)),
        }
    }

    /// Makes the captured span current on this thread until the guard drops.
    pub fn attach(&self) -> ContextGuard {
        let Some((trace, span_id)) = &self.current else {
            return ContextGuard {
                span_id: None,
                _not_send: PhantomData,
            };
        };
        let pushed = with_stack(|stack| {
            stack.push(Frame {
                trace: trace.clone().map_or(FrameTrace::Unsampled, FrameTrace::Own),
                span_id: *span_id,
                parent_id: None,
                data: None,
                arena_mark: u32::MAX,
                extras_mark: u32::MAX,
                root_here: false,
            });
        });
        ContextGuard {
            span_id: pushed.map(|()| *span_id),
            _not_send: PhantomData,
        }
    }

    /// Wraps a closure so that it runs with this context attached: for `std::thread::spawn`,
    /// `std::thread::scope`'s `spawn`, or a thread pool's `spawn`.
    pub fn wrap<F, R>(self, work: F) -> impl FnOnce() -> R + Send
    where
        F: FnOnce() -> R + Send,
    {
        move || {
            let _attached = self.attach();
            work()
        }
    }

    /// Wraps a future so that every poll runs with this context attached: for `tokio::spawn` and friends.
    pub async fn wrap_future<F: Future>(self, future: F) -> F::Output {
        let mut future = pin!(future);
        std::future::poll_fn(|cx| {
            let _attached = self.attach();
            future.as_mut().poll(cx)
        })
        .await
    }
}

/// Keeps a [`Context`] attached; detaches it on drop. Not `Send`: it belongs to the thread it was made on.
#[derive(Debug)]
pub struct ContextGuard {
    span_id: Option<SpanId>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if let Some(span_id) = self.span_id {
            let _ = with_stack(|stack| {
                if let Some(position) = stack
                    .iter()
                    .rposition(|frame| frame.span_id == span_id && frame.data.is_none())
                {
                    remove_frame(stack, position);
                }
            });
        }
    }
}

/// `std::thread::spawn` that carries the current span into the new thread.
pub fn spawn<F, T>(work: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(Context::current().wrap(work))
}

/// Carries the current span into a future that will run elsewhere (`tokio::spawn`, `JoinSet::spawn`).
pub trait FutureExt: Future + Sized {
    /// Attaches the span current *now* to every poll of this future.
    fn in_current_trace(self) -> impl Future<Output = Self::Output> {
        Context::current().wrap_future(self)
    }
}

impl<F: Future> FutureExt for F {}

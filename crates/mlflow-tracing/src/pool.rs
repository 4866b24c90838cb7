//! Recycled trace buffers.
//!
//! A trace's span list, extras list and payload arena are filled on the application's thread and emptied on
//! the export thread. Freeing them there and allocating new ones here makes the two threads fight over the
//! allocator (glibc serializes cross-thread frees on the arena's lock), so the export thread hands the
//! emptied buffers back instead, and new traces reuse them.
//!
//! A recycled buffer's memory was last read on the export thread's core. Each of its cache lines that the
//! next trace writes must first be taken back from that core, and when those writes are spread through
//! recording, each can stall the application's thread: a later load that needs a store still waiting for
//! its line must wait too (a struct moved into a list, a payload read back). So a buffer taken from the
//! pool has as much of it as the last trace used written at once, up to [`MAX_WARM_BYTES`]: one sweep
//! whose line transfers overlap, before recording starts.
//!
//! When every buffer is in flight (the export thread is behind), a new one starts at the capacity the last
//! recycled one had: a trace about as large as the last one then fills it without growing it, which would
//! copy it several times and touch fresh pages on the application's thread.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use mlflow_tracing_core::SpanId;

use crate::span_data::{Extra, SpanData};

/// Buffers kept for reuse, per kind.
const MAX_POOLED: usize = 64;
/// Buffers that grew past this many bytes are freed instead of kept.
const MAX_POOLED_BYTES: usize = 1024 * 1024;
/// A new buffer starts at most this large, whatever the last one grew to.
const MAX_STARTING_BYTES: usize = 64 * 1024;
/// At most this much of a recycled buffer is written before it is handed out.
const MAX_WARM_BYTES: usize = 64 * 1024;

/// Emptied buffers of one kind, each with how many items it held, and the capacity a new one starts with.
struct Pool<T> {
    free: Mutex<Vec<(Vec<T>, usize)>>,
    starting_capacity: AtomicUsize,
}

impl<T> Pool<T> {
    const fn new() -> Self {
        Pool {
            free: Mutex::new(Vec::new()),
            starting_capacity: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Vec<T> {
        let recycled = lock(&self.free).pop();
        match recycled {
            Some((mut buffer, used)) => {
                warm(&mut buffer, used);
                buffer
            }
            None => Vec::with_capacity(self.starting_capacity.load(Ordering::Relaxed)),
        }
    }

    /// Keeps `buffer`, which held `used` items, for reuse.
    fn give_back(&self, mut buffer: Vec<T>, used: usize) {
        buffer.clear();
        let item_bytes = std::mem::size_of::<T>().max(1);
        let capacity = buffer.capacity();
        self.starting_capacity.store(
            capacity.min(MAX_STARTING_BYTES / item_bytes),
            Ordering::Relaxed,
        );
        if capacity > 0 && capacity * item_bytes <= MAX_POOLED_BYTES {
            let mut free = lock(&self.free);
            if free.len() < MAX_POOLED {
                free.push((buffer, used.min(capacity)));
            }
        }
    }
}

/// Writes the first `items` slots of an empty buffer, at most [`MAX_WARM_BYTES`] of them.
fn warm<T>(buffer: &mut Vec<T>, items: usize) {
    let items = items.min(MAX_WARM_BYTES / std::mem::size_of::<T>().max(1));
    for slot in buffer.spare_capacity_mut().iter_mut().take(items) {
        *slot = MaybeUninit::zeroed();
    }
}

static SPAN_LISTS: Pool<SpanData> = Pool::new();
static EXTRAS_LISTS: Pool<(SpanId, Extra)> = Pool::new();
static ARENAS: Pool<u8> = Pool::new();

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An empty span list.
pub(crate) fn span_list() -> Vec<SpanData> {
    SPAN_LISTS.take()
}

/// An empty list of span extras.
pub(crate) fn extras_list() -> Vec<(SpanId, Extra)> {
    EXTRAS_LISTS.take()
}

/// An empty payload arena.
pub(crate) fn arena() -> Vec<u8> {
    ARENAS.take()
}

/// Gives back a span list that held `used` spans, since taken.
pub(crate) fn recycle_span_list(spans: Vec<SpanData>, used: usize) {
    SPAN_LISTS.give_back(spans, used);
}

/// Gives back an extras list that held `used` extras, since taken.
pub(crate) fn recycle_extras_list(extras: Vec<(SpanId, Extra)>, used: usize) {
    EXTRAS_LISTS.give_back(extras, used);
}

/// Gives back a payload arena that was read.
pub(crate) fn recycle_arena(arena: Vec<u8>) {
    let used = arena.len();
    ARENAS.give_back(arena, used);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_buffer_starts_as_large_as_the_last_one_given_back() {
        let pool: Pool<u64> = Pool::new();
        assert_eq!(pool.take().capacity(), 0);
        let mut grown = pool.take();
        grown.extend(0..1000);
        let grown_capacity = grown.capacity();
        pool.give_back(grown, 1000);
        let reused = pool.take();
        assert_eq!(reused.capacity(), grown_capacity);
        assert!(reused.is_empty());
        // The pool is empty now: a new buffer starts at the recycled one's capacity.
        assert_eq!(pool.take().capacity(), grown_capacity);
    }

    #[test]
    fn a_huge_buffer_is_freed_and_new_ones_start_capped() {
        let pool: Pool<u8> = Pool::new();
        let mut huge = pool.take();
        huge.resize(MAX_POOLED_BYTES + 1, 0);
        pool.give_back(huge, MAX_POOLED_BYTES + 1);
        assert!(lock(&pool.free).is_empty());
        assert_eq!(pool.take().capacity(), MAX_STARTING_BYTES);
    }
}

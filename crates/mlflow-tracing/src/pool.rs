//! Recycled trace buffers.
//!
//! A trace's span list and payload arena are filled on the application's thread and emptied on the export
//! thread. Freeing them there and allocating new ones here makes the two threads fight over the allocator
//! (glibc serializes cross-thread frees on the arena's lock), so the export thread hands the emptied buffers
//! back instead, and new traces reuse them.

use std::sync::{Mutex, MutexGuard};

use crate::span_data::SpanData;

/// Buffers kept for reuse, per kind.
const MAX_POOLED: usize = 64;
/// Buffers that grew past this many bytes are freed instead of kept.
const MAX_POOLED_BYTES: usize = 1024 * 1024;

static SPAN_LISTS: Mutex<Vec<Vec<SpanData>>> = Mutex::new(Vec::new());
static ARENAS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An empty span list, recycled when one is available.
pub(crate) fn span_list() -> Vec<SpanData> {
    lock(&SPAN_LISTS).pop().unwrap_or_default()
}

/// An empty payload arena, recycled when one is available.
pub(crate) fn arena() -> Vec<u8> {
    lock(&ARENAS).pop().unwrap_or_default()
}

/// Gives back a span list whose spans were taken.
pub(crate) fn recycle_span_list(mut spans: Vec<SpanData>) {
    spans.clear();
    let bytes = spans.capacity() * std::mem::size_of::<SpanData>();
    if bytes > 0 && bytes <= MAX_POOLED_BYTES {
        let mut pool = lock(&SPAN_LISTS);
        if pool.len() < MAX_POOLED {
            pool.push(spans);
        }
    }
}

/// Gives back a payload arena that was read.
pub(crate) fn recycle_arena(mut arena: Vec<u8>) {
    arena.clear();
    if arena.capacity() > 0 && arena.capacity() <= MAX_POOLED_BYTES {
        let mut pool = lock(&ARENAS);
        if pool.len() < MAX_POOLED {
            pool.push(arena);
        }
    }
}

//! Where finished traces go.
//!
//! The contract of an [`Exporter`]:
//! - `export` receives a batch of finished traces; it is never called concurrently (one export thread owns
//!   the exporter) and must not block forever: bound every network call with a timeout.
//! - Retries are the exporter's business; an error returned is logged and the batch is dropped.
//! - `force_flush` and `shutdown` are called from the same thread when the application asks for them.

use std::sync::{Arc, Mutex};

use mlflow_tracing_core::Trace;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[error("export failed: {message}")]
pub struct ExportError {
    message: String,
}

impl ExportError {
    /// An error with a message saying what failed.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Receives finished traces on the export thread. See the module docs for the contract.
pub trait Exporter: Send + 'static {
    /// Exports a batch of finished traces.
    fn export(&mut self, batch: &[Arc<Trace>]) -> Result<(), ExportError>;

    /// Sends anything buffered.
    fn force_flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    /// Releases resources; no export follows.
    fn shutdown(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
}

/// Keeps finished traces in memory, for tests and examples. Clones share the same storage.
#[derive(Debug, Clone, Default)]
pub struct InMemoryExporter {
    traces: Arc<Mutex<Vec<Arc<Trace>>>>,
}

impl InMemoryExporter {
    /// An empty exporter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The traces exported so far, oldest first.
    pub fn traces(&self) -> Vec<Arc<Trace>> {
        self.lock().clone()
    }

    /// Takes the traces exported so far, leaving none.
    pub fn take(&self) -> Vec<Arc<Trace>> {
        std::mem::take(&mut *self.lock())
    }

    /// The exported trace with this MLflow trace id.
    pub fn find(&self, trace_id: &str) -> Option<Arc<Trace>> {
        self.lock()
            .iter()
            .find(|trace| trace.info.trace_id == trace_id)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Trace>>> {
        self.traces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Exporter for InMemoryExporter {
    fn export(&mut self, batch: &[Arc<Trace>]) -> Result<(), ExportError> {
        self.lock().extend(batch.iter().cloned());
        Ok(())
    }
}

/// Writes each finished trace to standard output as `Trace.to_json()`, one per line.
#[derive(Debug, Default)]
pub struct StdoutExporter;

impl Exporter for StdoutExporter {
    fn export(&mut self, batch: &[Arc<Trace>]) -> Result<(), ExportError> {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        for trace in batch {
            writeln!(stdout, "{}", trace.to_json())
                .map_err(|error| ExportError::new(error.to_string()))?;
        }
        Ok(())
    }
}

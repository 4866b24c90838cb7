//! The `mlflow-tracing` command: `mlflow-tracing server` runs the tracking server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use mlflow_tracing_server::store::sqlite::SqliteStore;
use mlflow_tracing_server::{DEFAULT_BODY_LIMIT, router};

/// Requests are decoded on the runtime's workers and their rows freed by the store's writer thread; with the
/// system allocator, allocating and freeing took 28% of the workers' time under ingest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mlflow-tracing",
    version,
    about = "MLflow Tracing, rebuilt in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a server listens and stores, as `mlflow server` names it.
#[derive(clap::Args)]
struct Listen {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Where traces are stored: `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`.
    #[arg(long, default_value = "sqlite:///mlruns.db")]
    backend_store_uri: String,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the tracking server: MLflow's REST API and OTLP ingest on an embedded SQLite store.
    Server {
        #[command(flatten)]
        listen: Listen,
        /// Accepted for compatibility with `mlflow server`; spans are stored in the backend store.
        #[arg(long)]
        default_artifact_root: Option<String>,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = DEFAULT_BODY_LIMIT)]
        max_body_bytes: usize,
        /// Threads that serve requests (`mlflow server` starts this many worker processes). Default: one
        /// per core but one, which the store's writer thread keeps busy under ingest; at least one.
        #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        workers: Option<usize>,
    },
    /// Runs the server, sends it the traces of a set of sample agents (exported over HTTP by the SDK), prints
    /// where to look, and keeps serving.
    Demo {
        #[command(flatten)]
        listen: Listen,
        /// Exit after the agents ran instead of serving on.
        #[arg(long)]
        exit: bool,
    },
    /// Searches, reads and deletes traces on a tracking server (ours or MLflow's).
    Traces {
        /// The server; defaults to MLFLOW_TRACKING_URI, else http://127.0.0.1:5000.
        #[arg(long, global = true)]
        tracking_uri: Option<String>,
        #[command(subcommand)]
        action: TracesAction,
    },
    /// Measures OTLP ingest: concurrent clients posting traces, acknowledged spans per second, latency and
    /// server memory. Starts its own server unless --target is given.
    Loadgen {
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Seconds of load per server.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Spans per trace.
        #[arg(long, default_value_t = 10)]
        spans_per_trace: usize,
        /// Traces per request: 1 as MLflow's client exports, ~50 as an OpenTelemetry batch processor does.
        #[arg(long, default_value_t = 1)]
        traces_per_request: usize,
        /// A running server to load instead of starting one (http://host:port).
        #[arg(long)]
        target: Option<String>,
        /// The `mlflow` executable: also load a real `mlflow server`, for the ratio.
        #[arg(long)]
        mlflow: Option<PathBuf>,
    },
    /// Measures reads at scale: fills a fresh server with small traces and one large trace, then times search
    /// by tag and status, batchGet of a page, and traces/get of the large trace.
    Searchbench {
        /// Small traces to store.
        #[arg(long, default_value_t = 1_000_000)]
        traces: usize,
        /// Spans of the large trace.
        #[arg(long, default_value_t = 10_000)]
        large_trace_spans: usize,
        /// Timed repetitions of each request.
        #[arg(long, default_value_t = 200)]
        repetitions: usize,
    },
}

#[derive(Subcommand)]
enum TracesAction {
    /// Lists the traces of an experiment that match a filter (MLflow's search syntax).
    Search {
        #[arg(long)]
        experiment_id: Option<String>,
        #[arg(long)]
        experiment_name: Option<String>,
        /// e.g. "status = 'ERROR' AND tags.env = 'prod'"
        #[arg(long, default_value = "")]
        filter: String,
        /// e.g. "timestamp_ms ASC"; repeatable.
        #[arg(long)]
        order_by: Vec<String>,
        #[arg(long, default_value_t = 100)]
        max_results: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows one trace as a span tree, or as JSON.
    Get {
        trace_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Deletes traces of an experiment.
    Delete {
        #[arg(long)]
        experiment_id: String,
        #[arg(required = true)]
        trace_ids: Vec<String>,
    },
}

fn run_traces(tracking_uri: Option<String>, action: TracesAction) -> anyhow::Result<()> {
    use mlflow_tracing_server::cli::{Output, TracesCli};
    let uri = tracking_uri
        .or_else(|| {
            std::env::var("MLFLOW_TRACKING_URI")
                .ok()
                .filter(|uri| uri.starts_with("http"))
        })
        .unwrap_or_else(|| "http://127.0.0.1:5000".to_owned());
    let cli = TracesCli::new(&uri);
    let output = |json: bool| if json { Output::Json } else { Output::Table };
    match action {
        TracesAction::Search {
            experiment_id,
            experiment_name,
            filter,
            order_by,
            max_results,
            json,
        } => {
            let experiment =
                cli.experiment_id(experiment_id.as_deref(), experiment_name.as_deref())?;
            println!(
                "{}",
                cli.search(&experiment, &filter, &order_by, max_results, output(json))?
            );
        }
        TracesAction::Get { trace_id, json } => {
            println!("{}", cli.get_trace(&trace_id, output(json))?)
        }
        TracesAction::Delete {
            experiment_id,
            trace_ids,
        } => {
            println!(
                "deleted {} trace(s)",
                cli.delete(&experiment_id, &trace_ids)?
            );
        }
    }
    Ok(())
}

/// The file path of a `sqlite:///…` URI, as SQLAlchemy (and so `mlflow server`) reads it.
fn sqlite_path(uri: &str) -> anyhow::Result<PathBuf> {
    let Some(path) = uri.strip_prefix("sqlite:///") else {
        bail!("unsupported backend store URI {uri:?}: expected sqlite:///<path>");
    };
    if path.is_empty() {
        bail!("the backend store URI {uri:?} names no file");
    }
    Ok(PathBuf::from(path))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    log::info!("shutting down: finishing requests in flight");
}

async fn bind(
    Listen {
        host,
        port,
        backend_store_uri,
    }: &Listen,
) -> anyhow::Result<(tokio::net::TcpListener, SqliteStore, PathBuf)> {
    let path = sqlite_path(backend_store_uri)?;
    let store = SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("invalid address {host}:{port}"))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    Ok((listener, store, path))
}

/// Request threads by default: a core is left to the store's writer thread. On two cores, one request
/// thread instead of two served 3.7% more ingest (`loadgen`, 8 clients, five alternating runs each).
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |cores| cores.get().saturating_sub(1))
        .max(1)
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let workers = match &cli.command {
        Command::Server { workers, .. } => workers.unwrap_or_else(default_workers),
        _ => default_workers(),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server {
            listen,
            default_artifact_root: _,
            max_body_bytes,
            workers: _,
        } => {
            let (listener, store, path) = bind(&listen).await?;
            log::info!(address:% = listener.local_addr()?, store:% = path.display(); "mlflow-tracing server listening; the web UI is at /");
            axum::serve(listener, router(store, max_body_bytes))
                .with_graceful_shutdown(shutdown_signal())
                .await?;
            Ok(())
        }
        Command::Traces {
            tracking_uri,
            action,
        } => tokio::task::spawn_blocking(move || run_traces(tracking_uri, action)).await?,
        Command::Searchbench {
            traces,
            large_trace_spans,
            repetitions,
        } => {
            let options = mlflow_tracing_server::searchbench::SearchBenchOptions {
                traces: traces.max(1000),
                large_trace_spans: large_trace_spans.max(11),
                repetitions: repetitions.max(1),
            };
            tokio::task::spawn_blocking(move || mlflow_tracing_server::searchbench::run(&options))
                .await??;
            Ok(())
        }
        Command::Loadgen {
            clients,
            seconds,
            spans_per_trace,
            traces_per_request,
            target,
            mlflow,
        } => {
            let options = mlflow_tracing_server::loadgen::LoadOptions {
                clients: clients.max(1),
                duration: std::time::Duration::from_secs(seconds.max(1)),
                spans_per_trace: spans_per_trace.max(1),
                traces_per_request: traces_per_request.max(1),
                target,
                mlflow,
            };
            // The load runs on plain threads, off the runtime's.
            tokio::task::spawn_blocking(move || mlflow_tracing_server::loadgen::run(&options))
                .await??;
            Ok(())
        }
        Command::Demo { listen, exit } => {
            let (listener, store, path) = bind(&listen).await?;
            let address = listener.local_addr()?;
            let server = tokio::spawn(async move {
                axum::serve(listener, router(store, DEFAULT_BODY_LIMIT))
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            });
            let client_address = if address.ip().is_unspecified() {
                format!("127.0.0.1:{}", address.port())
            } else {
                address.to_string()
            };
            let tracking_uri = format!("http://{client_address}");
            let traces = mlflow_tracing_server::demo::run_agents(&tracking_uri).await?;
            let experiment = mlflow_tracing_server::demo::DEMO_EXPERIMENT;
            println!(
                "Recorded {traces} demo traces in experiment '{experiment}' ({}).",
                path.display()
            );
            println!("Tracking server: {tracking_uri}");
            println!("Web UI:          {tracking_uri}/#/experiments");
            println!(
                "  read them back:  MLFLOW_TRACKING_URI={tracking_uri} python -c \"import mlflow; \
                 print(mlflow.search_traces(locations=[mlflow.get_experiment_by_name('{experiment}').experiment_id]))\""
            );
            println!(
                "  send your own:   MLFLOW_TRACKING_URI={tracking_uri} cargo run -p mlflow-tracing --example qa_agent"
            );
            if exit {
                server.abort();
                return Ok(());
            }
            println!("Serving until Ctrl-C.");
            server.await??;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_uris_read_like_sqlalchemy() {
        assert_eq!(
            sqlite_path("sqlite:///mlruns.db").unwrap(),
            PathBuf::from("mlruns.db")
        );
        assert_eq!(
            sqlite_path("sqlite:////tmp/x.db").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert!(sqlite_path("postgresql://localhost/db").is_err());
        assert!(sqlite_path("sqlite:///").is_err());
    }

    #[test]
    fn server_workers_default_to_one_per_core_but_one() {
        let workers = |arguments: &[&str]| match Cli::try_parse_from(arguments).unwrap().command {
            Command::Server { workers, .. } => workers,
            _ => unreachable!("parsed as the server command"),
        };
        assert_eq!(
            workers(&["mlflow-tracing", "server", "--workers", "3"]),
            Some(3)
        );
        assert_eq!(workers(&["mlflow-tracing", "server"]), None);
        // At least one thread, and a core left to the writer wherever there is more than one.
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(default_workers(), cores.saturating_sub(1).max(1));
        assert!(default_workers() >= 1);
        assert!(cores == 1 || default_workers() < cores);
        assert!(Cli::try_parse_from(["mlflow-tracing", "server", "--workers", "many"]).is_err());
        assert!(Cli::try_parse_from(["mlflow-tracing", "server", "--workers", "0"]).is_err());
    }
}

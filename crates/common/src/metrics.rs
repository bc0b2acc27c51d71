//! Prometheus metrics of both programs: an HTTP endpoint (`--metrics-addr`, for a
//! long-running backfill scraped by Prometheus) and/or a text file (`--metrics-file`, for
//! node_exporter's textfile collector, which suits short runs such as a migration Job).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of duration histograms, in seconds: batches and migrations alike.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot serve metrics on {addr}: {message}; nothing was done. Give a free port with \
         --metrics-addr (another process, or another sluice-backfill, listens there?)"
    )]
    Listen { addr: SocketAddr, message: String },
    #[error("cannot set up metrics: {0}")]
    Setup(String),
    #[error(
        "cannot write the metrics file {}: {message}; nothing was done. Name a file in a \
         directory that exists and is writable (--metrics-file)",
        path.display()
    )]
    File { path: PathBuf, message: String },
}

impl MetricsError {
    /// A busy address or a file that cannot be written is a setting to fix (3).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Listen { .. } | Self::File { .. } => crate::exit::INVALID_INPUT,
            Self::Setup(_) => crate::exit::FAILED,
        }
    }
}

/// The installed exporter.
#[derive(Debug)]
pub struct Exporter {
    handle: PrometheusHandle,
    file: Option<PathBuf>,
}

impl Exporter {
    /// Installs the global recorder when an address or a file is given (`None` otherwise:
    /// metrics calls then cost nothing). Must run inside the Tokio runtime.
    pub fn install(
        addr: Option<SocketAddr>,
        file: Option<PathBuf>,
    ) -> Result<Option<Self>, MetricsError> {
        if addr.is_none() && file.is_none() {
            return Ok(None);
        }
        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .map_err(|e| MetricsError::Setup(e.to_string()))?;
        if let Some(addr) = addr {
            builder = builder.with_http_listener(addr);
        }
        let (recorder, exporter) = builder.build().map_err(|e| match addr {
            Some(addr) => MetricsError::Listen {
                addr,
                message: e.to_string(),
            },
            None => MetricsError::Setup(e.to_string()),
        })?;
        let handle = recorder.handle();
        ::metrics::set_global_recorder(recorder).map_err(|e| MetricsError::Setup(e.to_string()))?;
        if let Some(addr) = addr {
            tokio::spawn(exporter);
            tracing::info!(%addr, "serving Prometheus metrics on http://{addr}/metrics");
        }
        let exporter = Self { handle, file };
        // A path that cannot be written fails now, not silently at every write.
        if let Some(path) = &exporter.file {
            write_atomically(path, &exporter.handle.render()).map_err(|e| MetricsError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(Some(exporter))
    }

    /// Writes the text file, if one was asked for (atomically: the collector never reads a
    /// half-written file). Errors are logged, never fatal.
    pub fn write_file(&self) {
        let Some(path) = &self.file else {
            return;
        };
        if let Err(error) = write_atomically(path, &self.handle.render()) {
            tracing::warn!(path = %path.display(), "cannot write the metrics file: {error}");
        }
    }

    /// The metrics as Prometheus text.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let temporary = path.with_extension("prom.partial");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

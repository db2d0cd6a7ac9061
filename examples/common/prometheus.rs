//! `GET /metrics` for the examples: the process's metrics in Prometheus text, from
//! `metrics-exporter-prometheus`. The library records through the `metrics` facade
//! (feature `metrics`); an application installs the recorder it wants, as here, before
//! it builds its layer and hub. Without the feature the page is there, with no
//! `tower_sse_` series.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The media type of Prometheus's text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's recorder (once), gives the
/// library's metrics their help text, and keeps the histograms' windows moving. Call it
/// first thing in `main`, inside the runtime.
pub(crate) fn install() {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            // Times in seconds as histograms with buckets (from 1 ms to 10 s), which
            // Prometheus can add up across instances.
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[0.001, 0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0],
            )
            .expect("buckets are given")
            .install_recorder()
            .expect("no other recorder is installed");
        #[cfg(feature = "metrics")]
        tower_sse::metrics::describe();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        handle
    });
}

/// The text of `GET /metrics`.
pub(crate) fn render() -> String {
    match HANDLE.get() {
        Some(handle) => handle.render(),
        None => "# no metrics recorder is installed in this process\n".to_owned(),
    }
}

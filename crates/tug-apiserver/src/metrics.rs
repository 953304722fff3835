//! Prometheus metrics at `/metrics`: requests by verb, resource and code, request latency
//! histograms, watch counts, cached objects.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
    subresource: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    verb: String,
    resource: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    watches: Gauge,
    watch_lagged: Counter,
    write_retries: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let watches = Gauge::default();
        let watch_lagged = Counter::default();
        let write_retries = Counter::default();
        registry.register(
            "apiserver_write_retries",
            "Writes tried again after a lost compare-and-swap or a stale cached copy",
            write_retries.clone(),
        );
        registry.register(
            "apiserver_request",
            "API requests by verb, resource, subresource and HTTP code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "API request latency by verb and resource (watches: time to start the stream)",
            latency.clone(),
        );
        registry.register("apiserver_registered_watchers", "Watches currently open", watches.clone());
        registry.register(
            "apiserver_watch_lagged",
            "Watches ended because the client fell behind",
            watch_lagged.clone(),
        );
        Metrics { registry, requests, latency, watches, watch_lagged, write_retries }
    }
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, subresource: &str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
                subresource: subresource.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels { verb: verb.to_string(), resource: resource.to_string() })
            .observe(seconds);
    }

    pub fn watch_opened(&self) {
        self.watches.inc();
    }

    pub fn watch_closed(&self) {
        self.watches.dec();
    }

    pub fn watch_lagged(&self) {
        self.watch_lagged.inc();
    }

    /// A write goes round again (lost compare-and-swap, or a stale cached copy).
    pub fn write_retried(&self) {
        self.write_retries.inc();
    }

    /// The text exposition format, with the cache's object counts appended.
    pub fn render(&self, cached: &[(String, usize)]) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out.push_str("# HELP apiserver_storage_objects Objects in the watch cache by resource.\n");
        out.push_str("# TYPE apiserver_storage_objects gauge\n");
        for (storage, n) in cached {
            out.push_str(&format!("apiserver_storage_objects{{resource=\"{storage}\"}} {n}\n"));
        }
        out.push_str("# EOF\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_by_verb_resource_and_code() {
        let m = Metrics::default();
        m.observe("create", "pods", "", 201, 0.002);
        let text = m.render(&[("pods".into(), 3)]);
        assert!(
            text.contains("apiserver_request_total{verb=\"create\",resource=\"pods\",subresource=\"\",code=\"201\"} 1"),
            "{text}"
        );
        assert!(text.contains("apiserver_request_duration_seconds_bucket"));
        assert!(text.contains("apiserver_storage_objects{resource=\"pods\"} 3"));
    }
}

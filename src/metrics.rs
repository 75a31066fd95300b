//! Prometheus metrics, served on `/metrics` in the Prometheus text format.
//!
//! One registry per server (no globals), so every test sees only its own numbers. Labels come
//! from small fixed vocabularies and the configured issuer URLs: never token or subject data.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The Content-Type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// `issuer` only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    /// The configured issuer URL.
    pub issuer: String,
}

/// `issuer` and `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerResultLabels {
    /// The configured issuer URL.
    pub issuer: String,
    /// A fixed label such as `ok` or `too_large`.
    pub result: String,
}

/// Labels of `reviews_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// The issuer that handled the token, empty when routing did not get that far.
    pub issuer: String,
    /// `authenticated`, `rejected` or `error`.
    pub result: String,
    /// The reason label; empty when authenticated.
    pub reason: String,
}

/// Labels of `cache_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: String,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Reviews by issuer, result and reason.
    pub reviews: Family<ReviewLabels, Counter>,
    /// Result cache lookups.
    pub cache: Family<CacheLabels, Counter>,
    /// Discovery + JWKS fetches by issuer and result.
    pub key_fetches: Family<IssuerResultLabels, Counter>,
    /// Signing keys held per issuer (0 when stale or never fetched).
    pub keys_held: Family<IssuerLabels, Gauge>,
    /// Unix time of the last successful key fetch per issuer.
    pub key_last_success: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    /// Seconds since the last successful key fetch per issuer (set when scraped).
    pub key_staleness: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    /// Token-triggered key fetches refused because the issuer's cooldown was running.
    pub key_cooldown_hits: Family<IssuerLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tokenreview_gateway");
        let m = Metrics {
            registry: Registry::default(),
            reviews: Family::default(),
            cache: Family::default(),
            key_fetches: Family::default(),
            keys_held: Family::default(),
            key_last_success: Family::default(),
            key_staleness: Family::default(),
            key_cooldown_hits: Family::default(),
        };
        registry.register("reviews", "TokenReviews answered, by issuer, result and reason", m.reviews.clone());
        registry.register("cache_requests", "Result cache lookups, by hit or miss", m.cache.clone());
        registry.register("key_fetches", "Discovery and JWKS fetches, by issuer and result", m.key_fetches.clone());
        registry.register("keys", "Signing keys held, by issuer", m.keys_held.clone());
        registry.register(
            "key_last_success_timestamp_seconds",
            "Unix time of the last successful key fetch, by issuer",
            m.key_last_success.clone(),
        );
        registry.register(
            "key_staleness_seconds",
            "Seconds since the last successful key fetch, by issuer",
            m.key_staleness.clone(),
        );
        registry.register(
            "key_refresh_cooldown_hits",
            "Token-triggered key fetches skipped because the issuer's cooldown was running",
            m.key_cooldown_hits.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Labels for one issuer.
    pub fn issuer(issuer: &str) -> IssuerLabels {
        IssuerLabels { issuer: issuer.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_metrics_use_the_gateway_prefix_and_labels() {
        let m = Metrics::new();
        m.key_fetches.get_or_create(&IssuerResultLabels { issuer: "https://a".into(), result: "ok".into() }).inc();
        m.keys_held.get_or_create(&Metrics::issuer("https://a")).set(3);
        let text = m.render();
        assert!(text.contains("tokenreview_gateway_key_fetches_total{issuer=\"https://a\",result=\"ok\"} 1"), "{text}");
        assert!(text.contains("tokenreview_gateway_keys{issuer=\"https://a\"} 3"), "{text}");
        // A family appears once it has a series.
        assert!(!text.contains("tokenreview_gateway_reviews_total"), "{text}");
    }
}

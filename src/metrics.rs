//! Prometheus metrics, served on `/metrics` in the Prometheus text format.
//!
//! One registry per server (no globals), so every test sees only its own numbers. Labels come
//! from small fixed vocabularies and the configured issuer URLs: never token or subject data.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
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

/// `endpoint` and `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointResultLabels {
    /// The configured introspection entry's `name`.
    pub endpoint: String,
    /// A fixed label such as `active` or `http_status`.
    pub result: String,
}

/// Labels of `reviews_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// The issuer that handled the token, empty when routing did not get that far. Shared with
    /// the verdict, and the other two are static, so counting a review allocates nothing.
    pub issuer: Option<Arc<str>>,
    /// `authenticated`, `rejected` or `error`.
    pub result: &'static str,
    /// The reason label; empty when authenticated.
    pub reason: &'static str,
}

/// Labels of `cache_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: String,
}

/// Labels of `build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version.
    pub version: String,
}

/// Labels of `config_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigLabels {
    /// First 12 hex digits of the SHA-256 of the active configuration file.
    pub sha256: String,
}

/// Labels of `config_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `failure`.
    pub result: String,
}

/// Latency buckets, in seconds: half a millisecond to ten seconds.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Reviews by issuer, result and reason.
    pub reviews: Family<ReviewLabels, Counter>,
    /// Time to answer a review (body read to answer), in seconds.
    pub review_duration: Histogram,
    /// Always 1, labelled with the version.
    pub build_info: Family<BuildLabels, Gauge>,
    /// Always 1, labelled with the hash of the active configuration file.
    pub config_info: Family<ConfigLabels, Gauge>,
    /// Configuration reloads by result.
    pub config_reloads: Family<ResultLabels, Counter>,
    /// Unix time of the last successful configuration load or reload.
    pub config_last_success: Gauge<f64, AtomicU64>,
    /// Result cache lookups.
    pub cache: Family<CacheLabels, Counter>,
    /// `cache{result="hit"}`, resolved once: counting a hit takes no lock and allocates nothing.
    pub cache_hits: Counter,
    /// `cache{result="miss"}`, resolved once.
    pub cache_misses: Counter,
    /// Discovery + JWKS fetches by issuer and result.
    pub key_fetches: Family<IssuerResultLabels, Counter>,
    /// Signing keys held per issuer: 0 until the first successful fetch, then the count that fetch
    /// got; not reset when the keys go stale (`key_staleness` tells that).
    pub keys_held: Family<IssuerLabels, Gauge>,
    /// Unix time of the last successful key fetch per issuer.
    pub key_last_success: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    /// Seconds since the last successful key fetch per issuer (set when scraped).
    pub key_staleness: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    /// Token-triggered key fetches refused because the issuer's cooldown was running.
    pub key_cooldown_hits: Family<IssuerLabels, Counter>,
    /// Introspection calls (and calls refused by the budget) by endpoint and result.
    pub introspection_requests: Family<EndpointResultLabels, Counter>,
    /// Userinfo calls by issuer and result.
    pub userinfo_requests: Family<IssuerResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("tokenreview_gateway"),
            reviews: Family::default(),
            review_duration: Histogram::new(LATENCY_BUCKETS),
            build_info: Family::default(),
            config_info: Family::default(),
            config_reloads: Family::default(),
            config_last_success: Gauge::default(),
            cache: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            key_fetches: Family::default(),
            keys_held: Family::default(),
            key_last_success: Family::default(),
            key_staleness: Family::default(),
            key_cooldown_hits: Family::default(),
            introspection_requests: Family::default(),
            userinfo_requests: Family::default(),
        };
        let r = &mut m.registry;
        r.register("reviews", "TokenReviews answered, by issuer, result and reason", m.reviews.clone());
        r.register("cache_requests", "Result cache lookups, by hit or miss", m.cache.clone());
        r.register("review_duration_seconds", "Time from request body to answer", m.review_duration.clone());
        r.register("build_info", "The gateway's version (value always 1)", m.build_info.clone());
        r.register("config_info", "Hash of the active configuration (value always 1)", m.config_info.clone());
        r.register("config_reloads", "Configuration reloads, by result", m.config_reloads.clone());
        r.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load",
            m.config_last_success.clone(),
        );
        r.register("key_fetches", "Discovery and JWKS fetches, by issuer and result", m.key_fetches.clone());
        r.register("keys", "Signing keys held, by issuer", m.keys_held.clone());
        r.register(
            "key_last_success_timestamp_seconds",
            "Unix time of the last successful key fetch, by issuer",
            m.key_last_success.clone(),
        );
        r.register(
            "key_staleness_seconds",
            "Seconds since the last successful key fetch, by issuer",
            m.key_staleness.clone(),
        );
        r.register(
            "key_refresh_cooldown_hits",
            "Token-triggered key fetches skipped because the issuer's cooldown was running",
            m.key_cooldown_hits.clone(),
        );
        r.register(
            "introspection_requests",
            "Introspection calls by endpoint and result (budget_exhausted: refused before calling)",
            m.introspection_requests.clone(),
        );
        r.register("userinfo_requests", "Userinfo calls for groups, by issuer and result", m.userinfo_requests.clone());
        m.cache_hits = m.cache.get_or_create(&CacheLabels { result: "hit".into() }).clone();
        m.cache_misses = m.cache.get_or_create(&CacheLabels { result: "miss".into() }).clone();
        m.build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        m
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Records a successful (re)load of a configuration file with this content.
    pub fn config_loaded(&self, content: &[u8]) {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(content);
        let sha256: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        self.config_info.clear();
        self.config_info.get_or_create(&ConfigLabels { sha256 }).set(1);
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64());
        self.config_last_success.set(unix.unwrap_or(0.0));
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

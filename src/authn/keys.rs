//! An issuer's signing keys: discovery, JWKS fetch, per-key admission, and the last good set.
//!
//! The key set lives in our own structure, not a TTL cache: a failed refresh must never evict
//! the only good copy while the identity provider is down. Fetches triggered by tokens (an
//! unknown `kid`, or no keys yet) are rate limited per issuer and run as detached tasks, so a
//! flood of junk tokens cannot hammer the provider and a cancelled request cannot cancel a fetch.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use super::fetch::{FetchError, get_bounded};

/// Longest `kid` we keep or look up; longer ones are junk.
pub const MAX_KID_BYTES: usize = 256;
/// Most keys accepted in one JWKS document.
const MAX_KEYS_PER_SET: usize = 100;
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// The curve or family a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RS256/384/512 and PS256/384/512.
    Rsa,
    /// ES256.
    EcP256,
    /// ES384.
    EcP384,
    /// EdDSA.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg`.
    pub fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::EcP256, ES256)
                | (KeyKind::EcP384, ES384)
                | (KeyKind::Ed25519, EdDSA)
        )
    }
}

/// A key that passed admission.
pub struct AdmittedKey {
    /// The key id, if the JWK had one.
    pub kid: Option<String>,
    /// What it verifies.
    pub kind: KeyKind,
    /// When the JWK names an algorithm, the key verifies only that one.
    pub alg: Option<Algorithm>,
    /// The verifier.
    pub key: DecodingKey,
}

impl AdmittedKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.verifies(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// One fetched key set.
pub struct KeySet {
    /// Admitted keys in document order.
    pub keys: Vec<AdmittedKey>,
    /// When it was fetched.
    pub fetched_at: SystemTime,
}

/// Where to fetch from and how.
pub struct KeySource {
    /// The configured issuer URL; discovery must name it exactly.
    pub issuer: String,
    /// Discovery document URL.
    pub discovery_url: String,
    /// The issuer's own client (CA, timeouts, no redirects).
    pub client: reqwest::Client,
    /// Response size cap.
    pub max_response_bytes: usize,
    /// Algorithms the issuer allows; a JWK naming another one is ignored.
    pub algorithms: Vec<Algorithm>,
    /// Minimum time between token-triggered fetches.
    pub cooldown: Duration,
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    jwks_uri: Option<String>,
    last_error: Option<String>,
}

/// The key store of one issuer.
pub struct KeyStore {
    source: KeySource,
    runtime: tokio::runtime::Handle,
    state: RwLock<State>,
    // Serialises fetches: concurrent triggers wait for the one in flight instead of
    // starting their own.
    fetch_lock: tokio::sync::Mutex<()>,
    last_triggered_fetch: Mutex<Option<Instant>>,
}

impl KeyStore {
    /// A store with no keys yet. Detached fetches run on `runtime`.
    pub fn new(source: KeySource, runtime: tokio::runtime::Handle) -> Self {
        KeyStore {
            source,
            runtime,
            state: RwLock::new(State::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_triggered_fetch: Mutex::new(None),
        }
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.source.issuer
    }

    /// The current key set, if any fetch ever succeeded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.read_state().keys.clone()
    }

    /// The last fetch error, cleared by a successful fetch.
    pub fn last_error(&self) -> Option<String> {
        self.read_state().last_error.clone()
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches now (scheduled refresh, startup, `check`). Returns how many keys are held.
    /// On failure the previous key set stays in place.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch().await
    }

    /// A fetch requested on behalf of a token (unknown `kid`, or no keys yet): at most one per
    /// cooldown, run detached; waits for it (or for the one already in flight) at most `wait`.
    /// Returns whether this call's fetch ran and finished within the wait.
    pub async fn refresh_for_token(self: &Arc<Self>, wait: Duration) -> bool {
        let store = Arc::clone(self);
        let task = self.runtime.spawn(async move {
            let _guard = store.fetch_lock.lock().await;
            {
                let mut last = store.last_triggered_fetch.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_some_and(|t| t.elapsed() < store.source.cooldown) {
                    return false;
                }
                *last = Some(Instant::now());
            }
            let _ = store.fetch().await;
            true
        });
        matches!(tokio::time::timeout(wait, task).await, Ok(Ok(true)))
    }

    async fn fetch(&self) -> Result<usize, FetchError> {
        let result = self.fetch_inner().await;
        let mut state = self.write_state();
        match &result {
            Ok(set) => {
                let n = set.keys.len();
                tracing::info!(issuer = %self.source.issuer, keys = n, "fetched signing keys");
                state.keys = Some(Arc::clone(set));
                state.last_error = None;
            }
            Err(e) => {
                tracing::warn!(issuer = %self.source.issuer, error = %e, "key fetch failed; keeping the previous keys");
                state.last_error = Some(e.to_string());
                // Rediscover next time: the provider may have moved its JWKS.
                state.jwks_uri = None;
            }
        }
        result.map(|set| set.keys.len())
    }

    async fn fetch_inner(&self) -> Result<Arc<KeySet>, FetchError> {
        let src = &self.source;
        let cached_uri = self.read_state().jwks_uri.clone();
        let jwks_uri = match cached_uri {
            Some(uri) => uri,
            None => {
                let uri = self.discover().await?;
                self.write_state().jwks_uri = Some(uri.clone());
                uri
            }
        };
        let body = get_bounded(&src.client, &jwks_uri, src.max_response_bytes).await?;
        let (keys, dropped) = parse_jwks(&body, &src.algorithms)
            .ok_or_else(|| FetchError::InvalidDocument { url: jwks_uri.clone(), what: "JWKS" })?;
        if keys.is_empty() {
            return Err(FetchError::NoUsableKeys { url: jwks_uri, dropped });
        }
        if dropped > 0 {
            tracing::info!(issuer = %src.issuer, dropped, "ignored JWKS entries that are not usable signing keys");
        }
        Ok(Arc::new(KeySet { keys, fetched_at: SystemTime::now() }))
    }

    async fn discover(&self) -> Result<String, FetchError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: Option<String>,
        }
        let src = &self.source;
        let url = &src.discovery_url;
        let body = get_bounded(&src.client, url, src.max_response_bytes).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|_| FetchError::InvalidDocument { url: url.clone(), what: "discovery document" })?;
        if doc.issuer != src.issuer {
            return Err(FetchError::IssuerMismatch {
                url: url.clone(),
                expected: src.issuer.clone(),
                found: doc.issuer,
            });
        }
        match doc.jwks_uri {
            Some(u) if u.starts_with("https://") => Ok(u),
            _ => Err(FetchError::BadJwksUri { url: url.clone() }),
        }
    }
}

/// Parses a JWKS document key by key, so one odd key cannot poison the set. Returns the admitted
/// keys and how many were dropped, or `None` when the document itself is not a JWKS.
pub fn parse_jwks(body: &[u8], allowed: &[Algorithm]) -> Option<(Vec<AdmittedKey>, usize)> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<Value>,
    }
    let doc: Jwks = serde_json::from_slice(body).ok()?;
    if doc.keys.len() > MAX_KEYS_PER_SET {
        return None;
    }
    let total = doc.keys.len();
    let keys: Vec<AdmittedKey> = doc
        .keys
        .iter()
        .filter_map(|k| match admit_key(k, allowed) {
            Ok(key) => Some(key),
            Err(why) => {
                let kid = k.get("kid").and_then(Value::as_str).unwrap_or("").chars().take(64).collect::<String>();
                tracing::debug!(kid = %kid.escape_debug(), why, "JWKS entry ignored");
                None
            }
        })
        .collect();
    let dropped = total - keys.len();
    Some((keys, dropped))
}

/// Decides whether one JWK may verify tokens. Refuses anything that is not a public signing key
/// of a kind and size we trust.
pub fn admit_key(jwk: &Value, allowed: &[Algorithm]) -> Result<AdmittedKey, &'static str> {
    let obj = jwk.as_object().ok_or("not an object")?;
    let str_field = |name: &str| -> Result<Option<&str>, &'static str> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err("a member has the wrong type"),
        }
    };
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| obj.contains_key(*m)) {
        tracing::warn!("the JWKS publishes private or symmetric key material; that key is ignored");
        return Err("private or symmetric key material");
    }
    if str_field("use")?.is_some_and(|u| u != "sig") {
        return Err("use is not sig");
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops.as_array().ok_or("key_ops is not a list")?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Err("key_ops does not include verify");
        }
    }
    let kid = str_field("kid")?;
    if kid.is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err("kid too long");
    }
    let alg = match str_field("alg")? {
        None => None,
        Some(a) => {
            let alg: Algorithm = a.parse().map_err(|_| "alg is not a supported signature algorithm")?;
            if !allowed.contains(&alg) {
                return Err("alg is not allowed for this issuer");
            }
            Some(alg)
        }
    };
    let kind = match (str_field("kty")?, str_field("crv")?) {
        (Some("RSA"), _) => {
            let n = decode_b64(str_field("n")?)?;
            let e = decode_b64(str_field("e")?)?;
            let bits = bit_length(&n);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err("RSA modulus size outside 2048..=8192 bits");
            }
            let e_is_odd = e.last().is_some_and(|b| b & 1 == 1);
            if !e_is_odd || bit_length(&e) < 2 {
                return Err("RSA exponent must be odd and at least 3");
            }
            KeyKind::Rsa
        }
        (Some("EC"), Some("P-256")) => KeyKind::EcP256,
        (Some("EC"), Some("P-384")) => KeyKind::EcP384,
        (Some("OKP"), Some("Ed25519")) => KeyKind::Ed25519,
        (Some("EC" | "OKP"), _) => return Err("unsupported curve"),
        _ => return Err("unsupported key type"),
    };
    if let Some(a) = alg
        && !kind.verifies(a)
    {
        return Err("alg does not match the key type");
    }
    if !allowed.iter().any(|a| kind.verifies(*a)) {
        return Err("no allowed algorithm uses this key type");
    }
    let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|_| "malformed JWK")?;
    let key = DecodingKey::from_jwk(&parsed).map_err(|_| "malformed JWK")?;
    Ok(AdmittedKey { kid: kid.map(str::to_string), kind, alg, key })
}

fn decode_b64(s: Option<&str>) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD.decode(s.ok_or("missing key member")?).map_err(|_| "key member is not base64url")
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (big_endian.len() - i) * 8 - big_endian[i].leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALL: [Algorithm; 4] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];

    fn rsa_jwk(bits: usize) -> Value {
        let n = URL_SAFE_NO_PAD.encode(vec![0xc1u8; bits / 8]);
        json!({"kty": "RSA", "kid": "r", "n": n, "e": "AQAB"})
    }

    fn ec_jwk() -> Value {
        // A real P-256 point is required for DecodingKey; the generator point of P-256.
        json!({"kty": "EC", "crv": "P-256", "kid": "e",
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"})
    }

    #[test]
    fn rsa_2048_is_admitted_and_binds_no_alg_without_one() {
        let k = admit_key(&rsa_jwk(2048), &ALL).unwrap();
        assert_eq!(k.kind, KeyKind::Rsa);
        assert!(k.accepts(Algorithm::RS256) && k.accepts(Algorithm::PS256));
        assert!(!k.accepts(Algorithm::ES256));
    }

    #[test]
    fn rsa_under_2048_bits_is_refused() {
        assert_eq!(admit_key(&rsa_jwk(1024), &ALL).err(), Some("RSA modulus size outside 2048..=8192 bits"));
    }

    #[test]
    fn a_jwk_alg_binds_the_key_to_that_alg() {
        let mut j = rsa_jwk(2048);
        j["alg"] = json!("RS256");
        let k = admit_key(&j, &ALL).unwrap();
        assert!(k.accepts(Algorithm::RS256));
        assert!(!k.accepts(Algorithm::PS256));
    }

    #[test]
    fn wrong_purpose_and_secret_keys_are_refused() {
        let cases = [
            (json!({"kty": "oct", "k": "c2VjcmV0"}), "private or symmetric key material"),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["use"] = json!("enc");
                    j
                },
                "use is not sig",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["key_ops"] = json!(["encrypt"]);
                    j
                },
                "key_ops does not include verify",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["alg"] = json!("RSA-OAEP");
                    j
                },
                "alg is not a supported signature algorithm",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["alg"] = json!("RS512");
                    j
                },
                "alg is not allowed for this issuer",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["alg"] = json!("ES256");
                    j
                },
                "alg does not match the key type",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["d"] = json!("AQAB");
                    j
                },
                "private or symmetric key material",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["kid"] = json!("k".repeat(300));
                    j
                },
                "kid too long",
            ),
            (
                {
                    let mut j = rsa_jwk(2048);
                    j["e"] = json!("AQ");
                    j
                },
                "RSA exponent must be odd and at least 3",
            ),
            (json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}), "unsupported curve"),
            (json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}), "unsupported curve"),
            (json!({"kty": "XYZ"}), "unsupported key type"),
            (json!("a string"), "not an object"),
        ];
        for (jwk, want) in cases {
            assert_eq!(admit_key(&jwk, &ALL).err(), Some(want), "{jwk}");
        }
    }

    #[test]
    fn one_odd_key_does_not_poison_the_set() {
        let doc = json!({"keys": [{"kty": "weird"}, rsa_jwk(2048), ec_jwk(), {"kty": "oct", "k": "AA"}]});
        let (keys, dropped) = parse_jwks(doc.to_string().as_bytes(), &ALL).unwrap();
        assert_eq!(keys.iter().map(|k| k.kind).collect::<Vec<_>>(), vec![KeyKind::Rsa, KeyKind::EcP256]);
        assert_eq!(dropped, 2);
    }

    #[test]
    fn a_document_that_is_not_a_jwks_is_refused_whole() {
        assert!(parse_jwks(b"<html>", &ALL).is_none());
        assert!(parse_jwks(b"{\"keys\": {}}", &ALL).is_none());
        let many = json!({"keys": vec![rsa_jwk(2048); 101]});
        assert!(parse_jwks(many.to_string().as_bytes(), &ALL).is_none());
    }

    #[test]
    fn keys_for_algorithms_the_issuer_does_not_allow_are_ignored() {
        assert_eq!(admit_key(&ec_jwk(), &[Algorithm::RS256]).err(), Some("no allowed algorithm uses this key type"));
    }

    #[test]
    fn bit_length_ignores_leading_zero_bytes() {
        assert_eq!(bit_length(&[0, 0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[]), 0);
    }
}

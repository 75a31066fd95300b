//! Tools for the attack suite (`attacks_*.rs`): a forger that signs arbitrary header and payload
//! bytes with a key the issuer really publishes, a listener that counts connections, and metric
//! shortcuts for the reason a token was refused.

use std::net::TcpListener;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokenreview_gateway::config::Settings;
use tokenreview_gateway::dev::DevIssuer;

use crate::helpers::*;

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    B64.encode(bytes)
}

pub fn unb64(segment: &str) -> Vec<u8> {
    B64.decode(segment).expect("base64url segment")
}

/// A key published in the issuer's JWKS whose private half the test holds, so it can sign any
/// bytes at all: duplicate keys, odd numbers, non-JSON payloads, hostile headers.
pub struct Forger {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl Forger {
    pub fn new(alg: Algorithm, kid: &str) -> Forger {
        let scheme = match alg {
            Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::EdDSA => &rcgen::PKCS_ED25519,
            _ => &rcgen::PKCS_RSA_SHA256,
        };
        let pair = rcgen::KeyPair::generate_for(scheme).unwrap();
        let pem = pair.serialize_pem();
        let encoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .unwrap();
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Forger { kid: kid.to_string(), alg, encoding, jwk }
    }

    /// `header.payload.signature` over exactly these bytes, signed with `alg` (which may differ
    /// from the key's own).
    pub fn sign_bytes_as(&self, alg: Algorithm, header: &[u8], payload: &[u8]) -> String {
        let message = format!("{}.{}", b64(header), b64(payload));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, alg).unwrap();
        format!("{message}.{signature}")
    }

    pub fn sign_bytes(&self, header: &[u8], payload: &[u8]) -> String {
        self.sign_bytes_as(self.alg, header, payload)
    }

    /// The standard header of this key: `{"alg":…,"kid":…}`.
    pub fn header(&self) -> String {
        json!({"alg": format!("{:?}", self.alg), "kid": self.kid}).to_string()
    }

    /// A token with this key's header over `payload` text.
    pub fn sign_payload(&self, payload: &str) -> String {
        self.sign_bytes(self.header().as_bytes(), payload.as_bytes())
    }
}

/// An issuer with its usual keys plus a forger's RS256 key `forge-rs` and ES256 key `forge-es`
/// (both published), and a gateway trusting it.
pub async fn app_with_forgers(configure: impl FnOnce(&mut Settings)) -> (TestApp, Forger, Forger) {
    let issuer =
        DevIssuer::start(&[Algorithm::RS256, Algorithm::ES256, Algorithm::PS256]).await.expect("dev issuer starts");
    let rs = Forger::new(Algorithm::RS256, "forge-rs");
    let es = Forger::new(Algorithm::ES256, "forge-es");
    issuer.publish_raw(rs.jwk.clone());
    issuer.publish_raw(es.jwk.clone());
    (spawn_gateway(issuer, configure).await, rs, es)
}

/// A TCP listener on loopback that only counts the connections made to it.
pub struct Tripwire(TcpListener);

impl Tripwire {
    pub fn new() -> Tripwire {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Tripwire(l)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.0.local_addr().unwrap().port())
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        let mut n = 0;
        while self.0.accept().is_ok() {
            n += 1;
        }
        n
    }
}

impl Tripwire {
    /// After a moment for stray connections to arrive: none reached the tripwire, and the
    /// issuer served exactly `issuer_before` requests.
    pub async fn assert_untouched(&self, app: &TestApp, issuer_before: usize) {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(self.connections(), 0, "a connection reached the tripwire");
        assert_eq!(app.issuer.requests(), issuer_before, "the issuer was contacted");
    }
}

/// Adds `other` as a second trusted issuer with the same mapping as the first.
pub fn trust_second_issuer(s: &mut Settings, other: &DevIssuer) {
    let mut second = s.jwt[0].clone();
    second.issuer.url = other.url().to_string();
    second.issuer.certificate_authority = Some(other.ca_pem().to_string());
    s.jwt.push(second);
}

impl TestApp {
    /// How many reviews were refused with `reason` (for the trusted issuer when `ours`).
    pub async fn refused(&self, ours: bool, reason: &str) -> f64 {
        let issuer = if ours { self.issuer.url().to_string() } else { String::new() };
        self.metric(
            "tokenreview_gateway_reviews_total",
            &[("issuer", &issuer), ("result", "rejected"), ("reason", reason)],
        )
        .await
    }

    /// Reviews each token, asserts every one is rejected with no `error` (a definite answer),
    /// and that the reviews counter for `reason` grew by exactly the number of tokens.
    pub async fn all_refused_because(&self, ours: bool, reason: &str, tokens: &[String]) {
        let before = self.refused(ours, reason).await;
        for t in tokens {
            let shown: String = t.chars().take(120).collect();
            assert_eq!(self.review(t).await, rejected(V1), "token {shown}");
        }
        let after = self.refused(ours, reason).await;
        if after - before != tokens.len() as f64 {
            let (_, text) = self.get("/metrics").await;
            let reviews: Vec<&str> =
                text.lines().filter(|l| l.starts_with("tokenreview_gateway_reviews_total")).collect();
            panic!(
                "expected {} more reviews refused with {reason} (ours: {ours}); now:\n{}",
                tokens.len(),
                reviews.join("\n")
            );
        }
    }

    /// Like [`TestApp::all_refused_because`] when the library's error decides between several
    /// reasons (a JSON error is `malformed_token`, a type error `invalid_claim`): the counters
    /// of `reasons` together grew by exactly the number of tokens.
    pub async fn all_refused_among(&self, ours: bool, reasons: &[&str], tokens: &[String]) {
        let mut before = 0.0;
        for r in reasons {
            before += self.refused(ours, r).await;
        }
        for t in tokens {
            assert_eq!(self.review(t).await, rejected(V1), "token {}", t.chars().take(120).collect::<String>());
        }
        let mut after = 0.0;
        for r in reasons {
            after += self.refused(ours, r).await;
        }
        if after - before != tokens.len() as f64 {
            let (_, text) = self.get("/metrics").await;
            let reviews: Vec<&str> =
                text.lines().filter(|l| l.starts_with("tokenreview_gateway_reviews_total")).collect();
            panic!("expected {} more reviews refused with {reasons:?}; now:\n{}", tokens.len(), reviews.join("\n"));
        }
    }

    /// The claims of a valid token of the trusted issuer, as JSON text.
    pub fn payload(&self, sub: &str) -> String {
        self.issuer.claims(sub).to_string()
    }
}

/// The raw P-256 group order n, big-endian.
pub const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// a − b for 256-bit big-endian numbers (a ≥ b).
pub fn sub256(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = if d < 0 { 1 } else { 0 };
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

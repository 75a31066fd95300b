//! The embedded development issuer behind `tokenreview-gateway dev`: a real OIDC issuer
//! (discovery + JWKS) served over HTTPS on loopback with a generated CA, signing keys generated
//! at start, and a token minter. The integration tests use it as their identity provider, which
//! is why it counts the requests it serves and can rotate keys.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::config::{
    ClaimMappings, IssuerSettings, JwtAuthenticator, PrefixedClaimOrExpression, ServerSettings, Settings,
};

/// The audience the dev issuer's tokens carry and the dev gateway expects.
pub const DEV_AUDIENCE: &str = "kubernetes";

/// A CA and a serving certificate for loopback, made fresh on every start.
pub struct LoopbackTls {
    /// PEM of the CA certificate clients must trust.
    pub ca_pem: String,
    /// Server config presenting the loopback certificate.
    pub server_config: rustls::ServerConfig,
}

impl LoopbackTls {
    /// Generates a CA and a certificate for `localhost` and `127.0.0.1` signed by it.
    pub fn generate() -> anyhow::Result<LoopbackTls> {
        let ca = crate::certs::Ca::new("tokenreview-gateway development CA", 2)?;
        let leaf = ca.server(&["localhost".to_string(), "127.0.0.1".to_string()], 2)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)?;
        Ok(LoopbackTls { ca_pem: ca.pair.cert_pem, server_config })
    }
}

/// A signing key of the dev issuer.
struct DevKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    public_jwk: Value,
    public_pem: String,
    published: bool,
}

/// How the issuer misbehaves when serving its JWKS (fault injection for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Serve the JWKS normally.
    None,
    /// Answer with this HTTP status.
    Status(u16),
    /// A JSON content type with a body that is not JSON.
    Garbage,
    /// `{"keys": []}`.
    EmptyKeys,
    /// The JWKS as `text/html`.
    HtmlContentType,
    /// A 302 to this URL.
    Redirect(String),
    /// A chunked body (no Content-Length) of this many bytes.
    Huge(usize),
    /// One byte every half second, forever.
    Drip,
}

struct IssuerState {
    url: String,
    keys: RwLock<Vec<DevKey>>,
    extra_jwks: RwLock<Vec<Value>>,
    fault: RwLock<Fault>,
    max_age: RwLock<Option<u64>>,
    jwks_uri: RwLock<String>,
    advertised_issuer: RwLock<String>,
    discovery_requests: AtomicUsize,
    jwks_requests: AtomicUsize,
    /// `sub` → claims the userinfo endpoint returns besides `sub`.
    userinfo: RwLock<std::collections::HashMap<String, Value>>,
    userinfo_status: RwLock<Option<u16>>,
    /// When set, what `/userinfo` answers verbatim for any token it accepts (answers no real
    /// provider gives, such as a repeated member name).
    userinfo_raw: RwLock<Option<String>>,
    userinfo_requests: AtomicUsize,
    /// token → raw introspection response body (a hand-written endpoint for answers no real
    /// authorization server gives).
    introspection: RwLock<std::collections::HashMap<String, String>>,
    introspection_requests: AtomicUsize,
    /// Distributed claims sources: name → (the bearer token it requires, the JWT it answers).
    claim_sources: RwLock<std::collections::HashMap<String, (String, String)>>,
    claim_source_requests: AtomicUsize,
}

/// A running development issuer.
pub struct DevIssuer {
    state: Arc<IssuerState>,
    ca_pem: String,
    tls: rustls::ServerConfig,
    addr: std::net::SocketAddr,
    handle: std::sync::Mutex<ServerHandle>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

struct GeneratedKey {
    encoding: EncodingKey,
    public_jwk: Value,
    public_pem: String,
}

fn generate_key(alg: Algorithm, kid: &str) -> anyhow::Result<GeneratedKey> {
    use Algorithm::*;
    let pair = match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?,
        ES256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        ES384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?,
        EdDSA => KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
        other => anyhow::bail!("the dev issuer does not sign with {other:?}"),
    };
    let private_pem = pair.serialize_pem();
    let encoding = match alg {
        ES256 | ES384 => EncodingKey::from_ec_pem(private_pem.as_bytes())?,
        EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes())?,
        _ => EncodingKey::from_rsa_pem(private_pem.as_bytes())?,
    };
    let mut public_jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg)?)?;
    public_jwk["kid"] = json!(kid);
    public_jwk["use"] = json!("sig");
    Ok(GeneratedKey { encoding, public_jwk, public_pem: pair.public_key_pem() })
}

impl DevIssuer {
    /// Starts an issuer on `127.0.0.1` (random port) with one published key per algorithm in
    /// `algs`; the kid of each is its algorithm's name in lower case plus `-1` (`rs256-1`).
    pub async fn start(algs: &[Algorithm]) -> anyhow::Result<DevIssuer> {
        let tls = LoopbackTls::generate()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let url = format!("https://127.0.0.1:{}", addr.port());
        let state = Arc::new(IssuerState {
            url: url.clone(),
            keys: RwLock::new(Vec::new()),
            extra_jwks: RwLock::new(Vec::new()),
            fault: RwLock::new(Fault::None),
            max_age: RwLock::new(None),
            jwks_uri: RwLock::new(format!("{url}/keys")),
            advertised_issuer: RwLock::new(url),
            discovery_requests: AtomicUsize::new(0),
            jwks_requests: AtomicUsize::new(0),
            userinfo: RwLock::new(std::collections::HashMap::new()),
            userinfo_status: RwLock::new(None),
            userinfo_raw: RwLock::new(None),
            userinfo_requests: AtomicUsize::new(0),
            introspection: RwLock::new(std::collections::HashMap::new()),
            introspection_requests: AtomicUsize::new(0),
            claim_sources: RwLock::new(std::collections::HashMap::new()),
            claim_source_requests: AtomicUsize::new(0),
        });
        let handle = serve(Arc::clone(&state), listener, tls.server_config.clone())?;
        let issuer = DevIssuer {
            state,
            ca_pem: tls.ca_pem,
            tls: tls.server_config,
            addr,
            handle: std::sync::Mutex::new(handle),
        };
        for alg in algs {
            issuer.add_key(*alg)?;
        }
        Ok(issuer)
    }

    /// The issuer URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// PEM of the CA that signed the issuer's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Generates and publishes a new key (a rotation); returns its kid.
    pub fn add_key(&self, alg: Algorithm) -> anyhow::Result<String> {
        self.new_key(alg, true)
    }

    /// Generates a key the issuer signs with but does not publish (a forger's key, or a
    /// rotation not yet visible); returns its kid.
    pub fn add_unpublished_key(&self, alg: Algorithm) -> anyhow::Result<String> {
        self.new_key(alg, false)
    }

    /// Publishes a key made with [`DevIssuer::add_unpublished_key`].
    pub fn publish(&self, kid: &str) {
        let mut keys = self.state.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.iter_mut().filter(|k| k.kid == kid).for_each(|k| k.published = true);
    }

    fn new_key(&self, alg: Algorithm, published: bool) -> anyhow::Result<String> {
        let mut keys = self.state.keys.write().unwrap_or_else(|e| e.into_inner());
        let n = keys.iter().filter(|k| k.alg == alg).count() + 1;
        let kid = format!("{}-{n}", format!("{alg:?}").to_lowercase());
        let GeneratedKey { encoding, public_jwk, public_pem } = generate_key(alg, &kid)?;
        keys.push(DevKey { kid: kid.clone(), alg, encoding, public_jwk, public_pem, published });
        Ok(kid)
    }

    /// The public JWK of a key.
    pub fn public_jwk(&self, kid: &str) -> Option<Value> {
        let keys = self.state.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter().find(|k| k.kid == kid).map(|k| k.public_jwk.clone())
    }

    /// The public key of `kid` as SPKI PEM (what a key-confusion attacker would HMAC with).
    pub fn public_pem(&self, kid: &str) -> Option<String> {
        let keys = self.state.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter().find(|k| k.kid == kid).map(|k| k.public_pem.clone())
    }

    /// Makes discovery name another issuer (to test the issuer check).
    pub fn set_advertised_issuer(&self, issuer: &str) {
        *self.state.advertised_issuer.write().unwrap_or_else(|e| e.into_inner()) = issuer.to_string();
    }

    /// Claims of a valid token for `sub`: this issuer, audience `kubernetes`, one hour.
    pub fn claims(&self, sub: &str) -> Value {
        let now = now();
        json!({
            "iss": self.url(),
            "sub": sub,
            "aud": DEV_AUDIENCE,
            "iat": now,
            "exp": now + 3600,
            "email": format!("{sub}@example.com"),
            "email_verified": true,
            "groups": ["developers"],
        })
    }

    /// Signs `claims` with the key `kid` (kid and alg in the header).
    pub fn sign(&self, kid: &str, claims: &Value) -> anyhow::Result<String> {
        let keys = self.state.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys.iter().find(|k| k.kid == kid).ok_or_else(|| anyhow::anyhow!("no key {kid}"))?;
        let mut header = Header::new(key.alg);
        header.kid = Some(kid.to_string());
        drop(keys);
        self.sign_with_header(kid, &header, claims)
    }

    /// Signs `claims` with key `kid` under an arbitrary header (for hostile tokens).
    pub fn sign_with_header(&self, kid: &str, header: &Header, claims: &Value) -> anyhow::Result<String> {
        let keys = self.state.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys.iter().find(|k| k.kid == kid).ok_or_else(|| anyhow::anyhow!("no key {kid}"))?;
        Ok(jsonwebtoken::encode(header, claims, &key.encoding)?)
    }

    /// Discovery documents served so far.
    pub fn discovery_requests(&self) -> usize {
        self.state.discovery_requests.load(Ordering::SeqCst)
    }

    /// JWKS documents served so far.
    pub fn jwks_requests(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    /// Userinfo requests served so far.
    pub fn userinfo_requests(&self) -> usize {
        self.state.userinfo_requests.load(Ordering::SeqCst)
    }

    /// Introspection requests served so far.
    pub fn introspection_requests(&self) -> usize {
        self.state.introspection_requests.load(Ordering::SeqCst)
    }

    /// What `/userinfo` answers (besides `sub`) for a bearer token with this `sub`.
    pub fn set_userinfo(&self, sub: &str, claims: Value) {
        self.state.userinfo.write().unwrap_or_else(|e| e.into_inner()).insert(sub.to_string(), claims);
    }

    /// Makes `/userinfo` answer `raw_json` verbatim to any token of this issuer (`None`: normally).
    pub fn set_userinfo_raw(&self, raw_json: Option<&str>) {
        *self.state.userinfo_raw.write().unwrap_or_else(|e| e.into_inner()) = raw_json.map(str::to_string);
    }

    /// Makes `/userinfo` answer with this HTTP status (`None`: normally).
    pub fn set_userinfo_status(&self, status: Option<u16>) {
        *self.state.userinfo_status.write().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// What `POST /introspect` answers for `token`, verbatim (others get `{"active":false}`).
    pub fn set_introspection_response(&self, token: &str, raw_json: &str) {
        let mut map = self.state.introspection.write().unwrap_or_else(|e| e.into_inner());
        map.insert(token.to_string(), raw_json.to_string());
    }

    /// All requests served so far.
    pub fn requests(&self) -> usize {
        self.discovery_requests()
            + self.jwks_requests()
            + self.userinfo_requests()
            + self.introspection_requests()
            + self.claim_source_requests()
    }

    /// Stops serving (the port is closed: connections are refused).
    pub async fn stop(&self) {
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).clone();
        handle.stop(false).await;
    }

    /// Serves again on the same address, with the same certificate and keys.
    pub fn resume(&self) -> anyhow::Result<()> {
        // The stopped server's accept thread may hold the socket for a moment after `stop`.
        let mut attempt = 0;
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if attempt < 100 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let handle = serve(Arc::clone(&self.state), listener, self.tls.clone())?;
        *self.handle.lock().unwrap_or_else(|e| e.into_inner()) = handle;
        Ok(())
    }

    /// Serves `answer` (a JWT) at `<url>/claims/<name>` to requests bearing `access_token`, as
    /// a distributed claims endpoint; other requests get 401, unknown names 404.
    pub fn set_claim_source(&self, name: &str, access_token: &str, answer: &str) {
        let mut sources = self.state.claim_sources.write().unwrap_or_else(|e| e.into_inner());
        sources.insert(name.to_string(), (access_token.to_string(), answer.to_string()));
    }

    /// Requests served at `/claims/...`.
    pub fn claim_source_requests(&self) -> usize {
        self.state.claim_source_requests.load(Ordering::SeqCst)
    }

    /// Makes the JWKS endpoint misbehave (or behave again with [`Fault::None`]).
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.write().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Sends `Cache-Control: max-age=N` with the JWKS.
    pub fn set_max_age(&self, seconds: Option<u64>) {
        *self.state.max_age.write().unwrap_or_else(|e| e.into_inner()) = seconds;
    }

    /// Stops publishing a key (it can still sign: tokens made with it must then fail).
    pub fn unpublish(&self, kid: &str) {
        let mut keys = self.state.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.iter_mut().filter(|k| k.kid == kid).for_each(|k| k.published = false);
    }

    /// Publishes an arbitrary JWK beside the real keys (an odd or hostile entry).
    pub fn publish_raw(&self, jwk: Value) {
        self.state.extra_jwks.write().unwrap_or_else(|e| e.into_inner()).push(jwk);
    }

    /// Makes discovery advertise another `jwks_uri`.
    pub fn set_jwks_uri(&self, uri: &str) {
        *self.state.jwks_uri.write().unwrap_or_else(|e| e.into_inner()) = uri.to_string();
    }

    /// Gateway settings that trust this issuer: username from `email` (no prefix), groups from
    /// `groups` with prefix `oidc:`, audience `kubernetes`.
    pub fn gateway_settings(&self, listen: &str) -> Settings {
        Settings {
            server: ServerSettings { listen: listen.to_string(), ..ServerSettings::default() },
            jwt: vec![JwtAuthenticator {
                issuer: IssuerSettings {
                    url: self.url().to_string(),
                    discovery_url: None,
                    certificate_authority: Some(self.ca_pem.clone()),
                    audiences: vec![DEV_AUDIENCE.to_string()],
                    audience_match_policy: None,
                    egress_selector_type: None,
                },
                claim_validation_rules: None,
                claim_mappings: ClaimMappings {
                    username: Some(PrefixedClaimOrExpression {
                        claim: Some("email".into()),
                        prefix: Some(String::new()),
                        expression: None,
                    }),
                    groups: Some(PrefixedClaimOrExpression {
                        claim: Some("groups".into()),
                        prefix: Some("oidc:".into()),
                        expression: None,
                    }),
                    uid: Some(crate::config::ClaimOrExpression { claim: Some("sub".into()), expression: None }),
                    extra: None,
                },
                user_validation_rules: None,
                algorithms: Some(vec!["RS256".into(), "PS256".into(), "ES256".into()]),
                clock_skew_seconds: None,
                jwks_hosts: Vec::new(),
                allow_loopback_http: false,
                group_rules: None,
                introspect: None,
                user_info: None,
                header_types: None,
                max_lifetime_seconds: None,
            }],
            ..Settings::default()
        }
    }
}

fn serve(state: Arc<IssuerState>, listener: TcpListener, tls: rustls::ServerConfig) -> anyhow::Result<ServerHandle> {
    let shared = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/.well-known/openid-configuration", web::get().to(discovery))
            .route("/keys", web::get().to(jwks))
            .route("/userinfo", web::get().to(userinfo))
            .route("/introspect", web::post().to(introspect))
            .route("/claims/{name}", web::get().to(claim_source))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen_rustls_0_23(listener, tls)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

async fn discovery(state: web::Data<IssuerState>) -> HttpResponse {
    state.discovery_requests.fetch_add(1, Ordering::SeqCst);
    let issuer = state.advertised_issuer.read().unwrap_or_else(|e| e.into_inner()).clone();
    let jwks_uri = state.jwks_uri.read().unwrap_or_else(|e| e.into_inner()).clone();
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "userinfo_endpoint": format!("{}/userinfo", state.url),
        "introspection_endpoint": format!("{}/introspect", state.url),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
    }))
}

/// OIDC userinfo for bearer tokens this issuer minted (the test issuer reads `sub` from the
/// token's payload; it does not re-verify its own signature).
async fn userinfo(req: actix_web::HttpRequest, state: web::Data<IssuerState>) -> HttpResponse {
    use base64::Engine;
    state.userinfo_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(code) = *state.userinfo_status.read().unwrap_or_else(|e| e.into_inner()) {
        let status = actix_web::http::StatusCode::from_u16(code).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
        return HttpResponse::build(status).json(json!({"error": "injected"}));
    }
    let claims: Option<Value> = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| t.split('.').nth(1))
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(sub) = claims.filter(|c| c["iss"] == json!(state.url)).and_then(|c| c["sub"].as_str().map(String::from))
    else {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_token"}));
    };
    if let Some(raw) = state.userinfo_raw.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return HttpResponse::Ok().content_type("application/json").body(raw);
    }
    let mut answer = state.userinfo.read().unwrap_or_else(|e| e.into_inner()).get(&sub).cloned().unwrap_or(json!({}));
    answer["sub"] = json!(sub);
    HttpResponse::Ok().json(answer)
}

async fn introspect(
    state: web::Data<IssuerState>,
    form: web::Form<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    state.introspection_requests.fetch_add(1, Ordering::SeqCst);
    let token = form.get("token").cloned().unwrap_or_default();
    let body = state.introspection.read().unwrap_or_else(|e| e.into_inner()).get(&token).cloned();
    HttpResponse::Ok().content_type("application/json").body(body.unwrap_or_else(|| r#"{"active":false}"#.into()))
}

async fn claim_source(
    req: actix_web::HttpRequest,
    name: web::Path<String>,
    state: web::Data<IssuerState>,
) -> HttpResponse {
    state.claim_source_requests.fetch_add(1, Ordering::SeqCst);
    let source = state.claim_sources.read().unwrap_or_else(|e| e.into_inner()).get(name.as_str()).cloned();
    let Some((access_token, answer)) = source else { return HttpResponse::NotFound().finish() };
    let bearer =
        req.headers().get("Authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(access_token.as_str()) {
        return HttpResponse::Unauthorized().finish();
    }
    HttpResponse::Ok().content_type("application/jwt").body(answer)
}

async fn jwks(state: web::Data<IssuerState>) -> HttpResponse {
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    let document = {
        let keys = state.keys.read().unwrap_or_else(|e| e.into_inner());
        let extra = state.extra_jwks.read().unwrap_or_else(|e| e.into_inner());
        let published: Vec<&Value> =
            keys.iter().filter(|k| k.published).map(|k| &k.public_jwk).chain(extra.iter()).collect();
        json!({ "keys": published })
    };
    let fault = state.fault.read().unwrap_or_else(|e| e.into_inner()).clone();
    let max_age = *state.max_age.read().unwrap_or_else(|e| e.into_inner());
    let mut ok = HttpResponse::Ok();
    if let Some(age) = max_age {
        ok.insert_header(("Cache-Control", format!("public, max-age={age}")));
    }
    let drip = |chunk: &'static [u8], pause: std::time::Duration, count: Option<usize>| {
        futures_util::stream::unfold(count, move |left| async move {
            if left == Some(0) {
                return None;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            Some((Ok::<_, std::io::Error>(web::Bytes::from_static(chunk)), left.map(|n| n - 1)))
        })
    };
    match fault {
        Fault::None => ok.json(document),
        Fault::Status(code) => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(code).unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .json(json!({"error": "injected"})),
        Fault::Garbage => ok.content_type("application/json").body("{\"keys\": [ this is not json"),
        Fault::EmptyKeys => ok.json(json!({"keys": []})),
        Fault::HtmlContentType => ok.content_type("text/html").body(document.to_string()),
        Fault::Redirect(to) => HttpResponse::Found().insert_header(("Location", to)).finish(),
        Fault::Huge(bytes) => {
            const CHUNK: &[u8] = &[b' '; 16 * 1024];
            ok.content_type("application/json").streaming(drip(
                CHUNK,
                std::time::Duration::ZERO,
                Some(bytes / CHUNK.len()),
            ))
        }
        Fault::Drip => {
            ok.content_type("application/json").streaming(drip(b" ", std::time::Duration::from_millis(500), None))
        }
    }
}

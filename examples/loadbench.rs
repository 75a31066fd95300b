//! Helpers of the load benchmark (`scripts/load-bench`); not part of the product.
//!
//! - `fixture`: starts HTTPS development issuers (one real one, plus unused ones for the
//!   64-issuer case), writes gateway configurations that trust them, mints tokens into files,
//!   then serves the issuers' discovery and JWKS until killed.
//! - `baseline`: the minimal actix-web handler the gateway is compared with: it parses the
//!   TokenReview with the gateway's own parser and returns a fixed answer. With `--verify DIR`
//!   it also verifies the token (jsonwebtoken `decode`, the fixture's RS256 or ES256 key by the
//!   header's `alg`) before answering: the handler plus the verify, measured as one server.
//! - `verify`: a verify-only rate, one thread, no HTTP, by `--mode`: `jsonwebtoken` (its
//!   `decode`: the library the gateway used to verify with), `raw` (the signature check alone,
//!   aws-lc-rs with the key parsed once and the signature decoded beforehand: the issue's "raw
//!   verify") or `gateway` (the gateway's own `jwt::decode`, key candidates and `jwt::verify`
//!   with the key admitted from the issuer's JWK).
//! - `check`: sends a sample of reviews and fails unless every answer is `authenticated: true`;
//!   with `--count` it sends that many over one connection (to drive a profiler), with `--fresh`
//!   each with a `spec.audiences` value never sent before (a cache miss).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokenreview_gateway::dev::{DEV_AUDIENCE, DevIssuer};
use tokenreview_gateway::review::{ApiVersion, ReviewRequest};

const USAGE: &str = "usage:
  loadbench fixture --dir DIR [--tokens N] [--big-tokens N] [--issuers N]
  loadbench baseline --listen ADDR [--verify FIXTURE_DIR]
  loadbench verify --tokens FILE --pem FILE --alg RS256|ES256 [--seconds S] [--mode jsonwebtoken|raw|gateway]
  loadbench check --addr HOST:PORT --tokens FILE [--sample N] [--count N [--fresh]] [--api-version v1|v1beta1]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else { anyhow::bail!("{USAGE}") };
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let number = |name: &str, default: usize| -> anyhow::Result<usize> {
        flag(name).map(|v| v.parse::<usize>()).transpose().map(|v| v.unwrap_or(default)).map_err(Into::into)
    };
    let required = |name: &str| flag(name).ok_or_else(|| anyhow::anyhow!("{name} is required\n{USAGE}"));
    match command.as_str() {
        "fixture" => fixture(
            &PathBuf::from(required("--dir")?),
            number("--tokens", 1000)?,
            number("--big-tokens", 200)?,
            number("--issuers", 64)?,
        ),
        "baseline" => baseline(&required("--listen")?, flag("--verify").map(PathBuf::from).as_deref()),
        "verify" => verify(
            &PathBuf::from(required("--tokens")?),
            &PathBuf::from(required("--pem")?),
            required("--alg")?.parse()?,
            number("--seconds", 3)?,
            flag("--mode").as_deref().unwrap_or("jsonwebtoken"),
        ),
        "check" => check(
            &required("--addr")?,
            &PathBuf::from(required("--tokens")?),
            number("--sample", 20)?,
            number("--count", 0)?,
            flag("--api-version").as_deref().unwrap_or("v1"),
            args.iter().any(|a| a == "--fresh"),
        ),
        _ => anyhow::bail!("{USAGE}"),
    }
}

/// Groups of about 57 bytes each; 8 make a token of about 1 KB, 200 one of about 16 KB.
fn groups(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("engineering-platform-team-{i:03}-cluster-access-role")).collect()
}

fn claims(issuer: &DevIssuer, i: usize, group_count: usize) -> Value {
    let mut c = issuer.claims(&format!("user-{i:07}"));
    c["groups"] = json!(groups(group_count));
    c["jti"] = json!(format!("bench-{i}"));
    c
}

fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text)?;
    Ok(())
}

/// The gateway configuration (JSON is valid YAML): username from `email`, groups with a prefix,
/// uid from `sub`, as in the README's smallest useful file.
fn jwt_entry(issuer: &DevIssuer) -> Value {
    json!({
        "issuer": {"url": issuer.url(), "certificateAuthority": issuer.ca_pem(), "audiences": [DEV_AUDIENCE]},
        "claimMappings": {
            "username": {"claim": "email", "prefix": ""},
            "groups": {"claim": "groups", "prefix": "oidc:"},
            "uid": {"claim": "sub"},
        },
        "algorithms": ["RS256", "ES256"],
    })
}

fn fixture(dir: &Path, tokens: usize, big_tokens: usize, issuers: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async {
        let main = DevIssuer::start(&[Algorithm::RS256, Algorithm::ES256]).await?;
        // The other issuers only need to exist and publish a key; none of their tokens is sent.
        let mut others = Vec::new();
        for _ in 1..issuers.max(1) {
            others.push(DevIssuer::start(&[Algorithm::ES256]).await?);
        }
        let config = |entries: Vec<Value>| json!({"logging": {"level": "info"}, "jwt": entries}).to_string();
        std::fs::write(dir.join("gateway-1.yaml"), config(vec![jwt_entry(&main)]))?;
        let all = std::iter::once(&main).chain(others.iter()).map(jwt_entry).collect();
        std::fs::write(dir.join(format!("gateway-{issuers}.yaml")), config(all))?;
        for (alg, kid) in [("rs256", "rs256-1"), ("es256", "es256-1")] {
            std::fs::write(dir.join(format!("{alg}.pem")), main.public_pem(kid).unwrap_or_default())?;
            std::fs::write(dir.join(format!("{alg}.jwk")), main.public_jwk(kid).unwrap_or_default().to_string())?;
        }
        std::fs::write(dir.join("issuer"), main.url())?;
        let mint = |kid: &str, count: usize, group_count: usize| -> anyhow::Result<Vec<String>> {
            (0..count).map(|i| main.sign(kid, &claims(&main, i, group_count))).collect()
        };
        write_lines(&dir.join("tokens-rs256.txt"), &mint("rs256-1", tokens, 8)?)?;
        write_lines(&dir.join("tokens-es256.txt"), &mint("es256-1", tokens, 8)?)?;
        write_lines(&dir.join("tokens-rs256-16k.txt"), &mint("rs256-1", big_tokens, 200)?)?;
        std::fs::write(dir.join("ready"), "")?;
        eprintln!("fixture ready in {}: issuer {}, {} other issuer(s)", dir.display(), main.url(), others.len());
        // Serve discovery and JWKS until the script kills us.
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn baseline(listen: &str, verify_with: Option<&Path>) -> anyhow::Result<()> {
    let verifier = verify_with.map(Verifier::from_fixture).transpose()?.map(std::sync::Arc::new);
    async fn answer(body: web::Bytes, verifier: web::Data<Option<std::sync::Arc<Verifier>>>) -> HttpResponse {
        let status = r#""kind":"TokenReview","status":{"authenticated":true,"user":{"username":"user-0000000@example.com","uid":"user-0000000","groups":["oidc:developers"]}}}"#;
        let review = match ReviewRequest::parse(&body) {
            Ok(review) => review,
            Err(e) => return HttpResponse::BadRequest().body(e.code()),
        };
        if let Some(verifier) = verifier.as_ref()
            && verifier.verify(review.token.expose()).is_err()
        {
            return HttpResponse::Ok()
                .content_type("application/json")
                .body(r#"{"kind":"TokenReview","status":{"authenticated":false}}"#);
        }
        HttpResponse::Ok()
            .content_type("application/json")
            .body(format!(r#"{{"apiVersion":"{}",{status}"#, review.api_version.as_str()))
    }
    let listen = listen.to_string();
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new().app_data(web::Data::new(verifier.clone())).route("/authenticate", web::post().to(answer))
        })
        .bind(listen)?
        .run()
        .await
    })?;
    Ok(())
}

/// The fixture's two signing keys, each with the validation the gateway's configuration asks
/// for (audience, `exp`, `iss`).
struct Verifier {
    rs256: (DecodingKey, Validation),
    es256: (DecodingKey, Validation),
}

impl Verifier {
    fn from_fixture(dir: &Path) -> anyhow::Result<Verifier> {
        Ok(Verifier {
            rs256: key_and_validation(&dir.join("rs256.pem"), Algorithm::RS256)?,
            es256: key_and_validation(&dir.join("es256.pem"), Algorithm::ES256)?,
        })
    }

    fn verify(&self, token: &str) -> anyhow::Result<()> {
        let (key, validation) = match jsonwebtoken::decode_header(token)?.alg {
            Algorithm::RS256 => &self.rs256,
            Algorithm::ES256 => &self.es256,
            other => anyhow::bail!("{other:?} is not a fixture algorithm"),
        };
        jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, validation)?;
        Ok(())
    }
}

fn key_and_validation(pem: &Path, alg: Algorithm) -> anyhow::Result<(DecodingKey, Validation)> {
    let pem = std::fs::read(pem)?;
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem)?,
        _ => DecodingKey::from_rsa_pem(&pem)?,
    };
    let mut validation = Validation::new(alg);
    validation.set_audience(&[DEV_AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    Ok((key, validation))
}

fn read_tokens(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let tokens: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    anyhow::ensure!(!tokens.is_empty(), "no tokens in {}", path.display());
    Ok(tokens)
}

fn verify(tokens: &Path, pem: &Path, alg: Algorithm, seconds: usize, mode: &str) -> anyhow::Result<()> {
    let tokens = read_tokens(tokens)?;
    let tokens = &tokens[..tokens.len().min(100)];
    let one: Box<dyn Fn(usize) -> bool> = match mode {
        "jsonwebtoken" => {
            let (key, validation) = key_and_validation(pem, alg)?;
            Box::new(move |i| {
                jsonwebtoken::decode::<serde_json::Map<String, Value>>(&tokens[i], &key, &validation).is_ok()
            })
        }
        "raw" => {
            use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
            use rustls_pki_types::pem::PemObject;
            let spki = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_file(pem)?;
            let key = match alg {
                Algorithm::RS256 => ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, spki.as_ref()),
                Algorithm::ES256 => ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, spki.as_ref()),
                other => anyhow::bail!("{other:?} is not a fixture algorithm"),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let split: Vec<(&str, Vec<u8>)> = tokens
                .iter()
                .map(|t| {
                    let (input, signature) = t.rsplit_once('.').unwrap_or_default();
                    (input, URL_SAFE_NO_PAD.decode(signature).unwrap_or_default())
                })
                .collect();
            Box::new(move |i| key.verify_sig(split[i].0.as_bytes(), &split[i].1).is_ok())
        }
        "gateway" => {
            use tokenreview_gateway::authn::jwt::{self, Candidates, ClaimPolicy};
            use tokenreview_gateway::authn::keys::{KeySet, admit_key};
            let jwk: Value = serde_json::from_slice(&std::fs::read(pem.with_extension("jwk"))?)?;
            let ours: jwt::Alg = format!("{alg:?}").parse().map_err(|_| anyhow::anyhow!("{alg:?}"))?;
            let set = KeySet { keys: vec![admit_key(&jwk, &[ours]).map_err(|e| anyhow::anyhow!(e))?] };
            let issuer = std::fs::read_to_string(pem.with_file_name("issuer"))?;
            let policy = ClaimPolicy::new(&[issuer.trim()], &[DEV_AUDIENCE.to_string()], 60);
            Box::new(move |i| {
                let Ok(decoded) = jwt::decode(&tokens[i]) else { return false };
                let Candidates::Keys(keys) = jwt::candidates(&set, decoded.alg, decoded.kid.as_deref()) else {
                    return false;
                };
                jwt::verify(decoded, &keys, &policy).is_ok()
            })
        }
        other => anyhow::bail!("unknown --mode {other}"),
    };
    anyhow::ensure!((0..tokens.len()).all(&one), "a fixture token did not verify in --mode {mode}");
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let (started, mut done) = (Instant::now(), 0u64);
    while Instant::now() < deadline {
        for i in 0..tokens.len() {
            std::hint::black_box(one(i));
        }
        done += tokens.len() as u64;
    }
    println!("{:.0}", done as f64 / started.elapsed().as_secs_f64());
    Ok(())
}

/// One HTTP/1.1 keep-alive connection, enough to post reviews and read the answers.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(addr: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Connection { writer: stream.try_clone()?, reader: BufReader::new(stream) })
    }

    fn post(&mut self, body: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        write!(
            self.writer,
            "POST /authenticate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer)?;
        Ok((status, answer))
    }
}

fn check(addr: &str, tokens: &Path, sample: usize, count: usize, version: &str, fresh: bool) -> anyhow::Result<()> {
    let tokens = read_tokens(tokens)?;
    let version = match version {
        "v1beta1" => ApiVersion::V1beta1,
        _ => ApiVersion::V1,
    };
    let body = |token: &str| {
        json!({"apiVersion": version.as_str(), "kind": "TokenReview", "spec": {"token": token}}).to_string()
    };
    let mut connection = Connection::open(addr)?;
    if count > 0 {
        let bodies: Vec<String> = tokens.iter().map(|t| body(t)).collect();
        let run = std::process::id();
        for i in 0..count {
            let body = &bodies[i % bodies.len()];
            let (status, _) = if fresh {
                let aud = format!(r#","audiences":["fresh-{run}-{i}"]}}}}"#);
                connection.post(&format!("{}{aud}", &body[..body.len() - 2]))?
            } else {
                connection.post(body)?
            };
            anyhow::ensure!(status == 200, "HTTP {status}");
        }
        return Ok(());
    }
    let step = (tokens.len() / sample.max(1)).max(1);
    let mut checked = 0;
    for token in tokens.iter().step_by(step).take(sample.max(1)) {
        let (status, answer) = connection.post(&body(token))?;
        let answer: Value = serde_json::from_slice(&answer)?;
        let ok = status == 200
            && answer["apiVersion"] == version.as_str()
            && answer["status"]["authenticated"] == true
            && answer["status"]["user"]["username"].as_str().is_some_and(|u| !u.is_empty());
        anyhow::ensure!(ok, "not authenticated: HTTP {status} {answer}");
        checked += 1;
    }
    println!("{checked} sampled answers are authenticated: true");
    Ok(())
}

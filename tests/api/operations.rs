//! Running it for real: TLS and mTLS, caller tokens, limits, reload, metrics, shutdown.

use std::io::Write;
use std::path::Path;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokenreview_gateway::certs::Ca;
use tokenreview_gateway::config::{CallerAuthSettings, TlsSettings};
use tokenreview_gateway::dev::{DevIssuer, Fault};
use tokenreview_gateway::startup::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A CA that issues server and client certificates (the library's, as `certs` uses it).
struct Pki(Ca);

impl Pki {
    fn new(name: &str) -> Pki {
        Pki(Ca::new(name, 1).unwrap())
    }

    fn ca_pem(&self) -> &str {
        &self.0.pair.cert_pem
    }

    /// (certificate PEM, key PEM)
    fn issue(&self, cn: &str, sans: &[&str], client: bool) -> (String, String) {
        let pair = if client {
            self.0.client(cn, &sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(), 1).unwrap()
        } else {
            self.0.server(&sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(), 1).unwrap()
        };
        (pair.cert_pem, pair.key_pem)
    }

    fn write_server_pair(&self, dir: &Path) {
        let (cert, key) = self.issue("", &["localhost", "127.0.0.1"], false);
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
    }
}

fn https_client(ca_pem: &str, identity: Option<(String, String)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap())
        .no_proxy();
    if let Some((cert, key)) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn post_token(client: &reqwest::Client, url: &str, token: &str) -> Result<(u16, Value), reqwest::Error> {
    let resp = client
        .post(format!("{url}/authenticate"))
        .header("Content-Type", "application/json")
        .body(review_body(V1, token).to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, serde_json::from_str(&resp.text().await?).unwrap()))
}

struct TlsGateway {
    url: String,
    issuer: DevIssuer,
    server_pki: Pki,
    client_pki: Pki,
    dir: tempfile::TempDir,
}

async fn spawn_tls_gateway(allowed: &[&str]) -> TlsGateway {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let (server_pki, client_pki) = (Pki::new("serving CA"), Pki::new("webhook client CA"));
    let dir = tempfile::tempdir().unwrap();
    server_pki.write_server_pair(dir.path());
    std::fs::write(dir.path().join("client-ca.crt"), client_pki.ca_pem()).unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let mut settings = issuer.gateway_settings("127.0.0.1:0");
    settings.server.tls = Some(TlsSettings {
        cert_file: path("tls.crt"),
        key_file: path("tls.key"),
        client_ca_file: Some(path("client-ca.crt")),
        allowed_client_names: allowed.iter().map(|s| s.to_string()).collect(),
        reload_interval_seconds: 1,
    });
    settings.validate().unwrap();
    let app = Application::build(&settings, None).await.unwrap();
    let url = format!("https://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TlsGateway { url, issuer, server_pki, client_pki, dir }
}

#[tokio::test]
async fn mtls_admits_only_allowed_client_identities_from_the_client_ca() {
    let gw = spawn_tls_gateway(&["kube-apiserver"]).await;
    let token = gw.issuer.sign("rs256-1", &gw.issuer.claims("alice")).unwrap();
    let apiserver = gw.client_pki.issue("kube-apiserver", &[], true);
    let (status, answer) =
        post_token(&https_client(gw.server_pki.ca_pem(), Some(apiserver)), &gw.url, &token).await.unwrap();
    assert_eq!((status, &answer["status"]["authenticated"]), (200, &json!(true)));

    let refused = [
        ("no client certificate", None),
        ("another CA", Some(Pki::new("other CA").issue("kube-apiserver", &[], true))),
        ("same CA, not allowed", Some(gw.client_pki.issue("system:node:worker-1", &[], true))),
    ];
    for (case, identity) in refused {
        let result = post_token(&https_client(gw.server_pki.ca_pem(), identity), &gw.url, &token).await;
        assert!(result.is_err(), "{case}: the handshake must fail, got {result:?}");
    }
}

#[tokio::test]
async fn a_dns_san_on_the_allow_list_is_admitted() {
    let gw = spawn_tls_gateway(&["apiserver.cluster.local"]).await;
    let token = gw.issuer.sign("rs256-1", &gw.issuer.claims("alice")).unwrap();
    let identity = gw.client_pki.issue("something-else", &["apiserver.cluster.local"], true);
    let (status, _) = post_token(&https_client(gw.server_pki.ca_pem(), Some(identity)), &gw.url, &token).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_rotated_serving_certificate_is_picked_up_without_restart() {
    let gw = spawn_tls_gateway(&["kube-apiserver"]).await;
    let token = gw.issuer.sign("rs256-1", &gw.issuer.claims("alice")).unwrap();
    let identity = gw.client_pki.issue("kube-apiserver", &[], true);
    let next_ca = Pki::new("next serving CA");
    let trusting_next = https_client(next_ca.ca_pem(), Some(identity));
    assert!(post_token(&trusting_next, &gw.url, &token).await.is_err(), "the old certificate is not from the next CA");

    next_ca.write_server_pair(gw.dir.path());
    let mut rotated = false;
    for _ in 0..50 {
        if let Ok((200, _)) = post_token(&trusting_next, &gw.url, &token).await {
            rotated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(rotated, "the new certificate is served");
}

#[tokio::test]
async fn callers_must_present_the_configured_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caller-token");
    std::fs::write(&file, "s3cret-caller-token-0123456789\n").unwrap();
    let app = spawn_app_with(|s| {
        s.server.auth = Some(CallerAuthSettings { bearer_token_file: file.to_str().unwrap().to_string() })
    })
    .await;
    let body = review_body(V1, &app.token("rs256-1", "alice")).to_string();
    let send = |auth: Option<&'static str>| {
        let mut req = app
            .client
            .post(format!("{}/authenticate", app.address))
            .header("Content-Type", "application/json")
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    let ok = send(Some("Bearer s3cret-caller-token-0123456789")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(serde_json::from_str::<Value>(&ok.text().await.unwrap()).unwrap(), authenticated(V1, "alice"));
    for auth in [None, Some("Bearer wrong"), Some("Basic czNjcmV0"), Some("Bearer s3cret-caller-token-012345678")] {
        let resp = send(auth).await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap(),
            json!({"error": "unauthorized", "message": "a valid caller bearer token is required"})
        );
    }
}

#[tokio::test]
async fn a_body_that_trickles_is_cut_off_with_408() {
    let app = spawn_app_with(|s| s.server.body_timeout_seconds = 1).await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /authenticate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"kind\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains(r#""error":"body_timeout""#), "{response}");
}

/// Starts a review that hangs on a dripping JWKS fetch; returns once the fetch is in progress.
async fn hang_one_review(app: &TestApp) -> tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>> {
    app.issuer.set_fault(Fault::Drip);
    let before = app.issuer.jwks_requests();
    let body = review_body(V1, &app.token_with_unknown_kid("rotated-in")).to_string();
    let (client, url) = (app.client.clone(), format!("{}/authenticate", app.address));
    let task =
        tokio::spawn(
            async move { client.post(url).header("Content-Type", "application/json").body(body).send().await },
        );
    while app.issuer.jwks_requests() == before {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    task
}

#[tokio::test]
async fn when_saturated_the_answer_is_an_immediate_transient_error() {
    let app = spawn_app_with(|s| {
        s.server.max_in_flight = 1;
        s.keys.request_timeout_seconds = 20;
    })
    .await;
    let slow = hang_one_review(&app).await;
    let answer = app.review(&app.token("rs256-1", "bob")).await;
    assert_eq!(
        answer,
        json!({"apiVersion": V1, "kind": "TokenReview", "status": {"authenticated": false,
            "error": "the token review gateway is at capacity; try again later"}})
    );
    slow.abort();
}

#[tokio::test]
async fn a_review_over_its_deadline_is_a_transient_error() {
    let app = spawn_app_with(|s| {
        s.server.review_timeout_seconds = 1;
        s.keys.request_timeout_seconds = 20;
    })
    .await;
    let slow = hang_one_review(&app).await;
    let (status, text) = {
        let resp = slow.await.unwrap().unwrap();
        (resp.status(), resp.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"apiVersion": V1, "kind": "TokenReview", "status": {"authenticated": false,
            "error": "the token review did not finish in time; try again later"}})
    );
}

#[tokio::test]
async fn the_ops_listener_serves_health_and_metrics_but_never_reviews() {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let mut settings = issuer.gateway_settings("127.0.0.1:0");
    settings.server.ops_listen = Some("127.0.0.1:0".into());
    let app = Application::build(&settings, None).await.unwrap();
    let ops = format!("http://127.0.0.1:{}", app.ops_port().unwrap());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(client.get(format!("{ops}{path}")).send().await.unwrap().status(), 200, "{path}");
    }
    let token = issuer.sign("rs256-1", &issuer.claims("alice")).unwrap();
    let resp = client
        .post(format!("{ops}/authenticate"))
        .header("Content-Type", "application/json")
        .body(review_body(V1, &token).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn metrics_show_every_documented_series_after_a_few_reviews() {
    let app = spawn_app().await;
    let token = app.token("rs256-1", "alice");
    app.review(&token).await;
    app.review(&token).await;
    app.review("garbage").await;
    app.review(&app.token_with_unknown_kid("k1")).await;
    app.review(&app.token_with_unknown_kid("k2")).await;
    let (status, text) = app.get("/metrics").await;
    assert_eq!(status, 200);
    let url = app.issuer.url();
    for series in [
        format!("tokenreview_gateway_reviews_total{{issuer=\"{url}\",result=\"authenticated\",reason=\"\"}} 2"),
        "tokenreview_gateway_reviews_total{issuer=\"\",result=\"rejected\",reason=\"malformed_token\"} 1".to_string(),
        format!("tokenreview_gateway_reviews_total{{issuer=\"{url}\",result=\"rejected\",reason=\"unknown_kid\"}} 2"),
        "tokenreview_gateway_cache_requests_total{result=\"hit\"} 1".to_string(),
        "tokenreview_gateway_review_duration_seconds_count 5".to_string(),
        format!("tokenreview_gateway_key_fetches_total{{issuer=\"{url}\",result=\"ok\"}} 2"),
        format!("tokenreview_gateway_keys{{issuer=\"{url}\"}} 3"),
        format!("tokenreview_gateway_key_refresh_cooldown_hits_total{{issuer=\"{url}\"}} 1"),
        format!("tokenreview_gateway_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(text.lines().any(|l| l == series), "missing {series}\n{text}");
    }
    for name in ["tokenreview_gateway_key_last_success_timestamp_seconds", "tokenreview_gateway_key_staleness_seconds"]
    {
        assert!(text.lines().any(|l| l.starts_with(&format!("{name}{{issuer=\"{url}\"}} "))), "missing {name}\n{text}");
    }
}

#[tokio::test]
async fn a_config_change_takes_effect_without_dropping_requests_and_a_bad_one_is_refused() {
    let first = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let second = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let yaml = |issuers: &[(&str, &str)]| config_yaml(issuers, "server:\n  listen: 127.0.0.1:0\n");
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    file.write_all(yaml(&[(first.url(), first.ca_pem())]).as_bytes()).unwrap();
    let settings = tokenreview_gateway::config::Settings::load(file.path()).unwrap();
    let app = Application::build(&settings, Some(file.path().to_path_buf())).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let address_for_metrics = address.clone();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let review = move |token: String| {
        let (client, address) = (client.clone(), address.clone());
        async move {
            let resp = client
                .post(format!("{address}/authenticate"))
                .header("Content-Type", "application/json")
                .body(review_body(V1, &token).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap()
        }
    };
    let from_second = second.sign("rs256-1", &second.claims("bob")).unwrap();
    assert_eq!(review(from_second.clone()).await["status"]["authenticated"], false);

    // Keep reviews of the first issuer flowing while the file changes.
    let steady = {
        let review = review.clone();
        let tokens: Vec<String> =
            (0..300).map(|i| first.sign("rs256-1", &first.claims(&format!("user{i}"))).unwrap()).collect();
        tokio::spawn(async move {
            let mut authenticated = 0;
            for t in tokens {
                if review(t).await["status"]["authenticated"] == true {
                    authenticated += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            authenticated
        })
    };
    std::fs::write(file.path(), yaml(&[(first.url(), first.ca_pem()), (second.url(), second.ca_pem())])).unwrap();
    let mut reloaded = false;
    for i in 0..100 {
        let token = second.sign("rs256-1", &second.claims(&format!("bob{i}"))).unwrap();
        if review(token).await["status"]["authenticated"] == true {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the added issuer is trusted after the reload");
    assert_eq!(steady.await.unwrap(), 300, "no review failed during the reload");

    let scraper = reqwest::Client::new();
    let metric = |text: &str, series: &str| {
        text.lines().find_map(|l| l.strip_prefix(series)).map(|v| v.trim().parse::<f64>().unwrap()).unwrap_or(0.0)
    };
    std::fs::write(file.path(), "jwt: [ this is not yaml").unwrap();
    let mut refused = false;
    for _ in 0..100 {
        let text = scraper.get(format!("{}/metrics", address_for_metrics)).send().await.unwrap().text().await.unwrap();
        if metric(&text, "tokenreview_gateway_config_reloads_total{result=\"failure\"}") >= 1.0 {
            assert_eq!(metric(&text, "tokenreview_gateway_config_reloads_total{result=\"success\"}"), 1.0);
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the broken file is counted as a failed reload");
    let still = second.sign("rs256-1", &second.claims("carol")).unwrap();
    assert_eq!(review(still).await["status"]["authenticated"], true, "the last good configuration keeps serving");
}

#[tokio::test]
async fn the_certs_command_writes_a_working_mtls_setup() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tls");
    let bin = env!("CARGO_BIN_EXE_tokenreview-gateway");
    let run = |extra: &[&str]| {
        let mut args = vec!["certs", "--out", out.to_str().unwrap(), "--hosts", "localhost,127.0.0.1"];
        args.extend_from_slice(extra);
        std::process::Command::new(bin).args(&args).output().unwrap()
    };
    let first = run(&[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    for key in ["ca.key", "tls.key", "client-ca.key", "apiserver.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let again = run(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("use --force"));

    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let file = |f: &str| out.join(f).to_str().unwrap().to_string();
    let mut settings = issuer.gateway_settings("127.0.0.1:0");
    settings.server.tls = Some(TlsSettings {
        cert_file: file("tls.crt"),
        key_file: file("tls.key"),
        client_ca_file: Some(file("client-ca.crt")),
        allowed_client_names: vec!["kube-apiserver".into()],
        reload_interval_seconds: 10,
    });
    let app = Application::build(&settings, None).await.unwrap();
    let url = format!("https://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let apiserver = https_client(&read("ca.crt"), Some((read("apiserver.crt"), read("apiserver.key"))));
    let token = issuer.sign("rs256-1", &issuer.claims("alice")).unwrap();
    let (status, answer) = post_token(&apiserver, &url, &token).await.unwrap();
    assert_eq!((status, &answer["status"]["authenticated"]), (200, &json!(true)));
    let without_client_cert = post_token(&https_client(&read("ca.crt"), None), &url, &token).await;
    assert!(without_client_cert.is_err(), "without the client certificate the handshake fails");
}

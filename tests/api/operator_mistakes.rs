//! The usual mistakes of someone writing a first configuration and wiring up kube-apiserver,
//! made against the real binary: each gets an error that says what is wrong and what to do.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_tokenreview-gateway");

async fn run(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN).args(&args).env_remove("RUST_LOG").stdin(Stdio::null()).output().unwrap()
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn check_fails_on_a_configuration_that_authenticates_nobody_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("gateway.yaml");
    std::fs::write(&empty, "server:\n  listen: 127.0.0.1:8443\n").unwrap();
    let out = run(&["check", "--offline", "--config", empty.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no jwt issuer and no introspection endpoint"), "{stderr}");
    assert!(stderr.contains("--allow-empty"), "{stderr}");

    let out = run(&["check", "--offline", "--allow-empty", "--config", empty.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test]
async fn kubeconfig_refuses_a_swapped_client_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["certs", "--out", dir.path().to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (cert, key) = (dir.path().join("apiserver.crt"), dir.path().join("apiserver.key"));
    let server = "https://127.0.0.1:8443/authenticate";
    let out = run(&[
        "kubeconfig",
        "--server",
        server,
        "--client-cert",
        key.to_str().unwrap(),
        "--client-key",
        cert.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no kubeconfig is printed");
    assert!(text(&out.stderr).contains("the two look swapped"), "{}", text(&out.stderr));

    let http = run(&[
        "kubeconfig",
        "--server",
        "http://127.0.0.1:8443/authenticate",
        "--client-cert",
        cert.to_str().unwrap(),
        "--client-key",
        key.to_str().unwrap(),
    ])
    .await;
    assert_eq!(http.status.code(), Some(1));
    assert!(text(&http.stderr).contains("plain http"), "{}", text(&http.stderr));

    let short = dir.path().join("caller-token");
    std::fs::write(&short, "changeme\n").unwrap();
    let out = run(&["kubeconfig", "--server", server, "--token-file", short.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("under 16"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn command_help_keeps_the_global_flags_under_their_own_heading() {
    for command in ["certs", "kubeconfig", "check"] {
        let out = run(&[command, "--help"]).await;
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        let (own, global) = help
            .split_once("Global options:")
            .unwrap_or_else(|| panic!("`{command} --help` has no Global options heading:\n{help}"));
        assert!(global.contains("--log-format") && global.contains("--log-level"), "{help}");
        assert!(!own.contains("--log-format") && !own.contains("--log-level"), "{help}");
    }
}

/// `dev` with its stdout and stderr on one pipe, as on a terminal: the banner comes out whole,
/// with no start-up log line inside or after it, up to the log line of the first review.
#[tokio::test]
async fn the_dev_banner_comes_after_start_up_in_one_piece() {
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(BIN)
        .args(["dev", "--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = |rx: &std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(std::time::Duration::from_secs(120)).expect("dev keeps printing")
    };
    let mut lines = Vec::new();
    while !lines.last().is_some_and(|l: &String| l.starts_with("Press Ctrl-C")) {
        lines.push(next(&rx));
    }
    let gateway = lines.iter().find_map(|l| l.strip_prefix("gateway: ")).unwrap().to_string();
    let token = lines.iter().find_map(|l| l.strip_prefix("token: ")).unwrap().to_string();
    let answer: Value = reqwest::Client::new()
        .post(&gateway)
        .header("Content-Type", "application/json")
        .body(review_body(V1, &token).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|body| serde_json::from_str(&body).unwrap())
        .unwrap();
    assert_eq!(answer["status"]["authenticated"], true);
    while !lines.last().unwrap().contains("token review") {
        lines.push(next(&rx));
    }
    child.kill().unwrap();
    let _ = child.wait();

    let first = lines.iter().position(|l| l.starts_with("tokenreview-gateway dev:")).unwrap();
    let last = lines.iter().position(|l| l.starts_with("Press Ctrl-C")).unwrap();
    let banner = &lines[first..=last];
    assert_eq!(banner.len(), 12, "the banner is interrupted:\n{}", lines.join("\n"));
    for line in &lines {
        for startup in ["starting service", "runtime found", "workers"] {
            assert!(!line.contains(startup), "an actix start-up line in dev's output: {line}\n{}", lines.join("\n"));
        }
    }
}

/// A stopped issuer: `review` and `check` say once, per command, that its keys could not be
/// fetched and why, naming the URL once; the server's log line does not claim keys it lacks.
#[tokio::test]
async fn a_failed_key_fetch_is_reported_once_with_its_url_and_cause() {
    use jsonwebtoken::Algorithm;
    use tokenreview_gateway::dev::DevIssuer;
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let token = issuer.sign("rs256-1", &issuer.claims("alice")).unwrap();
    let url = issuer.url().to_string();
    issuer.stop().await;
    let discovery = format!("{url}/.well-known/openid-configuration");
    let path = config.path().to_str().unwrap();

    let out = run(&["review", "--config", path, "--token", &token]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches(&discovery).count(), 1, "the URL once:\n{stderr}");
    assert!(
        stderr.contains(&format!("no signing keys could be fetched from {url}: request to {discovery} failed: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("error sending request for url"), "{stderr}");
    assert!(!stderr.contains("try again later") && !stderr.contains("previous keys"), "{stderr}");

    let out = run(&["check", "--config", path]).await;
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(all.matches(&discovery).count(), 1, "one line for the one failed fetch:\n{all}");

    let (child, _port, logs) = crate::cli::spawn_serve(config.path(), "info").await;
    crate::cli::terminate(child).await;
    let logs = logs.join().unwrap();
    let failures: Vec<&str> = logs.lines().filter(|l| l.contains("key fetch failed")).collect();
    assert!(!failures.is_empty(), "{logs}");
    for line in failures {
        assert!(line.contains("no keys for this issuer yet"), "{line}");
        assert_eq!(line.matches(&discovery).count(), 1, "{line}");
    }
}

/// Runs `check --offline` on `yaml` written as `dir/gateway.yaml`, from `cwd`, with `env`.
async fn check_file(dir: &std::path::Path, yaml: &str, cwd: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let config = dir.join("gateway.yaml");
    std::fs::write(&config, yaml).unwrap();
    let (cwd, env): (std::path::PathBuf, Vec<(String, String)>) =
        (cwd.to_path_buf(), env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["check", "--offline", "--allow-empty", "--config", config.to_str().unwrap()])
            .current_dir(cwd)
            .envs(env)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stderr))
}

#[tokio::test]
async fn every_unknown_key_is_reported_at_once_with_the_nearest_valid_key() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "servr:\n  listen: 127.0.0.1:8443\ncache:\n  ttl: 60\nkeys:\n  startupWait: 3\njwt:\n  - issuer:\n      url: https://idp.example.com\n      audences: [kubernetes]\n    claimMappings:\n      username: {claim: email, prefix: \"\"}\n";
    let (code, stderr) = check_file(dir.path(), yaml, dir.path(), &[]).await;
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "servr: unknown key; did you mean `server`?",
        "cache.ttl: unknown key; did you mean `ttlSeconds`?",
        "keys.startupWait: unknown key; did you mean `startupWaitSeconds`?",
        "jwt[0].issuer.audences: unknown key; did you mean `audiences`?",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in\n{stderr}");
    }
}

#[tokio::test]
async fn a_misspelled_environment_override_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = check_file(
        dir.path(),
        "server:\n  listen: 127.0.0.1:8443\n",
        dir.path(),
        &[("TOKENREVIEW_GATEWAY__CACHE__TTL_SECOND", "60")],
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("TOKENREVIEW_GATEWAY__CACHE__TTL_SECOND"), "{stderr}");
    assert!(stderr.contains("TOKENREVIEW_GATEWAY__CACHE__TTL_SECONDS"), "the right name is suggested: {stderr}");
}

#[tokio::test]
async fn relative_paths_are_resolved_from_the_config_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["certs", "--out", dir.path().join("tls").to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let yaml =
        "server:\n  tls:\n    certFile: tls/tls.crt\n    keyFile: tls/tls.key\n    clientCAFile: tls/client-ca.crt\n";
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, stderr) = check_file(dir.path(), yaml, elsewhere.path(), &[]).await;
    assert_eq!(code, 0, "TLS files next to the config file are found from any working directory: {stderr}");

    let missing = "server:\n  tls:\n    certFile: tls/missing.crt\n    keyFile: tls/tls.key\n";
    let (code, stderr) = check_file(dir.path(), missing, elsewhere.path(), &[]).await;
    assert_eq!(code, 1, "{stderr}");
    let resolved = std::path::absolute(dir.path().join("tls/missing.crt")).unwrap();
    assert!(
        stderr.contains(&format!("server.tls.certFile: file not found: {}", resolved.display())),
        "the message shows the resolved path: {stderr}"
    );
}

#[tokio::test]
async fn a_file_path_in_certificate_authority_gets_told_the_field_takes_pem_text() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "jwt:\n  - issuer:\n      url: https://idp.example.com\n      audiences: [kubernetes]\n      certificateAuthority: /etc/ssl/idp-ca.pem\n    claimMappings:\n      username: {claim: email, prefix: \"\"}\n";
    let (code, stderr) = check_file(dir.path(), yaml, dir.path(), &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("jwt[0].issuer.certificateAuthority: takes the PEM text"), "{stderr}");
    assert!(stderr.contains("/etc/ssl/idp-ca.pem"), "{stderr}");
}

#[tokio::test]
async fn a_directory_as_config_is_called_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), "server:\n  listen: 127.0.0.1:8443\n").unwrap();
    let out = run(&["check", "--config", dir.path().to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is a directory"), "{stderr}");
    assert!(stderr.contains("gateway.yaml"), "the files in it are named: {stderr}");
}

/// `review --explain` on the usual failures: each FAILED line carries the values a person
/// needs (the token's against the configuration's), no Rust debug text.
#[tokio::test]
async fn review_explain_says_why_with_the_values_involved() {
    use jsonwebtoken::Algorithm;
    use serde_json::json;
    use tokenreview_gateway::dev::DevIssuer;
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    let rule = "    claimValidationRules:\n      - expression: \"claims.hd == 'example.com'\"\n        message: only example.com accounts\n";
    let dir = tempfile::tempdir().unwrap();
    let (plain, ruled) = (dir.path().join("plain.yaml"), dir.path().join("ruled.yaml"));
    std::fs::write(&plain, config_yaml(&[(issuer.url(), issuer.ca_pem())], "")).unwrap();
    std::fs::write(&ruled, config_yaml(&[(issuer.url(), issuer.ca_pem())], "") + rule).unwrap();
    let explain = |config: &std::path::Path, token: String| {
        let config = config.to_str().unwrap().to_string();
        async move {
            let out = run(&["review", "--config", &config, "--explain", "--token", &token]).await;
            assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
            text(&out.stderr)
        }
    };

    let mut claims = issuer.claims("alice");
    claims["aud"] = json!(["someone-else"]);
    let stderr = explain(&plain, issuer.sign("rs256-1", &claims).unwrap()).await;
    assert!(
        stderr.contains(
            "FAILED (wrong_audience): the token's aud is [\"someone-else\"]; this issuer accepts [\"kubernetes\"]"
        ),
        "{stderr}"
    );

    let mut claims = issuer.claims("alice");
    claims["exp"] = json!(now() - 3600);
    let stderr = explain(&plain, issuer.sign("rs256-1", &claims).unwrap()).await;
    assert!(stderr.contains("FAILED (expired): exp is "), "{stderr}");
    assert!(stderr.contains(" s ago, now ") && stderr.contains("beyond the 60 s leeway"), "{stderr}");

    let stderr = explain(&ruled, issuer.sign("rs256-1", &issuer.claims("alice")).unwrap()).await;
    assert!(
        stderr.contains("claim rule claims.hd == 'example.com': FAILED (expression_failed): evaluation error: "),
        "{stderr}"
    );
    assert!(stderr.contains("its message: \"only example.com accounts\""), "{stderr}");

    for debug_text in ["Some(", "Peeked", "candidate(s)"] {
        assert!(!stderr.contains(debug_text), "Rust debug text {debug_text:?} in\n{stderr}");
    }
}

/// A token whose kid names a key the JWKS publishes but the gateway dropped: `--explain` says
/// which key and why, instead of only "not in the key set".
#[tokio::test]
async fn review_explain_names_a_dropped_key_and_why() {
    use jsonwebtoken::Algorithm;
    use serde_json::json;
    use tokenreview_gateway::dev::DevIssuer;
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.unwrap();
    // RFC 8037's example Ed25519 key: EdDSA is not in the default algorithms, so it is dropped.
    issuer.publish_raw(
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "eddsa-1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
    );
    let config = config_file(issuer.url(), issuer.ca_pem(), "");
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("eddsa-1".into());
    let token = issuer.sign_with_header("rs256-1", &header, &issuer.claims("alice")).unwrap();
    let out = run(&["review", "--config", config.path().to_str().unwrap(), "--explain", "--token", &token]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "key: FAILED (unknown_kid): kid \"eddsa-1\" is not in the issuer's key set: the issuer's JWKS has it, but \
             the gateway dropped it at admission: key \"eddsa-1\" dropped: EdDSA is not allowed for this issuer"
        ),
        "{stderr}"
    );
}

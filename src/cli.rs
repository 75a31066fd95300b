//! The command line: `serve`, `dev`, `review`, `check`, `kubeconfig`, and `login` (the
//! kubectl exec plugin, in `crate::login`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::{Parser, Subcommand};

use crate::authn::Authenticator;
use crate::config::{LogFormat, Settings};
use crate::dev::DevIssuer;
use crate::metrics::Metrics;
use crate::review::{ApiVersion, ReviewResponse};
use crate::startup::Application;
use crate::state::fetch_keys_at_startup;
use crate::verdict::Outcome;

/// A Kubernetes TokenReview webhook that verifies OIDC JWTs against configured issuers.
#[derive(Debug, Parser)]
#[command(name = "tokenreview-gateway", version, about)]
pub struct Cli {
    /// Log format (overrides logging.format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter such as info or debug (overrides logging.level; RUST_LOG wins over both).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server.
    Serve {
        /// Configuration file (YAML, or TOML with a .toml extension).
        #[arg(long, short, env = "TOKENREVIEW_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Run a built-in development issuer plus the gateway on loopback, and print a token and
    /// the curl command that gets it reviewed.
    Dev {
        /// Gateway listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Review one token with a configuration and print the TokenReview answer (stdout) and the
    /// reason (stderr). Exit code: 0 authenticated, 1 rejected, 2 could not decide.
    Review {
        /// Configuration file.
        #[arg(long, short, env = "TOKENREVIEW_GATEWAY_CONFIG")]
        config: PathBuf,
        /// The token; read from stdin when absent.
        #[arg(long)]
        token: Option<String>,
        /// spec.audiences of the simulated request (repeatable).
        #[arg(long = "audience")]
        audiences: Vec<String>,
        /// Also print (on stderr) each step: the issuer matched, the key, the checks, every
        /// mapping and rule with its result, up to the first failure.
        #[arg(long)]
        explain: bool,
    },
    /// Validate a configuration and fetch every issuer's keys. Exit code 0 only if all is well.
    Check {
        /// Configuration file.
        #[arg(long, short, env = "TOKENREVIEW_GATEWAY_CONFIG")]
        config: PathBuf,
        /// Validate and compile only (CEL, TLS files, CAs): fetch no keys, so it works where the
        /// issuers cannot be reached, such as CI.
        #[arg(long)]
        offline: bool,
    },
    /// Write a serving CA and certificate for the gateway, and a dedicated client CA and client
    /// certificate for kube-apiserver (mTLS), into a directory.
    Certs {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Host names and IP addresses of the serving certificate, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        hosts: Vec<String>,
        /// Subject CN of the client certificate (put it in server.tls.allowedClientNames).
        #[arg(long, default_value = "kube-apiserver")]
        client_name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// kubectl's exec credential plugin: log in at an OpenID Connect provider and print an
    /// ExecCredential (kubelogin's get-token flags). `login setup` shows what the gateway
    /// would make of the token and the kubeconfig user; `login clean` empties the cache.
    #[command(visible_alias = "get-token")]
    Login(Box<crate::login::LoginCommand>),
    /// Print the kubeconfig for kube-apiserver's --authentication-token-webhook-config-file.
    Kubeconfig {
        /// The gateway URL as the apiserver reaches it, e.g. https://127.0.0.1:8443/authenticate.
        #[arg(long)]
        server: String,
        /// CA that signed the gateway's serving certificate (embedded as certificate-authority-data).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Client certificate kube-apiserver presents to the gateway (embedded).
        #[arg(long, requires = "client_key")]
        client_cert: Option<PathBuf>,
        /// Key of the client certificate (embedded).
        #[arg(long, requires = "client_cert")]
        client_key: Option<PathBuf>,
        /// File with the bearer token kube-apiserver sends (server.auth.bearerTokenFile), embedded.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Print a kubectl user's kubeconfig instead, whose user logs in with
        /// `tokenreview-gateway login` at this issuer: --server is then the kube-apiserver URL
        /// and --ca the cluster's CA.
        #[arg(long, requires = "oidc_client_id", conflicts_with_all = ["client_cert", "token_file"])]
        oidc_issuer_url: Option<String>,
        /// The login's client id (with --oidc-issuer-url).
        #[arg(long, requires = "oidc_issuer_url")]
        oidc_client_id: Option<String>,
        /// Scopes the login asks for besides openid (with --oidc-issuer-url; repeatable).
        #[arg(long, value_delimiter = ',', requires = "oidc_issuer_url")]
        oidc_extra_scope: Vec<String>,
    },
}

fn init_logs(cli: &Cli, settings: Option<&Settings>) {
    let format = cli.log_format.or(settings.map(|s| s.logging.format)).unwrap_or_default();
    let level = cli.log_level.as_deref().or(settings.and_then(|s| s.logging.level.as_deref()));
    // The servers log a line per review: batched. The one-shot commands write as they go.
    let batched = matches!(cli.command, Command::Serve { .. } | Command::Dev { .. });
    crate::telemetry::init(format, level, batched);
}

fn load(cli: &Cli, path: &Path) -> Option<Settings> {
    match Settings::load(path) {
        Ok(s) => {
            init_logs(cli, Some(&s));
            if let Some(key) = s.logging.token_hash_key_file.as_ref().and_then(|f| std::fs::read(f).ok()) {
                crate::fingerprint::set_token_hash_key(&key);
            }
            Some(s)
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let code = run_command(&cli).await;
    // The servers' log lines may still be waiting in the batch buffer.
    crate::telemetry::flush();
    code
}

async fn run_command(cli: &Cli) -> ExitCode {
    match &cli.command {
        Command::Serve { config } => {
            let Some(settings) = load(cli, config) else { return ExitCode::from(2) };
            match serve(&settings, config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dev { listen } => {
            init_logs(cli, None);
            match dev(listen).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Review { config, token, audiences, explain } => {
            let Some(settings) = load(cli, config) else { return ExitCode::from(2) };
            review(&settings, token.as_deref(), audiences, *explain).await
        }
        Command::Check { config, offline } => {
            let Some(settings) = load(cli, config) else { return ExitCode::FAILURE };
            check(&settings, *offline).await
        }
        Command::Certs { out, hosts, client_name, days, force } => {
            match crate::certs::write_all(out, hosts, client_name, *days, *force) {
                Ok(()) => {
                    println!("wrote {} in {}", crate::certs::FILES.join(", "), out.display());
                    println!(
                        "gateway: server.tls.certFile tls.crt, keyFile tls.key, clientCAFile client-ca.crt, allowedClientNames [{client_name}]"
                    );
                    println!(
                        "kube-apiserver: tokenreview-gateway kubeconfig --ca ca.crt --client-cert apiserver.crt --client-key apiserver.key --server URL"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Login(login) => {
            // Quiet by default: kubectl shows the plugin's stderr on every call.
            crate::telemetry::init(
                cli.log_format.unwrap_or_default(),
                Some(cli.log_level.as_deref().unwrap_or("warn")),
                false,
            );
            crate::login::run(login).await
        }
        Command::Kubeconfig {
            server,
            ca,
            client_cert,
            client_key,
            token_file,
            oidc_issuer_url,
            oidc_client_id,
            oidc_extra_scope,
        } => {
            let client = KubeconfigClient {
                cert: client_cert.as_deref(),
                key: client_key.as_deref(),
                token_file: token_file.as_deref(),
            };
            let text = match (oidc_issuer_url, oidc_client_id) {
                (Some(issuer), Some(client_id)) => {
                    let mut args = vec!["login".to_string(), format!("--oidc-issuer-url={issuer}")];
                    args.push(format!("--oidc-client-id={client_id}"));
                    args.extend(oidc_extra_scope.iter().map(|s| format!("--oidc-extra-scope={s}")));
                    user_kubeconfig(server, ca.as_deref(), &args)
                }
                _ => kubeconfig(server, ca.as_deref(), &client),
            };
            match text {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(settings: &Settings, config: &Path) -> anyhow::Result<()> {
    if settings.jwt.is_empty() {
        tracing::warn!("no issuers are configured: every token will be rejected");
    }
    let app = Application::build(settings, Some(config.to_path_buf())).await?;
    tracing::info!(
        listen = %settings.server.listen,
        port = app.port(),
        ops_port = app.ops_port(),
        tls = settings.server.tls.is_some(),
        issuers = settings.jwt.len(),
        "serving"
    );
    app.run_until_stopped().await?;
    Ok(())
}

async fn dev(listen: &str) -> anyhow::Result<()> {
    use jsonwebtoken::Algorithm;
    let issuer = DevIssuer::start(&[Algorithm::RS256, Algorithm::ES256]).await?;
    let settings = issuer.gateway_settings(listen);
    let app = Application::build(&settings, None).await?;
    let gateway = format!("http://127.0.0.1:{}", app.port());
    let token = issuer.sign("rs256-1", &issuer.claims("dev"))?;
    let body =
        format!(r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#);
    let text = format!(
        "tokenreview-gateway dev: a development issuer and the gateway are running on loopback.\n\n\
         issuer:  {issuer} (HTTPS, generated CA)\n\
         gateway: {gateway}/authenticate\n\n\
         A token for dev@example.com (groups: oidc:developers), valid for one hour:\n\
         token: {token}\n\n\
         Try it:\n\
         curl -s {gateway}/authenticate -H 'Content-Type: application/json' -d '{body}'\n\n\
         Press Ctrl-C to stop.\n",
        issuer = issuer.url(),
    );
    // A closed stdout (`dev | head`) must not take the running servers down with it.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    drop(out);
    app.run_until_stopped().await?;
    Ok(())
}

async fn review(settings: &Settings, token: Option<&str>, audiences: &[String], explain: bool) -> ExitCode {
    let token = match token {
        Some(t) => t.to_string(),
        None => {
            let mut buf = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut buf) {
                eprintln!("error: cannot read the token from stdin: {e}");
                return ExitCode::from(2);
            }
            buf.trim().to_string()
        }
    };
    let authenticator = match Authenticator::new(settings, Arc::new(Metrics::new())) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    fetch_keys_at_startup(&authenticator, Duration::from_secs(settings.keys.startup_wait_seconds)).await;
    let verdict = if explain {
        let (verdict, steps) = authenticator.explain(&token).await;
        for step in steps {
            eprintln!("  {step}");
        }
        verdict
    } else {
        authenticator.review(&token, audiences).await
    };
    let answer = ReviewResponse::new(ApiVersion::V1, verdict.outcome.status());
    println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
    let issuer = verdict.issuer.as_deref().unwrap_or("none");
    match &verdict.outcome {
        Outcome::Authenticated(u) => {
            eprintln!("authenticated as {:?} by issuer {issuer}", u.username);
            ExitCode::SUCCESS
        }
        Outcome::Rejected(r) => {
            eprintln!("rejected: {} (issuer: {issuer})", r.as_str());
            ExitCode::from(1)
        }
        Outcome::Unavailable(u) => {
            eprintln!("could not decide: {} (issuer: {issuer})", u.as_str());
            for i in authenticator.issuers() {
                if let Some(e) = i.keys.last_error() {
                    eprintln!("  {}: {e}", i.url);
                }
            }
            ExitCode::from(2)
        }
    }
}

async fn check(settings: &Settings, offline: bool) -> ExitCode {
    let authenticator = match Authenticator::new(settings, Arc::new(Metrics::new())) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(tls) = &settings.server.tls
        && let Err(e) = crate::tls::server_config(tls)
    {
        eprintln!("error: server.tls: {e}");
        return ExitCode::FAILURE;
    }
    println!("configuration is valid: {} issuer(s)", settings.jwt.len());
    if offline {
        // Compiling the authenticator above read each client secret.
        for e in &settings.introspection {
            println!("ok    introspection {}: {} (client secret read; offline: not called)", e.name, e.url);
        }
        println!("offline: no keys fetched");
        return ExitCode::SUCCESS;
    }
    let mut ok = true;
    // A made-up token: the endpoint must authenticate us and call it inactive. A real token
    // has no place in a check.
    for e in &settings.introspection {
        let probed = match crate::authn::introspect::Endpoint::compile(e, Arc::new(Metrics::new())) {
            Ok(endpoint) => endpoint.probe().await,
            Err(m) => Err(m),
        };
        match probed {
            Ok(()) => println!("ok    introspection {}: {} (answers active: false for a made-up token)", e.name, e.url),
            Err(why) => {
                ok = false;
                println!("FAIL  introspection {}: {why}", e.name);
            }
        }
    }
    let mut issuers: Vec<_> = authenticator.issuers().collect();
    issuers.sort_by(|a, b| a.url.cmp(&b.url));
    for issuer in issuers {
        match issuer.keys.refresh().await {
            Ok(n) => println!("ok    {}: {n} signing key(s)", issuer.url),
            Err(e) => {
                ok = false;
                println!("FAIL  {}: {e}", issuer.url);
            }
        }
        for d in issuer.keys.dropped_keys() {
            let kid = d.kid.as_deref().map_or_else(|| "without kid".to_string(), |k| format!("{:?}", k));
            println!("warn  {}: key {kid} dropped: {}", issuer.url, d.why);
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// How kube-apiserver authenticates to the gateway.
#[derive(Default)]
pub struct KubeconfigClient<'a> {
    /// Client certificate (mTLS).
    pub cert: Option<&'a Path>,
    /// Its key.
    pub key: Option<&'a Path>,
    /// A file holding the caller bearer token.
    pub token_file: Option<&'a Path>,
}

/// The webhook kubeconfig for kube-apiserver, with files embedded as `-data` fields so it also
/// works where the apiserver cannot read host paths.
pub fn kubeconfig(server: &str, ca: Option<&Path>, client: &KubeconfigClient<'_>) -> Result<String, String> {
    let url = url::Url::parse(server).map_err(|e| format!("--server {server:?} is not a URL: {e}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err("--server must be an http(s) URL".into());
    }
    let mut out =
        String::from("apiVersion: v1\nkind: Config\nclusters:\n  - name: tokenreview-gateway\n    cluster:\n");
    out.push_str(&format!("      server: {}\n", serde_json::to_string(server).map_err(|e| e.to_string())?));
    if let Some(ca) = ca {
        out.push_str(&format!("      certificate-authority-data: {}\n", embed(ca)?));
    }
    let mut user = String::new();
    if let (Some(cert), Some(key)) = (client.cert, client.key) {
        user.push_str(&format!("      client-certificate-data: {}\n", embed(cert)?));
        user.push_str(&format!("      client-key-data: {}\n", embed(key)?));
    }
    if let Some(f) = client.token_file {
        let token = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let quoted = serde_json::to_string(token.trim()).map_err(|e| e.to_string())?;
        user.push_str(&format!("      token: {quoted}\n"));
    }
    out.push_str("users:\n  - name: kube-apiserver\n    user:");
    if user.is_empty() {
        out.push_str(" {}\n");
    } else {
        out.push('\n');
        out.push_str(&user);
    }
    out.push_str(
        "contexts:\n  - name: webhook\n    context:\n      cluster: tokenreview-gateway\n      user: kube-apiserver\ncurrent-context: webhook\n",
    );
    Ok(out)
}

fn embed(p: &Path) -> Result<String, String> {
    let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A kubectl user's kubeconfig: the cluster at `server` (CA embedded) and a user whose exec
/// plugin is `tokenreview-gateway` with `login_args` (`login setup` prints the same user).
pub fn user_kubeconfig(server: &str, ca: Option<&Path>, login_args: &[String]) -> Result<String, String> {
    url::Url::parse(server).map_err(|e| format!("--server {server:?} is not a URL: {e}"))?;
    let mut out = String::from("apiVersion: v1\nkind: Config\nclusters:\n  - name: kubernetes\n    cluster:\n");
    out.push_str(&format!("      server: {}\n", serde_json::to_string(server).map_err(|e| e.to_string())?));
    if let Some(ca) = ca {
        out.push_str(&format!("      certificate-authority-data: {}\n", embed(ca)?));
    }
    out.push_str(&crate::login::setup::exec_stanza("oidc", "tokenreview-gateway", login_args));
    out.push_str(
        "contexts:\n  - name: oidc\n    context:\n      cluster: kubernetes\n      user: oidc\ncurrent-context: oidc\n",
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_embeds_files_and_binds_a_context() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "CA PEM").unwrap();
        let text = kubeconfig("https://127.0.0.1:8443/authenticate", Some(&ca), &KubeconfigClient::default()).unwrap();
        assert!(text.contains("server: \"https://127.0.0.1:8443/authenticate\""), "{text}");
        assert!(text.contains("certificate-authority-data: Q0EgUEVN"), "{text}");
        assert!(text.contains("current-context: webhook"), "{text}");
        assert!(text.contains("user: {}"), "{text}");
    }

    #[test]
    fn kubeconfig_embeds_the_client_certificate_and_caller_token() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, token) = (dir.path().join("c.crt"), dir.path().join("c.key"), dir.path().join("t"));
        std::fs::write(&cert, "CERT").unwrap();
        std::fs::write(&key, "KEY").unwrap();
        std::fs::write(&token, "caller-token-123\n").unwrap();
        let client = KubeconfigClient { cert: Some(&cert), key: Some(&key), token_file: Some(&token) };
        let text = kubeconfig("https://gw:8443/authenticate", None, &client).unwrap();
        assert!(text.contains("      client-certificate-data: Q0VSVA==\n"), "{text}");
        assert!(text.contains("      client-key-data: S0VZ\n"), "{text}");
        assert!(text.contains("      token: \"caller-token-123\"\n"), "{text}");
    }

    #[test]
    fn kubeconfig_refuses_a_bad_url_or_missing_file() {
        let none = KubeconfigClient::default();
        assert!(kubeconfig("not a url", None, &none).unwrap_err().contains("not a URL"));
        let e = kubeconfig("https://x/authenticate", Some(Path::new("/nonexistent/ca.pem")), &none).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}

//! `login setup`: one login, then what a person needs to wire kubectl up and to see what the
//! cluster will see: the token's claims, the gateway's answer for it under a given gateway
//! configuration (the same review `serve` runs), and the kubeconfig user that runs this plugin.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::error::LoginError;
use super::flow::obtain;
use super::options::{GrantType, LoginArgs, Options};
use crate::authn::{Authenticator, jwt};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::verdict::Outcome;

/// `login setup` flags.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The login flags, as the kubeconfig will pass them.
    #[command(flatten)]
    pub login: LoginArgs,
    /// A gateway configuration file: show what that gateway would answer for the token.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Name of the kubeconfig user to print.
    #[arg(long, default_value = "oidc")]
    pub user_name: String,
    /// The command kubectl runs (a name on PATH, or an absolute path).
    #[arg(long, default_value = "tokenreview-gateway")]
    pub exec_command: String,
}

/// Runs `login setup`.
pub async fn run(args: &SetupArgs) -> Result<(), LoginError> {
    let opts = Options::from_args(&args.login)?;
    let credential = obtain(&opts, std::io::stdin().is_terminal()).await?;
    println!("# Claims of the ID token");
    match credential.id_token.as_deref().and_then(jwt::payload_claims) {
        Some(claims) => println!("{}", serde_json::to_string_pretty(&claims).unwrap_or_default()),
        None => println!("(no ID token: the access token is sent)"),
    }
    if let Some(path) = &args.config {
        println!("\n# What the gateway ({}) answers for it", path.display());
        // A configuration this machine cannot use (files of another host, say) must not hide
        // the rest of the answer.
        match gateway_answer(path, &credential.token).await {
            Ok(answer) => println!("{answer}"),
            Err(e) => println!("cannot tell: {e}"),
        }
    }
    let exec_args = exec_args(&args.login);
    println!(
        "\n# kubeconfig user (users[].user.exec)\n{}",
        exec_stanza(&args.user_name, &args.exec_command, &exec_args)
    );
    println!("\n# or, with kubectl\n{}", set_credentials_command(&args.user_name, &args.exec_command, &exec_args));
    if args.login.oidc_client_secret.is_some() {
        println!(
            "\n# The client secret is not printed: give it to the plugin in the exec env as TOKENREVIEW_GATEWAY_OIDC_CLIENT_SECRET."
        );
    }
    Ok(())
}

/// The gateway's verdict on `token` under the configuration at `path`, as text.
async fn gateway_answer(path: &std::path::Path, token: &str) -> Result<String, LoginError> {
    let settings = Settings::load(path).map_err(|e| LoginError::Usage(format!("--config: {e}")))?;
    let authenticator = Authenticator::new(&settings, Arc::new(Metrics::new()))
        .map_err(|e| LoginError::Usage(format!("--config: {e}")))?;
    crate::startup::fetch_keys_at_startup(&authenticator, Duration::from_secs(settings.keys.startup_wait_seconds))
        .await;
    let verdict = authenticator.review(token, &[]).await;
    Ok(match &verdict.outcome {
        Outcome::Authenticated(user) => format!(
            "authenticated\nusername: {}\nuid: {}\ngroups: {}\nextra: {}",
            user.username,
            if user.uid.is_empty() { "(none)" } else { &user.uid },
            serde_json::to_string(&user.groups).unwrap_or_default(),
            serde_json::to_string(&user.extra).unwrap_or_default(),
        ),
        Outcome::Rejected(r) => format!(
            "rejected: {} (issuer: {}); `tokenreview-gateway review --explain` shows each step",
            r.as_str(),
            verdict.issuer.as_deref().unwrap_or("none matched")
        ),
        Outcome::Unavailable(u) => format!("could not decide: {}", u.message()),
    })
}

/// The plugin's arguments as the kubeconfig passes them. Secrets are left out: the client
/// secret and password go through the exec `env` instead.
pub fn exec_args(a: &LoginArgs) -> Vec<String> {
    let mut out = vec!["login".to_string()];
    let mut push = |flag: &str, value: &str| out.push(format!("--{flag}={value}"));
    if let Some(v) = &a.oidc_issuer_url {
        push("oidc-issuer-url", v);
    }
    if let Some(v) = &a.oidc_client_id {
        push("oidc-client-id", v);
    }
    for v in &a.oidc_extra_scope {
        push("oidc-extra-scope", v);
    }
    if let Some(v) = &a.oidc_redirect_url {
        push("oidc-redirect-url", v);
    }
    for v in &a.oidc_auth_request_extra_params {
        push("oidc-auth-request-extra-params", v);
    }
    if a.grant_type != GrantType::Auto {
        push("grant-type", a.grant_type.name());
    }
    for v in &a.listen_address {
        push("listen-address", v);
    }
    if let Some(v) = &a.browser_command {
        push("browser-command", v);
    }
    for v in &a.certificate_authority {
        // kubectl may run elsewhere than here: an absolute path survives that better.
        let abs = std::path::absolute(v).unwrap_or_else(|_| v.clone());
        push("certificate-authority", &abs.display().to_string());
    }
    for v in &a.certificate_authority_data {
        push("certificate-authority-data", v);
    }
    if let Some(v) = &a.token_cache_dir {
        push("token-cache-dir", &v.display().to_string());
    }
    if let Some(v) = &a.username {
        push("username", v);
    }
    if a.authentication_timeout_sec != 180 {
        push("authentication-timeout-sec", &a.authentication_timeout_sec.to_string());
    }
    let flags = [(a.oidc_use_access_token, "--oidc-use-access-token"), (a.skip_open_browser, "--skip-open-browser")];
    out.extend(flags.iter().filter(|(on, _)| *on).map(|(_, f)| f.to_string()));
    out
}

/// A kubeconfig `users` entry whose user runs the plugin.
pub fn exec_stanza(user: &str, command: &str, args: &[String]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = format!(
        "users:\n  - name: {}\n    user:\n      exec:\n        apiVersion: client.authentication.k8s.io/v1\n        command: {}\n        args:\n",
        q(user),
        q(command)
    );
    for a in args {
        out.push_str(&format!("          - {}\n", q(a)));
    }
    out.push_str("        interactiveMode: IfAvailable\n        provideClusterInfo: false\n");
    out
}

/// The `kubectl config set-credentials` command that writes the same user.
pub fn set_credentials_command(user: &str, command: &str, args: &[String]) -> String {
    let mut flags = vec![
        "--exec-api-version=client.authentication.k8s.io/v1".to_string(),
        format!("--exec-command={}", shell_quote(command)),
        "--exec-interactive-mode=IfAvailable".into(),
    ];
    flags.extend(args.iter().map(|a| format!("--exec-arg={}", shell_quote(a))));
    format!("kubectl config set-credentials {} \\\n    {}", shell_quote(user), flags.join(" \\\n    "))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(
            shell_quote("--oidc-issuer-url=https://idp.example.com"),
            "--oidc-issuer-url=https://idp.example.com"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_stanza_lists_every_argument_quoted() {
        let text = exec_stanza("oidc", "tokenreview-gateway", &["login".into(), "--oidc-client-id=kubectl".into()]);
        assert!(text.contains("          - \"--oidc-client-id=kubectl\"\n"), "{text}");
        assert!(text.contains("apiVersion: client.authentication.k8s.io/v1\n"), "{text}");
    }
}

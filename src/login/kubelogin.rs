//! kubelogin flag compatibility: the `get-token` flags we do not implement are still parsed, so
//! a kubeconfig moved over from kubelogin fails with a message that names the flag and says
//! what to do, instead of a bare "unexpected argument" or, worse, being silently ignored.

use clap::Args;

use super::error::LoginError;

/// kubelogin flags we do not support (hidden from `--help`).
#[derive(Debug, Clone, Default, Args)]
pub struct Unsupported {
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    insecure_skip_tls_verify: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    tls_renegotiation: Option<String>,
    #[arg(long, hide = true)]
    token_cache_storage: Option<String>,
    #[arg(long, hide = true)]
    oidc_pkce_method: Option<String>,
    #[arg(long, hide = true)]
    local_server_cert: Option<String>,
    #[arg(long, hide = true)]
    local_server_key: Option<String>,
    #[arg(long, hide = true)]
    open_url_after_authentication: Option<String>,
    #[arg(long, hide = true)]
    oidc_redirect_url_hostname: Option<String>,
    #[arg(long, hide = true)]
    oidc_redirect_url_authcode_keyboard: Option<String>,
    #[arg(long, hide = true)]
    listen_port: Option<String>,
    #[arg(long, hide = true)]
    oidc_request_header: Option<String>,
    #[arg(long, hide = true)]
    oidc_access_type: Option<String>,
}

impl Unsupported {
    /// Fails on the first unsupported flag given, naming it.
    pub fn check(&self) -> Result<(), LoginError> {
        let given = |v: &Option<String>| v.is_some();
        let problems: [(bool, &str, &str); 11] = [
            (
                given(&self.insecure_skip_tls_verify),
                "--insecure-skip-tls-verify",
                "skipping TLS verification is not offered: pass the provider's CA with --certificate-authority",
            ),
            (
                given(&self.tls_renegotiation),
                "--tls-renegotiation",
                "TLS renegotiation is not offered by rustls; remove it",
            ),
            (
                given(&self.token_cache_storage),
                "--token-cache-storage",
                "the cache is always files (0600 in a 0700 directory); remove it, or use --token-cache-dir",
            ),
            (
                self.oidc_pkce_method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case("S256") && m != "auto"),
                "--oidc-pkce-method",
                "PKCE is always S256; remove it",
            ),
            (
                given(&self.local_server_cert) || given(&self.local_server_key),
                "--local-server-cert/--local-server-key",
                "the loopback redirect is plain http on 127.0.0.1 (RFC 8252); remove them",
            ),
            (given(&self.open_url_after_authentication), "--open-url-after-authentication", "not supported; remove it"),
            (
                given(&self.oidc_redirect_url_hostname),
                "--oidc-redirect-url-hostname",
                "use --oidc-redirect-url with the whole URL instead",
            ),
            (
                given(&self.oidc_redirect_url_authcode_keyboard),
                "--oidc-redirect-url-authcode-keyboard",
                "use --oidc-redirect-url instead",
            ),
            (given(&self.listen_port), "--listen-port", "use --listen-address 127.0.0.1:PORT instead"),
            (
                given(&self.oidc_request_header),
                "--oidc-request-header",
                "extra request headers are not supported; remove it",
            ),
            (
                given(&self.oidc_access_type),
                "--oidc-access-type",
                "use --oidc-auth-request-extra-params access_type=offline instead",
            ),
        ];
        match problems.iter().find(|(bad, _, _)| *bad) {
            Some((_, flag, what)) => Err(LoginError::Usage(format!(
                "{flag} is a kubelogin flag that tokenreview-gateway login does not support: {what}"
            ))),
            None => Ok(()),
        }
    }
}

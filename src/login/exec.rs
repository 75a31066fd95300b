//! The client-go exec credential protocol: what kubectl tells the plugin in
//! `KUBERNETES_EXEC_INFO`, and the `ExecCredential` the plugin prints on stdout.

use std::io::IsTerminal;

use serde::Deserialize;
use serde_json::json;

use super::error::LoginError;

/// The environment variable client-go sets for the plugin.
pub const EXEC_INFO_VAR: &str = "KUBERNETES_EXEC_INFO";

/// The `client.authentication.k8s.io` versions we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecApi {
    /// `client.authentication.k8s.io/v1`.
    V1,
    /// `client.authentication.k8s.io/v1beta1` (kubelogin's default, so also ours without exec info).
    V1Beta1,
}

impl ExecApi {
    /// The apiVersion string.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecApi::V1 => "client.authentication.k8s.io/v1",
            ExecApi::V1Beta1 => "client.authentication.k8s.io/v1beta1",
        }
    }
}

/// What the caller told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecInfo {
    /// Answer in this version.
    pub api: ExecApi,
    /// Whether the plugin may use stdin (client-go's `spec.interactive`).
    pub interactive: bool,
}

impl ExecInfo {
    /// Reads `KUBERNETES_EXEC_INFO`; without it (the plugin run by hand) the answer is v1beta1,
    /// and stdin may be used when it is a terminal.
    pub fn from_env() -> Result<ExecInfo, LoginError> {
        let stdin_is_terminal = std::io::stdin().is_terminal();
        match std::env::var(EXEC_INFO_VAR) {
            Ok(value) if !value.trim().is_empty() => ExecInfo::parse(&value, stdin_is_terminal),
            _ => Ok(ExecInfo { api: ExecApi::V1Beta1, interactive: stdin_is_terminal }),
        }
    }

    /// Parses the variable's value. `spec.interactive` absent means "as stdin allows".
    pub fn parse(value: &str, stdin_is_terminal: bool) -> Result<ExecInfo, LoginError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Info {
            api_version: Option<String>,
            kind: Option<String>,
            #[serde(default)]
            spec: Spec,
        }
        #[derive(Deserialize, Default)]
        struct Spec {
            interactive: Option<bool>,
        }
        let info: Info = serde_json::from_str(value)
            .map_err(|e| LoginError::Usage(format!("{EXEC_INFO_VAR} is not an ExecCredential object: {e}")))?;
        if info.kind.as_deref().is_some_and(|k| k != "ExecCredential") {
            return Err(LoginError::Usage(format!("{EXEC_INFO_VAR} has kind {:?}, not ExecCredential", info.kind)));
        }
        let api = match info.api_version.as_deref() {
            Some("client.authentication.k8s.io/v1") => ExecApi::V1,
            Some("client.authentication.k8s.io/v1beta1") => ExecApi::V1Beta1,
            other => {
                return Err(LoginError::Usage(format!(
                    "{EXEC_INFO_VAR} asks for apiVersion {other:?}; this plugin speaks client.authentication.k8s.io/v1 and v1beta1: set the kubeconfig's exec apiVersion to one of them"
                )));
            }
        };
        Ok(ExecInfo { api, interactive: info.spec.interactive.unwrap_or(stdin_is_terminal) })
    }
}

/// The `ExecCredential` answer, one JSON line.
pub fn credential(api: ExecApi, token: &str, expiry: Option<i64>) -> String {
    let mut status = json!({ "token": token });
    if let Some(exp) = expiry {
        status["expirationTimestamp"] = json!(rfc3339(exp));
    }
    json!({ "apiVersion": api.as_str(), "kind": "ExecCredential", "status": status }).to_string()
}

/// A Unix time as RFC 3339 UTC (`2026-12-06T05:38:15Z`), as client-go's `metav1.Time` reads it.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_535_495), "2026-12-06T05:38:15Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn exec_info_picks_the_version_and_interactive_flag() {
        let v1 =
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#;
        assert_eq!(ExecInfo::parse(v1, true).unwrap(), ExecInfo { api: ExecApi::V1, interactive: false });
        let beta = r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{}}"#;
        assert_eq!(ExecInfo::parse(beta, true).unwrap(), ExecInfo { api: ExecApi::V1Beta1, interactive: true });
    }

    #[test]
    fn exec_info_of_another_version_or_kind_is_refused_by_name() {
        let alpha = r#"{"apiVersion":"client.authentication.k8s.io/v1alpha1","kind":"ExecCredential"}"#;
        let e = ExecInfo::parse(alpha, false).unwrap_err().to_string();
        assert!(e.contains("v1alpha1") && e.contains("v1beta1"), "{e}");
        let e = ExecInfo::parse("{not json", false).unwrap_err().to_string();
        assert!(e.contains("KUBERNETES_EXEC_INFO"), "{e}");
    }

    #[test]
    fn the_credential_echoes_the_version_and_dates_the_expiry() {
        let c: serde_json::Value = serde_json::from_str(&credential(ExecApi::V1, "t0k", Some(0))).unwrap();
        assert_eq!(
            c,
            json!({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                   "status": {"token": "t0k", "expirationTimestamp": "1970-01-01T00:00:00Z"}})
        );
    }
}

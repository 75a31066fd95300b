//! Loading: the file (YAML, or TOML), environment overrides, the Kubernetes
//! `AuthenticationConfiguration` it may name, then validation.

use std::path::Path;

use super::error::ConfigError;
use super::jwt::{AuthenticationConfiguration, JwtAuthenticator};
use super::settings::Settings;
use super::{paths, unknown_keys};

const ENV_PREFIX: &str = "TOKENREVIEW_GATEWAY";

impl Settings {
    /// Reads `path` (YAML, or TOML when it ends in `.toml`), applies environment overrides and
    /// validates the result.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// [`Settings::load`] with the environment given explicitly (`None`: the process's).
    fn load_with_env(path: &Path, env: Option<config::Map<String, String>>) -> Result<Settings, ConfigError> {
        let load_err = |message: String| ConfigError::Load { path: path.display().to_string(), message };
        if let Some(problem) = paths::config_file_problem(path) {
            return Err(load_err(problem));
        }
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => config::FileFormat::Toml,
            _ => config::FileFormat::Yaml,
        };
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(format))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .convert_case(config::Case::Camel)
                    .try_parsing(true)
                    .source(env),
            )
            .build()
            .map_err(|e| load_err(dotted_paths(&e.to_string())))?;
        let found = unknown_keys::deserialize_all::<Settings>(built.cache, ENV_PREFIX);
        let other = found.other.map(|e| dotted_paths(&e));
        let (mut settings, mut problems) = match found.value {
            Some(settings) => (settings, found.unknown),
            None if found.unknown.is_empty() => return Err(load_err(other.unwrap_or_default())),
            None => return Err(ConfigError::Invalid(found.unknown.into_iter().chain(other).collect())),
        };
        settings.sources.files.push(path.to_path_buf());
        settings.resolve_paths(&paths::base_directory(path));
        if let Some(file) = settings.authentication_config_file.clone() {
            let k8s_path = path.parent().unwrap_or(Path::new(".")).join(&file);
            let imported = load_authentication_configuration(&k8s_path)?;
            settings.sources.inline_jwt = Some(settings.jwt.len());
            settings.jwt.extend(imported.jwt.into_iter().map(JwtAuthenticator::from));
            settings.sources.files.push(k8s_path);
        }
        if !problems.is_empty() {
            // Every problem at once: the unknown keys, then what the rest of the file has.
            if let Err(ConfigError::Invalid(more)) = settings.validate() {
                problems.extend(more);
            }
            return Err(ConfigError::Invalid(problems));
        }
        settings.validate()?;
        Ok(settings)
    }
}

/// The `config` crate names a field inside a list entry `jwt[0]claimMappings`: put the dot
/// back (`jwt[0].claimMappings`) so the path reads like every other one we print.
fn dotted_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 8);
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) {
            out.push('.');
        }
    }
    out
}

/// Loads a verbatim Kubernetes `AuthenticationConfiguration`: strict (unknown or duplicate
/// fields are errors), any of its three API versions, `anonymous` accepted and ignored.
pub fn load_authentication_configuration(path: &Path) -> Result<AuthenticationConfiguration, ConfigError> {
    let load_err = |message: String| ConfigError::Load { path: path.display().to_string(), message };
    if !path.is_file() {
        return Err(load_err("no such file (authenticationConfigFile)".into()));
    }
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Yaml))
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    let found = unknown_keys::deserialize_all::<AuthenticationConfiguration>(built.cache, ENV_PREFIX);
    let doc = match found.value {
        Some(doc) if found.unknown.is_empty() => doc,
        _ if found.unknown.is_empty() => return Err(load_err(found.other.unwrap_or_default())),
        _ => return Err(load_err(found.unknown.into_iter().chain(found.other).collect::<Vec<_>>().join("; "))),
    };
    const VERSIONS: [&str; 3] =
        ["apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1", "apiserver.config.k8s.io/v1alpha1"];
    if !VERSIONS.contains(&doc.api_version.as_str()) {
        return Err(load_err(format!("apiVersion must be one of {}", VERSIONS.join(", "))));
    }
    if doc.kind != "AuthenticationConfiguration" {
        return Err(load_err("kind must be AuthenticationConfiguration".into()));
    }
    if let Some(anonymous) = &doc.anonymous {
        if !anonymous.enabled && !anonymous.conditions.is_empty() {
            return Err(load_err("anonymous.conditions: not allowed when anonymous.enabled is false".into()));
        }
        tracing::info!(path = %path.display(), "the anonymous block only concerns kube-apiserver; ignored");
    }
    Ok(doc)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::LogFormat;
    use std::io::Write;

    pub(in crate::config) fn load_yaml(yaml: &str) -> Result<Settings, ConfigError> {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        Settings::load(f.path())
    }

    pub(in crate::config) fn problems(yaml: &str) -> String {
        match load_yaml(yaml) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("config was accepted:\n{yaml}"),
        }
    }

    pub(in crate::config) const MINIMAL: &str = r#"
jwt:
  - issuer:
      url: https://idp.example.com
      audiences: [kubernetes]
    claimMappings:
      username: {claim: email, prefix: ""}
      groups: {claim: groups, prefix: "oidc:"}
"#;

    #[test]
    fn the_contracts_smallest_file_loads_with_defaults() {
        let s = load_yaml(MINIMAL).unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:8443");
        assert_eq!(s.server.max_body_bytes, 131072);
        assert_eq!(s.jwt.len(), 1);
        let m = &s.jwt[0].claim_mappings;
        assert_eq!(m.username.as_ref().unwrap().claim.as_deref(), Some("email"));
        assert_eq!(m.groups.as_ref().unwrap().prefix.as_deref(), Some("oidc:"));
    }

    #[test]
    fn a_missing_field_inside_a_list_entry_is_named_with_its_dot() {
        let e = problems(&MINIMAL.replace(
            "    claimMappings:\n      username: {claim: email, prefix: \"\"}\n      groups: {claim: groups, prefix: \"oidc:\"}\n",
            "",
        ));
        assert!(e.contains("jwt[0].claimMappings"), "{e}");
        assert_eq!(
            dotted_paths("field \"jwt[0]claimMappings\", x[1][2]y, [a] b"),
            "field \"jwt[0].claimMappings\", x[1][2].y, [a] b"
        );
    }

    #[test]
    fn unknown_fields_are_errors_that_name_the_field() {
        let e = problems("server:\n  lisen: 0.0.0.0:1\n");
        assert!(e.contains("lisen"), "{e}");
        let e = problems(&MINIMAL.replace("audiences:", "audience:"));
        assert!(e.contains("audience"), "{e}");
    }

    pub(in crate::config) const INTROSPECTION: &str = r#"
introspection:
  - name: hydra
    url: https://hydra.example.com/admin/oauth2/introspect
    clientAuthentication: {clientID: gateway, clientSecretEnv: HYDRA_SECRET}
    opaqueTokens: {prefix: "ory_at_"}
    claimMappings:
      username: {claim: sub, prefix: "hydra:"}
"#;

    #[test]
    fn an_introspection_entry_loads_with_its_defaults() {
        let s = load_yaml(INTROSPECTION).unwrap();
        let e = &s.introspection[0];
        assert_eq!((e.cache_max_seconds, e.max_requests_per_second, e.burst), (60, 50, 100));
        assert_eq!((e.connect_timeout_seconds, e.request_timeout_seconds, e.max_response_bytes), (5, 5, 65536));
        assert_eq!(e.client_authentication.method, "client_secret_basic");
        assert!(!e.require_exp && e.token_types.is_empty() && e.audiences.is_empty());
    }

    #[test]
    fn duplicate_keys_in_the_file_are_errors() {
        let e = problems("server:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n");
        assert!(e.contains("duplicated key"), "{e}");
    }

    const K8S_FILE: &str = r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions: [{path: /livez}]
jwt:
  - issuer:
      url: https://k8s-file.example.com
      audiences: [a, b]
      audienceMatchPolicy: MatchAny
    claimValidationRules:
      - claim: hd
        requiredValue: example.com
    claimMappings:
      username: {claim: sub, prefix: "k:"}
"#;

    fn with_k8s_file(k8s: &str, main: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("authn.yaml"), k8s).unwrap();
        let main_path = dir.path().join("gateway.yaml");
        std::fs::write(&main_path, format!("authenticationConfigFile: authn.yaml\n{main}")).unwrap();
        Settings::load(&main_path)
    }

    #[test]
    fn a_verbatim_kubernetes_file_adds_its_jwt_entries() {
        for version in ["v1", "v1beta1", "v1alpha1"] {
            let k8s = K8S_FILE.replace("k8s.io/v1\n", &format!("k8s.io/{version}\n"));
            let s = with_k8s_file(&k8s, MINIMAL).unwrap_or_else(|e| panic!("{version}: {e}"));
            let urls: Vec<&str> = s.jwt.iter().map(|a| a.issuer.url.as_str()).collect();
            assert_eq!(urls, vec!["https://idp.example.com", "https://k8s-file.example.com"]);
            assert_eq!(s.sources.files.len(), 2);
        }
    }

    #[test]
    fn a_kubernetes_file_is_strict_and_names_its_own_entries_in_errors() {
        let e = with_k8s_file(&K8S_FILE.replace("audienceMatchPolicy", "audienceMatchPolicyy"), "").unwrap_err();
        assert!(e.to_string().contains("audienceMatchPolicyy"), "{e}");
        let e = with_k8s_file(&format!("{K8S_FILE}    algorithms: [RS256]\n"), "").unwrap_err();
        assert!(e.to_string().contains("algorithms"), "gateway extensions are not Kubernetes fields: {e}");
        let e = with_k8s_file(&K8S_FILE.replace("k8s.io/v1\n", "k8s.io/v2\n"), "").unwrap_err();
        assert!(e.to_string().contains("apiVersion must be one of"), "{e}");
        let e = with_k8s_file(&K8S_FILE.replace("[a, b]", "[]"), "").unwrap_err();
        assert!(e.to_string().contains("authenticationConfigFile jwt[0].issuer.audiences"), "{e}");
        let e = with_k8s_file(&K8S_FILE.replace("enabled: true", "enabled: false"), "").unwrap_err();
        assert!(e.to_string().contains("anonymous.conditions"), "{e}");
        let dup = MINIMAL.replace("https://idp.example.com", "https://k8s-file.example.com");
        let e = with_k8s_file(K8S_FILE, &dup).unwrap_err();
        assert!(e.to_string().contains("authenticationConfigFile jwt[0].issuer.url: duplicate issuer URL"), "{e}");
    }

    #[test]
    fn environment_variables_override_file_values() {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(MINIMAL.as_bytes()).unwrap();
        let env = [
            ("TOKENREVIEW_GATEWAY__SERVER__MAX_BODY_BYTES", "4096"),
            ("TOKENREVIEW_GATEWAY__SERVER__MAX_TOKEN_BYTES", "2048"),
            ("TOKENREVIEW_GATEWAY__LOGGING__FORMAT", "json"),
            ("TOKENREVIEW_GATEWAY_CONFIG", "ignored: single underscore is the CLI's variable"),
        ];
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let s = Settings::load_with_env(f.path(), Some(env)).unwrap();
        assert_eq!(s.server.max_body_bytes, 4096);
        assert_eq!(s.server.max_token_bytes, 2048);
        assert_eq!(s.logging.format, LogFormat::Json);
        assert_eq!(s.jwt[0].issuer.url, "https://idp.example.com");
    }

    #[test]
    fn an_unknown_environment_override_is_an_error() {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(MINIMAL.as_bytes()).unwrap();
        let env = [("TOKENREVIEW_GATEWAY__SERVER__LISTEN_ADRESS".to_string(), "x".to_string())];
        let e = Settings::load_with_env(f.path(), Some(env.into_iter().collect())).unwrap_err();
        assert!(e.to_string().contains("listenAdress"), "{e}");
    }

    #[test]
    fn the_client_ca_file_is_read_as_documented_and_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "PEM").unwrap();
            path.display().to_string()
        };
        let (cert, key, ca) = (file("tls.crt"), file("tls.key"), file("client-ca.crt"));
        let tls = format!("server:\n  tls:\n    certFile: {cert}\n    keyFile: {key}\n");
        let documented = dir.path().join("documented.yaml");
        std::fs::write(&documented, format!("{tls}    clientCAFile: {ca}\n{MINIMAL}")).unwrap();
        let s = Settings::load_with_env(&documented, Some(config::Map::new())).unwrap();
        assert_eq!(s.server.tls.unwrap().client_ca_file.as_deref(), Some(ca.as_str()));

        let from_env = dir.path().join("env.yaml");
        std::fs::write(&from_env, format!("{tls}{MINIMAL}")).unwrap();
        let env = [("TOKENREVIEW_GATEWAY__SERVER__TLS__CLIENT_CA_FILE".to_string(), ca.clone())];
        let s = Settings::load_with_env(&from_env, Some(env.into_iter().collect())).unwrap();
        assert_eq!(s.server.tls.unwrap().client_ca_file.as_deref(), Some(ca.as_str()));
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let e = Settings::load(Path::new("/nonexistent/gateway.yaml")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/gateway.yaml") && e.contains("no such file"), "{e}");
    }
}

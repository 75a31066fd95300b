//! File names inside the configuration. A relative path is resolved from the directory of the
//! configuration file, as `authenticationConfigFile` always was and as kubeconfig files do, so
//! that the same file works from any working directory (a service manager's, a container's, a
//! shell's); environment overrides are resolved the same way. Messages show the resolved path.

use std::path::{Path, PathBuf};

use super::settings::Settings;

/// Why `path` cannot be read as a configuration file, if it cannot.
pub(super) fn config_file_problem(path: &Path) -> Option<String> {
    if path.is_file() {
        return None;
    }
    if !path.is_dir() {
        return Some("no such file".into());
    }
    let mut candidates: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| [".yaml", ".yml", ".toml"].iter().any(|ext| name.ends_with(ext)))
        .collect();
    candidates.sort();
    Some(match candidates.is_empty() {
        true => "is a directory, not a configuration file; name the file itself".into(),
        false => {
            format!("is a directory, not a configuration file; name the file itself (in it: {})", candidates.join(", "))
        }
    })
}

/// The directory relative paths in the file at `config` are resolved from.
pub(super) fn base_directory(config: &Path) -> PathBuf {
    let absolute = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    absolute.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn resolve(base: &Path, file: &mut String) {
    if !file.is_empty() && Path::new(file.as_str()).is_relative() {
        *file = base.join(file.as_str()).to_string_lossy().into_owned();
    }
}

impl Settings {
    /// Makes every file name in the settings absolute, relative ones from `base`.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.server.tls {
            resolve(base, &mut tls.cert_file);
            resolve(base, &mut tls.key_file);
            if let Some(ca) = &mut tls.client_ca_file {
                resolve(base, ca);
            }
        }
        if let Some(auth) = &mut self.server.auth {
            resolve(base, &mut auth.bearer_token_file);
        }
        if let Some(key) = &mut self.logging.token_hash_key_file {
            resolve(base, key);
        }
        for endpoint in &mut self.introspection {
            if let Some(secret) = &mut endpoint.client_authentication.client_secret_file {
                resolve(base, secret);
            }
        }
        if let Some(k8s) = &mut self.authentication_config_file {
            resolve(base, k8s);
        }
    }
}

/// The problem with a `certificateAuthority` value that is not a PEM bundle. Kubernetes' field
/// takes the certificates' text; people coming from `--oidc-ca-file` give it a file name.
pub(super) fn pem_bundle_problem(value: &str) -> String {
    let one_word = !value.trim().contains(char::is_whitespace);
    if one_word && !value.contains("-----BEGIN") {
        return format!(
            "takes the PEM text of the CA certificates, not a file name ({}): paste the file's content as a \
             block, `certificateAuthority: |` followed by the PEM lines indented under it (as in kube-apiserver's \
             AuthenticationConfiguration, which has no file field either)",
            value.trim()
        );
    }
    "must be a PEM bundle with at least one certificate".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_in_certificate_authority_is_recognised() {
        assert!(pem_bundle_problem("/etc/ssl/ca.pem").starts_with("takes the PEM text"));
        assert!(pem_bundle_problem("ca.crt").contains("(ca.crt)"));
        let broken = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_bundle_problem(broken), "must be a PEM bundle with at least one certificate");
    }
}

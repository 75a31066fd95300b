//! Serving TLS: a certificate that is re-read when its files change, and optional client
//! certificates (mTLS) from a dedicated CA, narrowed to an allow-list of client names so that
//! other certificates from the same CA (a kubelet's, say) cannot use the gateway as an oracle.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::config::TlsSettings;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM chain and key into a rustls certified key.
pub fn load_certified_key(cert_file: &str, key_file: &str) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read certificates from {cert_file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{cert_file} contains no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read a private key from {key_file}: {e}"))?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| format!("{cert_file} and {key_file} do not match: {e}"))
}

/// The current serving certificate; swapped by [`watch_certificate`].
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Client certificates from `clientCAFile`, then the name allow-list.
#[derive(Debug)]
struct AllowListVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

/// The subject common names and DNS SANs of a certificate.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut names: Vec<String> =
        cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_string)).collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    names
}

impl ClientCertVerifier for AllowListVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if self.allowed.is_empty() {
            return Ok(verified);
        }
        let names = certificate_names(end_entity);
        if names.iter().any(|n| self.allowed.contains(n)) {
            Ok(verified)
        } else {
            tracing::warn!(client_names = ?names, "refused a client certificate that is not on server.tls.allowedClientNames");
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls configuration for the webhook listener, and the certificate holder to reload.
pub fn server_config(tls: &TlsSettings) -> Result<(rustls::ServerConfig, Arc<ReloadingCert>), String> {
    let cert =
        Arc::new(ReloadingCert { current: ArcSwap::from_pointee(load_certified_key(&tls.cert_file, &tls.key_file)?) });
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca_file)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read {ca_file}: {e}"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{ca_file} contains no usable CA certificate"));
            }
            let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("cannot use {ca_file} to verify clients: {e}"))?;
            builder.with_client_cert_verifier(Arc::new(AllowListVerifier {
                inner,
                allowed: tls.allowed_client_names.clone(),
            }))
        }
    };
    let mut config = builder.with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, cert))
}

/// Re-reads the certificate and key every `interval` and swaps them in when they changed and
/// load cleanly; a broken pair is logged and the previous certificate keeps serving. Ends when
/// the holder is dropped.
pub fn watch_certificate(cert: &Arc<ReloadingCert>, tls: &TlsSettings) {
    let holder = Arc::downgrade(cert);
    let (cert_file, key_file) = (tls.cert_file.clone(), tls.key_file.clone());
    let interval = Duration::from_secs(tls.reload_interval_seconds);
    tokio::spawn(async move {
        let read = || (std::fs::read(&cert_file).ok(), std::fs::read(&key_file).ok());
        let mut last = read();
        loop {
            tokio::time::sleep(interval).await;
            let Some(holder) = holder.upgrade() else { return };
            let now = read();
            if now == last {
                continue;
            }
            match load_certified_key(&cert_file, &key_file) {
                Ok(key) => {
                    holder.current.store(Arc::new(key));
                    tracing::info!(cert_file = %cert_file, "serving certificate reloaded");
                    last = now;
                }
                // Mid-rotation the two files can briefly disagree: try again next tick.
                Err(e) => tracing::warn!(error = %e, "serving certificate not reloaded; keeping the current one"),
            }
        }
    });
}

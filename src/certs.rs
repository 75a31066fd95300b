//! Certificates for the webhook link: a serving CA and certificate for the gateway, and a
//! dedicated client CA and certificate for kube-apiserver (`tokenreview-gateway certs`). The
//! development issuer and the tests use the same code for their loopback certificates.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A PEM certificate and its PEM private key.
pub struct Pair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// A certificate authority held in memory.
pub struct Ca {
    /// The CA certificate (and key) in PEM.
    pub pair: Pair,
    issuer: Issuer<'static, KeyPair>,
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time_now();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl Ca {
    /// A new self-signed CA valid for `days`.
    pub fn new(common_name: &str, days: u32) -> anyhow::Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, days);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let pair = Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(Ca { pair, issuer: Issuer::new(params, key) })
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), valid for `days`.
    pub fn server(&self, hosts: &[String], days: u32) -> anyhow::Result<Pair> {
        let cn = hosts.first().map(String::as_str).unwrap_or("tokenreview-gateway");
        self.issue(cn, hosts, ExtendedKeyUsagePurpose::ServerAuth, days)
    }

    /// A client certificate with subject CN `name` and optional DNS SANs, valid for `days`.
    pub fn client(&self, name: &str, dns_names: &[String], days: u32) -> anyhow::Result<Pair> {
        self.issue(name, dns_names, ExtendedKeyUsagePurpose::ClientAuth, days)
    }

    fn issue(&self, cn: &str, sans: &[String], usage: ExtendedKeyUsagePurpose, days: u32) -> anyhow::Result<Pair> {
        let mut params = CertificateParams::new(sans.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// The files `certs` writes, relative to its output directory.
pub const FILES: [&str; 8] =
    ["ca.crt", "ca.key", "tls.crt", "tls.key", "client-ca.crt", "client-ca.key", "apiserver.crt", "apiserver.key"];

/// Writes a serving CA and certificate for `hosts`, and a client CA and a client certificate
/// named `client_name`, into `dir`. Refuses to overwrite unless `force`; keys are mode 0600.
pub fn write_all(dir: &Path, hosts: &[String], client_name: &str, days: u32, force: bool) -> anyhow::Result<()> {
    if hosts.is_empty() {
        anyhow::bail!("at least one host name or address is needed for the serving certificate");
    }
    std::fs::create_dir_all(dir)?;
    if !force && let Some(existing) = FILES.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        anyhow::bail!("{} exists; use --force to replace the certificates", existing.display());
    }
    let serving = Ca::new("tokenreview-gateway serving CA", days)?;
    let tls = serving.server(hosts, days)?;
    let clients = Ca::new("tokenreview-gateway client CA", days)?;
    let apiserver = clients.client(client_name, &[], days)?;
    for (name, pair) in [("ca", &serving.pair), ("tls", &tls), ("client-ca", &clients.pair), ("apiserver", &apiserver)]
    {
        std::fs::write(dir.join(format!("{name}.crt")), &pair.cert_pem)?;
        write_private(&dir.join(format!("{name}.key")), &pair.key_pem)?;
    }
    Ok(())
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(content.as_bytes())
}

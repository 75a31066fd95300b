//! Verifies the ID token before it is handed to kubectl, exactly as the gateway verifies a
//! token: the login builds a one-issuer gateway configuration (issuer = `--oidc-issuer-url`,
//! audience = the client id, the same CA) and asks the gateway's own [`Authenticator`]
//! (discovery, JWKS admission, signature, `alg` allow-list, `iss`, `aud`, `exp`, `nbf`). Then
//! the `nonce` of the authorization request. A misconfigured login thus fails on the laptop
//! with a reason, not as an opaque 401 from the cluster.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::error::LoginError;
use crate::authn::{Authenticator, jwt};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::verdict::{Outcome, Reason};

/// The gateway's verification for one issuer and client.
pub struct Verifier {
    authenticator: Authenticator,
    issuer: String,
    client_id: String,
}

impl Verifier {
    /// Compiles the one-issuer configuration and fetches the issuer's keys.
    pub async fn new(issuer: &str, client_id: &str, ca_pem: Option<&str>) -> Result<Verifier, LoginError> {
        let mut jwt = json!({
            "issuer": {"url": issuer, "audiences": [client_id]},
            // Any claim every ID token has: the mapping is not what is checked here.
            "claimMappings": {"username": {"claim": "sub", "prefix": "oidc-login:"}},
        });
        if let Some(ca) = ca_pem {
            jwt["issuer"]["certificateAuthority"] = json!(ca);
        }
        let settings: Settings = serde_json::from_value(json!({"cache": {"maxEntries": 0}, "jwt": [jwt]}))
            .map_err(|e| LoginError::Usage(format!("cannot verify tokens of {issuer}: {e}")))?;
        settings.validate().map_err(|e| LoginError::Usage(format!("cannot verify tokens of {issuer}: {e}")))?;
        let authenticator = Authenticator::new(&settings, Arc::new(Metrics::new()))
            .map_err(|e| LoginError::Usage(format!("cannot verify tokens of {issuer}: {e}")))?;
        for i in authenticator.issuers() {
            i.keys.refresh().await.map_err(|e| {
                LoginError::Provider(format!("cannot fetch the signing keys of {issuer} to verify the ID token: {e}"))
            })?;
        }
        Ok(Verifier { authenticator, issuer: issuer.to_string(), client_id: client_id.to_string() })
    }

    /// Verifies an ID token and, when the authorization request carried one, its `nonce`.
    /// Returns its claims.
    pub async fn verify(&self, id_token: &str, nonce: Option<&str>) -> Result<Map<String, Value>, LoginError> {
        let verdict = self.authenticator.review(id_token, &[]).await;
        match verdict.outcome {
            Outcome::Authenticated(_) => {}
            Outcome::Rejected(reason) => return Err(LoginError::Verification(self.explain(reason, id_token))),
            Outcome::Unavailable(u) => {
                return Err(LoginError::Provider(format!("cannot verify the ID token: {}", u.message())));
            }
        }
        let claims = jwt::payload_claims(id_token)
            .ok_or_else(|| LoginError::Verification("the ID token's payload is not a JSON object".into()))?;
        if let Some(expected) = nonce
            && claims.get("nonce").and_then(Value::as_str) != Some(expected)
        {
            return Err(LoginError::Verification(
                "the ID token's nonce does not match the one of this login (a replayed or mixed-up response); log in again"
                    .into(),
            ));
        }
        Ok(claims)
    }

    /// One line that says what is wrong and where to look.
    fn explain(&self, reason: Reason, token: &str) -> String {
        // Read without trust, only to name what the token says.
        let unverified = |name: &str| {
            jwt::payload_claims(token)
                .and_then(|m| m.get(name).cloned())
                .map(|v| super::oauth::clean(&v.to_string(), 120))
                .unwrap_or_else(|| "nothing".into())
        };
        let (issuer, client) = (&self.issuer, &self.client_id);
        match reason {
            Reason::WrongAudience | Reason::MissingAudience => format!(
                "the ID token was issued for audience {} but --oidc-client-id is {client:?}: the provider gave a token for another client",
                unverified("aud")
            ),
            Reason::BadSignature | Reason::UnknownKid | Reason::NoMatchingKey => format!(
                "the ID token's signature does not verify with the keys {issuer} publishes (its jwks_uri): the token was not signed by this issuer"
            ),
            Reason::UnknownIssuer | Reason::WrongIssuer | Reason::MissingIssuer => {
                format!("the ID token's iss is {}, not --oidc-issuer-url {issuer:?}", unverified("iss"))
            }
            Reason::Expired => {
                "the ID token the provider just issued is already expired: check this machine's clock".into()
            }
            Reason::NotYetValid => "the ID token is not valid yet (nbf): check this machine's clock".into(),
            Reason::AlgorithmNotAllowed => {
                "the ID token is signed with an algorithm the gateway does not accept (RS/PS/ES 256/384/512 only)"
                    .into()
            }
            other => format!("the ID token was refused by the gateway's checks: {}", other.as_str()),
        }
    }
}

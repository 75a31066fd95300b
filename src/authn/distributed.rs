//! Distributed claims (OpenID Connect Core 5.6.2), resolved as kube-apiserver does, for the
//! groups claim only: a groups claim the token only points at (`_claim_names` →
//! `_claim_sources`) is fetched from the source's `endpoint` with its `access_token`, and taken
//! from the answer, a JWT that must be signed by the same issuer's keys and pass the same `iss`, `aud` and `exp` checks.
//!
//! The endpoint comes from a verified token, but still only an https endpoint on the issuer's
//! host or a `jwksHosts` entry is called: no token picks a host. A failed call is transient
//! (the token may be fine); anything else that goes wrong is a definite rejection.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::fetch::{self, FetchError};
use super::jwt::{self, Alg, ClaimPolicy};
use super::keys::{KeySet, KeyStore};

/// Why a distributed claim could not be resolved.
#[derive(Debug)]
pub enum Failure {
    /// The call failed, or the issuer's keys cannot vouch for the answer yet: try again later.
    Unavailable(String),
    /// The token or the answer is not acceptable.
    Refused(&'static str),
}

/// What the claims' resolution needs from the issuer.
pub struct Resolver<'a> {
    /// The issuer's keys, client and allowed hosts.
    pub keys: &'a Arc<KeyStore>,
    /// The issuer's algorithm allow-list.
    pub algorithms: &'a [Alg],
    /// The issuer's `iss`, `aud`, `exp` and `nbf` policy.
    pub policy: &'a ClaimPolicy,
    /// How long a key fetch for an unknown `kid` is awaited (as for the token's own `kid`).
    pub token_fetch_wait: Duration,
}

impl Resolver<'_> {
    /// For each of `wanted` that `claims` lacks and names in `_claim_names`, fetches it and
    /// inserts it. Returns the earliest `exp` of the answers used, if any.
    pub async fn resolve(&self, claims: &mut Map<String, Value>, wanted: &[&str]) -> Result<Option<f64>, Failure> {
        let mut earliest: Option<f64> = None;
        for &name in wanted {
            if claims.contains_key(name) {
                // The normal claim wins, as in kube-apiserver.
                continue;
            }
            let Some(source_name) = claims.get("_claim_names").and_then(|n| n.get(name)) else { continue };
            let source_name = source_name.as_str().ok_or(Failure::Refused("_claim_names entry is not a string"))?;
            let source = claims
                .get("_claim_sources")
                .and_then(|s| s.get(source_name))
                .and_then(Value::as_object)
                .ok_or(Failure::Refused("_claim_names points at no _claim_sources entry"))?;
            // Aggregated claims (a `JWT` member, no endpoint) are not fetched by kube-apiserver
            // either: the claim stays absent.
            let Some(endpoint) = source.get("endpoint") else { continue };
            let endpoint = endpoint.as_str().ok_or(Failure::Refused("the claim source's endpoint is not a string"))?;
            let access_token = match source.get("access_token") {
                None => None,
                Some(Value::String(t)) => Some(t.clone()),
                Some(_) => return Err(Failure::Refused("the claim source's access_token is not a string")),
            };
            if !self.keys.endpoint_allowed(endpoint) {
                return Err(Failure::Refused(
                    "the claim source is not https on the issuer's host or a jwksHosts entry",
                ));
            }
            let answer = self.fetch(endpoint, access_token.as_deref()).await?;
            let (value, exp) = self.verify(&answer, name).await?;
            earliest = Some(earliest.map_or(exp, |e| e.min(exp)));
            claims.insert(name.to_string(), value);
        }
        Ok(earliest)
    }

    async fn fetch(&self, endpoint: &str, access_token: Option<&str>) -> Result<String, Failure> {
        let mut request = self.keys.client().get(endpoint);
        if let Some(token) = access_token {
            request = request.bearer_auth(token);
        }
        // The error is logged: name the endpoint without its query (a token chose it, and a
        // query may carry anything) or userinfo.
        let shown = without_query(endpoint);
        let unavailable = |e: FetchError| Failure::Unavailable(e.to_string());
        let fetched =
            fetch::send_bounded_jwt(request, &shown, self.keys.max_response_bytes()).await.map_err(unavailable)?;
        let text =
            String::from_utf8(fetched.body).map_err(|_| Failure::Refused("the claim source's answer is not a JWT"))?;
        Ok(text.trim().to_string())
    }

    /// The claim and `exp` of the answer, which must be a JWT the issuer signed.
    async fn verify(&self, answer: &str, name: &str) -> Result<(Value, f64), Failure> {
        let jws = jwt::decode(answer).map_err(|_| Failure::Refused("the claim source's answer is not a JWT"))?;
        if !self.algorithms.contains(&jws.alg) {
            return Err(Failure::Refused("the claim source's answer uses an algorithm the issuer may not"));
        }
        // As for the token's own key (pipeline step 6): a kid we lack may be a rotation, so the
        // keys are fetched again before its absence can mean a (cached) rejection.
        let seen = self.keys.attempts();
        let (alg, kid) = (jws.alg, jws.kid.as_deref());
        let unknown = |set: &Option<Arc<KeySet>>| {
            set.as_ref().is_some_and(|s| matches!(jwt::candidates(s, alg, kid), jwt::Candidates::UnknownKid))
        };
        let mut set = self.keys.current();
        if set.is_none() || unknown(&set) {
            self.keys.refresh_for_token(seen, self.token_fetch_wait).await;
            set = self.keys.current();
        }
        let Some(set) = set else {
            return Err(Failure::Unavailable("the issuer has no usable signing keys".into()));
        };
        let keys = match jwt::candidates(&set, alg, kid) {
            jwt::Candidates::Keys(keys) => keys,
            jwt::Candidates::UnknownKid if !self.keys.absence_is_definite(seen) => {
                return Err(Failure::Unavailable(
                    "the claim source's answer is signed with a key not fetched yet".into(),
                ));
            }
            _ => return Err(Failure::Refused("the claim source's answer is not signed by the issuer")),
        };
        let mut claims = jwt::verify(jws, &keys, self.policy)
            .map_err(|_| Failure::Refused("the claim source's answer does not verify"))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .ok_or(Failure::Refused("the claim source's answer has no exp"))?;
        let value = claims.remove(name).ok_or(Failure::Refused("the claim source's answer lacks the claim"))?;
        Ok((value, exp))
    }
}

/// `scheme://host[:port]/path` of `endpoint`: no userinfo, query or fragment.
fn without_query(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}{}", u.scheme(), u.host_str().unwrap_or_default(), u.path())
        }
        Err(_) => "the claim source's endpoint".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_query;

    #[test]
    fn an_endpoint_is_shown_without_query_userinfo_or_fragment() {
        let shown = without_query("https://u:p@issuer.example:8443/claims/src?access_token=secret#frag");
        assert_eq!(shown, "https://issuer.example:8443/claims/src");
        assert_eq!(without_query("https://issuer.example/claims"), "https://issuer.example/claims");
    }
}

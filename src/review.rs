//! The `TokenReview` wire format, for `authentication.k8s.io/v1` and `v1beta1`.
//!
//! Both versions share one JSON schema; the answer echoes the request's `apiVersion`.
//! Parsing is strict about the fields we act on and silent about the rest (`metadata`,
//! an incoming `status` shell), and every rejection carries a fixed message that never
//! quotes the request: serde's own messages can echo input, including the token.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::web::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The TokenReview versions kube-apiserver can send (`--authentication-token-webhook-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `authentication.k8s.io/v1`
    V1,
    /// `authentication.k8s.io/v1beta1`, still kube-apiserver's default
    V1beta1,
}

impl ApiVersion {
    /// The string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "authentication.k8s.io/v1",
            ApiVersion::V1beta1 => "authentication.k8s.io/v1beta1",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "authentication.k8s.io/v1" => Some(ApiVersion::V1),
            "authentication.k8s.io/v1beta1" => Some(ApiVersion::V1beta1),
            _ => None,
        }
    }
}

/// A bearer token. Its `Debug` and `Display` never show it; [`Token::expose`] is the one way in.
pub struct Token(String);

impl Token {
    /// The token itself, for verification only. Never log it: use
    /// [`crate::fingerprint::token_fingerprint`].
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<redacted {}>)", crate::fingerprint::token_fingerprint(&self.0))
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted {}>", crate::fingerprint::token_fingerprint(&self.0))
    }
}

/// A parsed, well-formed TokenReview request.
#[derive(Debug)]
pub struct ReviewRequest {
    /// Version to answer in.
    pub api_version: ApiVersion,
    /// The bearer token.
    pub token: Token,
    /// `spec.audiences`, empty when absent.
    pub audiences: Vec<String>,
}

/// Why a request body is not a TokenReview. Each maps to a 4xx with a fixed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Syntax error, truncated body, invalid UTF-8.
    #[error("request body is not valid JSON")]
    MalformedJson,
    /// Valid JSON, but not an object of the expected shape (or a duplicated field).
    #[error("request body is not a TokenReview object")]
    NotAnObject,
    /// `kind` missing or not `TokenReview`.
    #[error("kind must be TokenReview")]
    WrongKind,
    /// `apiVersion` missing or not one of the two supported versions.
    #[error("apiVersion must be authentication.k8s.io/v1 or authentication.k8s.io/v1beta1")]
    UnsupportedApiVersion,
    /// `spec.token` missing, null or not a string.
    #[error("spec.token is required and must be a string")]
    MissingToken,
    /// `spec.audiences` present but not a list of strings.
    #[error("spec.audiences must be a list of strings")]
    InvalidAudiences,
}

impl RequestError {
    /// Stable machine-readable code for the error body and logs.
    pub fn code(self) -> &'static str {
        match self {
            RequestError::MalformedJson => "malformed_json",
            RequestError::NotAnObject => "not_a_token_review",
            RequestError::WrongKind => "wrong_kind",
            RequestError::UnsupportedApiVersion => "unsupported_api_version",
            RequestError::MissingToken => "missing_token",
            RequestError::InvalidAudiences => "invalid_audiences",
        }
    }
}

// Known fields are deserialized by derive, so a duplicated `token` or `kind` is an error
// instead of "last one wins"; values stay `Value` so a wrong type gets our own message.
// Derive also takes a JSON array positionally (`["authentication.k8s.io/v1","TokenReview",
// {"token":"t"}]`), so both structs are read through `ObjectOnly`, which insists on an object.
#[derive(Deserialize)]
struct WireRequest {
    #[serde(rename = "apiVersion")]
    api_version: Option<Value>,
    kind: Option<Value>,
    #[serde(default, deserialize_with = "spec_object")]
    spec: Option<WireSpec>,
}

fn spec_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<WireSpec>, D::Error> {
    WireSpec::deserialize(ObjectOnly(d)).map(Some)
}

/// A deserializer that reads a struct only from a JSON object, never from an array.
struct ObjectOnly<D>(D);

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[derive(Deserialize)]
struct WireSpec {
    token: Option<Value>,
    audiences: Option<Value>,
}

impl ReviewRequest {
    /// Parses a request body. `kind` is checked before `apiVersion`, then `spec`.
    pub fn parse(body: &[u8]) -> Result<ReviewRequest, RequestError> {
        // serde_json skips members we ignore without checking their UTF-8 (found by fuzzing), so
        // check the whole body: a request is JSON text, and JSON text is UTF-8 (RFC 8259).
        let body = std::str::from_utf8(body).map_err(|_| RequestError::MalformedJson)?;
        let classify = |e: serde_json::Error| match e.classify() {
            serde_json::error::Category::Data => RequestError::NotAnObject,
            _ => RequestError::MalformedJson,
        };
        let mut de = serde_json::Deserializer::from_str(body);
        let wire = WireRequest::deserialize(ObjectOnly(&mut de)).map_err(classify)?;
        de.end().map_err(classify)?;
        match wire.kind {
            Some(Value::String(k)) if k == "TokenReview" => {}
            _ => return Err(RequestError::WrongKind),
        }
        let api_version = match &wire.api_version {
            Some(Value::String(v)) => ApiVersion::parse(v),
            _ => None,
        }
        .ok_or(RequestError::UnsupportedApiVersion)?;
        let spec = wire.spec.ok_or(RequestError::MissingToken)?;
        let token = match spec.token {
            Some(Value::String(t)) => t,
            _ => return Err(RequestError::MissingToken),
        };
        let audiences = match spec.audiences {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(RequestError::InvalidAudiences),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(RequestError::InvalidAudiences),
        };
        Ok(ReviewRequest { api_version, token: Token(token), audiences })
    }
}

/// The identity we vouch for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserInfo {
    /// Never empty, never under `system:` unless an operator rule put it there.
    pub username: String,
    /// Optional stable id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Group names, prefixes applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes (for example `authentication.kubernetes.io/credential-id`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `status` of the answer, built from scratch for every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewStatus {
    /// The verdict.
    pub authenticated: bool,
    /// Present only when authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    /// Set only for transient failures on our side: kube-apiserver does not cache those.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole answer document.
#[derive(Debug, Serialize)]
pub struct ReviewResponse {
    /// Same as the request's.
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// Always `TokenReview`.
    pub kind: &'static str,
    /// The verdict.
    pub status: ReviewStatus,
}

impl ReviewResponse {
    /// Wraps a status in the envelope of the given version.
    pub fn new(api_version: ApiVersion, status: ReviewStatus) -> Self {
        ReviewResponse { api_version: api_version.as_str(), kind: "TokenReview", status }
    }
}

/// An answer serialised once and kept ready to send, so a cache hit does no serde work: the
/// status in JSON, which [`ReadyAnswer::body`] puts in the envelope of the request's version (one
/// copy, no serialisation). Keeping the status once rather than a body per version halves what a
/// cache entry holds.
#[derive(Debug, Clone)]
pub struct ReadyAnswer {
    // NB: an `Arc<str>` is one allocation, exactly as long as the JSON plus two counters, and a
    // clone allocates nothing; a `Bytes` made from a boxed slice allocates a second block at its
    // first clone (every cache entry's). `str`, not `[u8]`: the username is sliced out of it on
    // every cache hit, without checking UTF-8 again.
    status: Arc<str>,
}

const ENVELOPE_HEAD: &[u8] = br#"{"apiVersion":""#;
const ENVELOPE_MIDDLE: &[u8] = br#"","kind":"TokenReview","status":"#;
/// How an authenticated status begins, up to the username's opening quote: serde writes the
/// fields in declaration order.
const AUTHENTICATED_HEAD: &str = r#"{"authenticated":true,"user":{"username":"#;

impl ReadyAnswer {
    /// Serialises `status` once.
    pub fn new(status: &ReviewStatus) -> ReadyAnswer {
        // Serialising plain strings, bools and maps cannot fail; if it ever did, the answer is a
        // rejection.
        let status = serde_json::to_string(status).unwrap_or_else(|_| r#"{"authenticated":false}"#.to_string());
        ReadyAnswer { status: Arc::from(status) }
    }

    /// The whole response body for a request of this version: byte for byte what serialising
    /// a [`ReviewResponse`] gives.
    pub fn body(&self, version: ApiVersion) -> Bytes {
        let version = version.as_str().as_bytes();
        let mut body =
            Vec::with_capacity(ENVELOPE_HEAD.len() + version.len() + ENVELOPE_MIDDLE.len() + self.status.len() + 1);
        body.extend_from_slice(ENVELOPE_HEAD);
        body.extend_from_slice(version);
        body.extend_from_slice(ENVELOPE_MIDDLE);
        body.extend_from_slice(self.status.as_bytes());
        body.push(b'}');
        Bytes::from(body)
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.status.len()
    }

    /// Never true: a status has at least `authenticated`.
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }

    /// The username of an authenticated answer, read from the start of the JSON without parsing
    /// the rest (the log line of a cache hit needs it, and only it).
    pub fn username(&self) -> Option<String> {
        let quoted = self.status.strip_prefix(AUTHENTICATED_HEAD)?;
        let inner = quoted.strip_prefix('"')?;
        // Up to the closing quote, unless an escape comes first: then serde reads the string.
        let end = inner.bytes().position(|b| b == b'"' || b == b'\\')?;
        match inner.as_bytes()[end] {
            b'"' => Some(inner[..end].to_string()),
            _ => String::deserialize(&mut serde_json::Deserializer::from_str(quoted)).ok(),
        }
    }

    /// The user in the answer, read back (for callers that want the whole verdict of a cache
    /// hit; the webhook sends the bytes as they are).
    pub fn user(&self) -> Option<UserInfo> {
        #[derive(Deserialize)]
        struct Status {
            user: Option<UserInfo>,
        }
        serde_json::from_str::<Status>(&self.status).ok()?.user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ReviewRequest, RequestError> {
        ReviewRequest::parse(s.as_bytes())
    }

    #[test]
    fn v1_and_v1beta1_requests_are_accepted_and_remember_their_version() {
        let r = parse(r#"{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{"token":"t","audiences":["a"]},"status":{"user":{}},"metadata":{"creationTimestamp":null}}"#).unwrap();
        assert_eq!(r.api_version, ApiVersion::V1beta1);
        assert_eq!(r.token.expose(), "t");
        assert_eq!(r.audiences, vec!["a".to_string()]);
        let r =
            parse(r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t"}}"#).unwrap();
        assert_eq!(r.api_version, ApiVersion::V1);
        assert!(r.audiences.is_empty());
    }

    #[test]
    fn each_malformed_request_gets_its_own_error() {
        let cases = [
            ("{\"spec\":", RequestError::MalformedJson),
            ("[1]", RequestError::NotAnObject),
            ("\"x\"", RequestError::NotAnObject),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview","spec":{"token":"t"}}"#,
                RequestError::WrongKind,
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview","spec":{"token":"t"}}"#,
                RequestError::UnsupportedApiVersion,
            ),
            (r#"{"kind":"TokenReview","spec":{"token":"t"}}"#, RequestError::UnsupportedApiVersion),
            (r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview"}"#, RequestError::MissingToken),
            (r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}"#, RequestError::MissingToken),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":null}}"#,
                RequestError::MissingToken,
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":42}}"#,
                RequestError::MissingToken,
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t","audiences":"a"}}"#,
                RequestError::InvalidAudiences,
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t","audiences":[1]}}"#,
                RequestError::InvalidAudiences,
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"a","token":"b"}}"#,
                RequestError::NotAnObject,
            ),
            (r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":"x"}"#, RequestError::NotAnObject),
            // serde's derive would read arrays positionally; a TokenReview is an object.
            (r#"["authentication.k8s.io/v1","TokenReview",{"token":"t"}]"#, RequestError::NotAnObject),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":["t"]}"#,
                RequestError::NotAnObject,
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":null}"#,
                RequestError::NotAnObject,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body).err(), Some(want), "body: {body}");
        }
    }

    #[test]
    fn invalid_utf8_and_lone_surrogates_are_malformed_json() {
        let mut body = br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""}}"#);
        assert_eq!(ReviewRequest::parse(&body).err(), Some(RequestError::MalformedJson));
        // Also inside members nobody reads (fuzzing found these were skipped unchecked).
        let ignored = b"{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"metadata\":{\"c\xa4\":null},\"spec\":{\"token\":\"t\"}}";
        assert_eq!(ReviewRequest::parse(ignored).err(), Some(RequestError::MalformedJson));
        assert_eq!(
            parse(r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"\ud800"}}"#).err(),
            Some(RequestError::MalformedJson)
        );
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes() {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let valid =
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t","audiences":["a"]}}"#;
        for _ in 0..20_000 {
            let mut body = valid.to_vec();
            for _ in 0..(1 + next() % 4) {
                let i = (next() % body.len() as u64) as usize;
                match next() % 3 {
                    0 => body[i] = (next() % 256) as u8,
                    1 => {
                        body.remove(i);
                    }
                    _ => body.insert(i, b"{}[]\",:0"[(next() % 8) as usize]),
                }
            }
            let _ = ReviewRequest::parse(&body);
        }
    }

    #[test]
    fn debug_and_display_never_contain_the_token() {
        let r =
            parse(r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"s3cr3t-token"}}"#)
                .unwrap();
        assert!(!format!("{r:?}").contains("s3cr3t"));
        assert!(!format!("{}", r.token).contains("s3cr3t"));
        assert!(format!("{r:?}").contains("Token(<redacted "), "{r:?}");
    }

    #[test]
    fn a_ready_answer_is_byte_for_byte_a_fresh_serialisation_in_each_version() {
        let mut extra = BTreeMap::new();
        extra.insert("authentication.kubernetes.io/credential-id".to_string(), vec!["JTI=1".to_string()]);
        let user = UserInfo {
            username: "dev@example.com".into(),
            uid: "u\"1\u{e9}".into(),
            groups: vec!["oidc:a".into(), "oidc:<b>".into()],
            extra,
        };
        let statuses = [
            ReviewStatus { authenticated: true, user: Some(user), error: None },
            ReviewStatus {
                authenticated: true,
                user: Some(UserInfo { username: "x".into(), ..UserInfo::default() }),
                error: None,
            },
            ReviewStatus {
                authenticated: true,
                user: Some(UserInfo { username: "q\"b\\\\\"\u{1}\u{e9}\\".into(), ..UserInfo::default() }),
                error: None,
            },
            ReviewStatus { authenticated: false, user: None, error: None },
            ReviewStatus { authenticated: false, user: None, error: Some("try again".into()) },
        ];
        for status in statuses {
            let ready = ReadyAnswer::new(&status);
            for version in [ApiVersion::V1, ApiVersion::V1beta1] {
                let fresh = serde_json::to_vec(&ReviewResponse::new(version, status.clone())).unwrap();
                assert_eq!(ready.body(version).as_ref(), fresh.as_slice(), "{version:?} {status:?}");
            }
            assert_eq!(ready.user(), status.user, "the user reads back whole");
            assert_eq!(ready.username(), status.user.as_ref().map(|u| u.username.clone()));
        }
    }

    #[test]
    fn a_rejection_serialises_without_user_or_error() {
        let resp = ReviewResponse::new(ApiVersion::V1, ReviewStatus { authenticated: false, user: None, error: None });
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            serde_json::json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":false}})
        );
    }
}

//! The verdict vocabulary: why a token was refused ([`Reason`]), why we could not decide
//! ([`Unavailable`]), the [`Outcome`] of a review with what the logs need ([`Verdict`],
//! [`Reviewed`]), and the [`Trace`] of `review --explain`.
//!
//! Used by `mapping`, `authn`, the routes and the command line, and owned by none of them: it
//! stands on the wire types (`review`) and the token fingerprint only.

use std::sync::Arc;

use crate::fingerprint::Fingerprint;
use crate::review::{ReadyAnswer, ReviewStatus, UserInfo};

/// Why a token was refused. A small fixed vocabulary: used as log field and metric label, never
/// sent to the caller (a definite rejection carries no `error`, so kube-apiserver caches it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `spec.token` was empty.
    EmptyToken,
    /// Longer than `server.maxTokenBytes`.
    TokenTooLarge,
    /// Not a compact JWS, bad base64url or JSON, duplicate header or routing fields.
    MalformedToken,
    /// `iss` names no configured issuer.
    UnknownIssuer,
    /// No `iss` claim.
    MissingIssuer,
    /// `iss` is not a string, or does not match after verification.
    WrongIssuer,
    /// A header parameter we refuse (`jku`, `jwk`, `x5u`, `x5c`, `crit`, ...).
    HeaderNotAllowed,
    /// `alg` is not in the issuer's allow-list.
    AlgorithmNotAllowed,
    /// `kid` not in the issuer's key set, even after a refresh.
    UnknownKid,
    /// No key of the right type for the token's `alg`.
    NoMatchingKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// No `exp` claim.
    MissingExpiry,
    /// No `aud` claim.
    MissingAudience,
    /// `aud` contains none of the issuer's audiences.
    WrongAudience,
    /// A registered claim has the wrong type, or a mapped claim is not a string.
    InvalidClaim,
    /// The username claim is absent.
    UsernameClaimMissing,
    /// The username claim is the empty string.
    EmptyUsername,
    /// Username from `email` but `email_verified` is not `true`.
    EmailNotVerified,
    /// A name from a claim starts with `system:`.
    ReservedName,
    /// Groups claim is neither a string nor a list of strings.
    InvalidGroups,
    /// The configured uid claim is absent.
    UidClaimMissing,
    /// Control characters in a mapped name.
    InvalidCharacters,
    /// A `claimValidationRules` `claim` + `requiredValue` rule failed.
    ClaimRuleFailed,
    /// More groups than `groupRules.maxGroups`.
    TooManyGroups,
    /// A mapping or rule expression failed to evaluate (a missing claim, say) or gave a value
    /// of the wrong type.
    ExpressionFailed,
    /// A `userValidationRules` expression was not true.
    UserRuleFailed,
    /// The introspection endpoint did not say `active: true` (a JSON boolean).
    Inactive,
    /// The introspection response's `token_type` is not one of the endpoint's `tokenTypes`.
    WrongTokenType,
    /// The header `typ` is not one of the issuer's `headerTypes`.
    TypeNotAllowed,
    /// `exp - iat` is longer than the issuer's `maxLifetimeSeconds`.
    LifetimeTooLong,
    /// No numeric `iat`, and the issuer has a `maxLifetimeSeconds`.
    MissingIssuedAt,
    /// A distributed claim the mapping needs points at no source, at a source off the
    /// issuer's hosts, or its answer is not a valid JWT of the issuer holding the claim.
    DistributedClaimInvalid,
}

impl Reason {
    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EmptyToken => "empty_token",
            Reason::TokenTooLarge => "token_too_large",
            Reason::MalformedToken => "malformed_token",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::MissingIssuer => "missing_issuer",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::HeaderNotAllowed => "header_not_allowed",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::UnknownKid => "unknown_kid",
            Reason::NoMatchingKey => "no_matching_key",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::MissingExpiry => "missing_exp",
            Reason::MissingAudience => "missing_aud",
            Reason::WrongAudience => "wrong_audience",
            Reason::InvalidClaim => "invalid_claim",
            Reason::UsernameClaimMissing => "username_claim_missing",
            Reason::EmptyUsername => "empty_username",
            Reason::EmailNotVerified => "email_not_verified",
            Reason::ReservedName => "reserved_name",
            Reason::InvalidGroups => "invalid_groups",
            Reason::UidClaimMissing => "uid_claim_missing",
            Reason::InvalidCharacters => "invalid_characters",
            Reason::ClaimRuleFailed => "claim_rule_failed",
            Reason::TooManyGroups => "too_many_groups",
            Reason::ExpressionFailed => "expression_failed",
            Reason::UserRuleFailed => "user_rule_failed",
            Reason::Inactive => "inactive",
            Reason::WrongTokenType => "wrong_token_type",
            Reason::TypeNotAllowed => "type_not_allowed",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::MissingIssuedAt => "missing_iat",
            Reason::DistributedClaimInvalid => "distributed_claim_invalid",
        }
    }
}

/// A failure on our side: the caller gets `status.error`, which kube-apiserver does not cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The token's issuer has no usable keys yet (provider down since startup, or misconfigured).
    IssuerKeys,
    /// `server.maxInFlight` reviews are already running.
    Busy,
    /// The review did not finish within `server.reviewTimeoutSeconds`.
    Timeout,
    /// The introspection endpoint failed, timed out or answered something that is not RFC 7662.
    Introspection,
    /// The introspection endpoint's call budget is spent for now.
    IntrospectionBudget,
    /// The issuer's userinfo endpoint, needed for the token's groups, failed or is not known.
    UserInfo,
    /// A distributed claims source the mapping needs failed, or its answer's key is not known yet.
    DistributedClaims,
}

impl Unavailable {
    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::IssuerKeys => "issuer_keys_unavailable",
            Unavailable::Busy => "busy",
            Unavailable::Timeout => "timeout",
            Unavailable::Introspection => "introspection_unavailable",
            Unavailable::IntrospectionBudget => "introspection_budget_exhausted",
            Unavailable::UserInfo => "userinfo_unavailable",
            Unavailable::DistributedClaims => "distributed_claims_unavailable",
        }
    }

    /// The text sent in `status.error`: fixed, no URL, no token data.
    pub fn message(self) -> &'static str {
        match self {
            Unavailable::IssuerKeys => "signing keys for the token's issuer are not available yet; try again later",
            Unavailable::Busy => "the token review gateway is at capacity; try again later",
            Unavailable::Timeout => "the token review did not finish in time; try again later",
            Unavailable::Introspection => "the token introspection endpoint did not answer usably; try again later",
            Unavailable::IntrospectionBudget => {
                "the token introspection endpoint is at its call budget; try again later"
            }
            Unavailable::UserInfo => "the issuer's userinfo endpoint did not answer usably; try again later",
            Unavailable::DistributedClaims => "the token's claims source did not answer usably; try again later",
        }
    }
}

/// The steps of one review, for `review --explain`. Off on the serving path: nothing is
/// formatted unless it is on.
pub struct Trace {
    steps: Option<Vec<String>>,
}

impl Trace {
    /// Records nothing.
    pub fn off() -> Self {
        Trace { steps: None }
    }

    /// Records every step.
    pub fn on() -> Self {
        Trace { steps: Some(Vec::new()) }
    }

    /// Records a line.
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(steps) = &mut self.steps {
            steps.push(line());
        }
    }

    /// Records a step's result and passes it through.
    pub fn step<T: std::fmt::Debug>(
        &mut self,
        name: impl FnOnce() -> String,
        result: Result<T, Reason>,
    ) -> Result<T, Reason> {
        if let Some(steps) = &mut self.steps {
            match &result {
                Ok(value) => steps.push(format!("{}: ok {value:?}", name())),
                Err(reason) => steps.push(format!("{}: FAILED ({})", name(), reason.as_str())),
            }
        }
        result
    }

    /// Adds why to the last line recorded (a failed step's detail: the values involved).
    pub fn because(&mut self, detail: impl FnOnce() -> Option<String>) {
        if let Some(last) = self.steps.as_mut().and_then(|steps| steps.last_mut())
            && let Some(detail) = detail()
        {
            last.push_str(": ");
            last.push_str(&detail);
        }
    }

    /// The recorded lines.
    pub fn into_steps(self) -> Vec<String> {
        self.steps.unwrap_or_default()
    }
}

/// The result of a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A verified user.
    Authenticated(Arc<UserInfo>),
    /// A definite verdict against the token.
    Rejected(Reason),
    /// We could not decide.
    Unavailable(Unavailable),
}

impl Outcome {
    /// The TokenReview status for this outcome.
    pub fn status(&self) -> ReviewStatus {
        match self {
            Outcome::Authenticated(user) => {
                ReviewStatus { authenticated: true, user: Some(UserInfo::clone(user)), error: None }
            }
            Outcome::Rejected(_) => ReviewStatus { authenticated: false, user: None, error: None },
            Outcome::Unavailable(u) => {
                ReviewStatus { authenticated: false, user: None, error: Some(u.message().to_string()) }
            }
        }
    }

    /// `authenticated`, `rejected` or `error`.
    pub fn result_label(&self) -> &'static str {
        match self {
            Outcome::Authenticated(_) => "authenticated",
            Outcome::Rejected(_) => "rejected",
            Outcome::Unavailable(_) => "error",
        }
    }

    /// The reason label, empty when authenticated.
    pub fn reason_label(&self) -> &'static str {
        match self {
            Outcome::Authenticated(_) => "",
            Outcome::Rejected(r) => r.as_str(),
            Outcome::Unavailable(u) => u.as_str(),
        }
    }
}

/// An outcome plus what the logs need to know about it.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The outcome.
    pub outcome: Outcome,
    /// The issuer that handled the token, when routing got that far.
    pub issuer: Option<Arc<str>>,
    /// Whether it came from the result cache.
    pub cached: bool,
}

impl Verdict {
    /// A transient failure decided outside the authenticator (capacity, deadline).
    pub fn unavailable(why: Unavailable) -> Self {
        Verdict { outcome: Outcome::Unavailable(why), issuer: None, cached: false }
    }
}

/// A verdict and, when it is one the cache keeps, its answer serialised ready to send.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// The verdict. NB: from a cache hit (`verdict.cached`), an authenticated user carries the
    /// username only (what the log line needs); the whole user is in `answer`, and
    /// [`crate::authn::Authenticator::review`] reads it back from there.
    pub verdict: Verdict,
    /// The whole response body in both versions; `None` for answers that are not cached
    /// (transient failures, or with the cache off): those are serialised when sent.
    pub answer: Option<ReadyAnswer>,
    /// The token's fingerprint, for the log line.
    pub fingerprint: Fingerprint,
}

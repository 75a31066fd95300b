//! The device authorization grant (RFC 8628): show the verification URI and user code on
//! stderr, then poll the token endpoint at the provider's `interval`, five seconds slower after
//! each `slow_down`, until the person has logged in, refused, or the code expired.

use std::time::{Duration, Instant};

use super::error::LoginError;
use super::oauth::{Client, DEVICE_CODE_GRANT, DeviceAuthorization, Provider, TokenError, Tokens};

/// RFC 8628 3.2: the interval when the provider names none.
const DEFAULT_INTERVAL: u64 = 5;
/// RFC 8628 3.5: what `slow_down` adds.
const SLOW_DOWN_STEP: u64 = 5;

/// What to do after one poll.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// Poll again after this many seconds.
    Again(u64),
    /// Stop with this error.
    Stop(String),
}

/// The polling rule of RFC 8628 3.5 for one token endpoint error.
pub fn next_poll(interval: u64, error: &TokenError) -> Poll {
    match error.code() {
        Some("authorization_pending") => Poll::Again(interval),
        Some("slow_down") => Poll::Again(interval + SLOW_DOWN_STEP),
        Some("access_denied") => Poll::Stop(format!("the login was denied at the provider ({error})")),
        Some("expired_token") => Poll::Stop(format!(
            "the device code expired before the login was completed ({error}); run the command again and finish the login sooner"
        )),
        _ => Poll::Stop(format!("the device code grant failed ({error})")),
    }
}

/// Runs the device flow to the provider's tokens.
pub async fn login(
    provider: &Provider,
    client: &Client,
    scope: &str,
    open: impl FnOnce(&str),
) -> Result<Tokens, LoginError> {
    let auth: DeviceAuthorization = provider.device_authorization(client, scope).await?;
    eprintln!("To log in, visit {} and enter the code {}", auth.verification_uri, auth.user_code);
    open(auth.verification_uri_complete.as_deref().unwrap_or(&auth.verification_uri));
    let deadline = Instant::now() + Duration::from_secs(auth.expires_in);
    let mut interval = auth.interval.unwrap_or(DEFAULT_INTERVAL).max(1);
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let params = [("grant_type", DEVICE_CODE_GRANT), ("device_code", auth.device_code.as_str())];
        match provider.token(client, &params).await {
            Ok(tokens) => return Ok(tokens),
            Err(e) if e.code().is_none() => {
                return Err(LoginError::Provider(format!("the device code grant failed: {e}")));
            }
            // Past the deadline, a provider may have forgotten the code (invalid_grant): it expired.
            Err(_) if Instant::now() >= deadline => return Err(expired()),
            Err(e) => match next_poll(interval, &e) {
                Poll::Again(next) => interval = next,
                Poll::Stop(message) => return Err(LoginError::Refused(message)),
            },
        }
        if Instant::now() >= deadline {
            return Err(expired());
        }
    }
}

fn expired() -> LoginError {
    LoginError::Refused(
        "the device code expired before the login was completed (expired_token); run the command again and finish the login sooner".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(code: &str) -> TokenError {
        TokenError::OAuth { error: code.into(), description: None }
    }

    #[test]
    fn pending_keeps_the_interval_and_slow_down_adds_five_seconds() {
        assert_eq!(next_poll(2, &oauth("authorization_pending")), Poll::Again(2));
        assert_eq!(next_poll(2, &oauth("slow_down")), Poll::Again(7));
    }

    #[test]
    fn denial_and_expiry_stop_with_their_own_message() {
        let Poll::Stop(m) = next_poll(5, &oauth("access_denied")) else { panic!() };
        assert!(m.contains("denied"), "{m}");
        let Poll::Stop(m) = next_poll(5, &oauth("expired_token")) else { panic!() };
        assert!(m.contains("expired"), "{m}");
    }
}

//! The token fingerprint: how a token is named in logs, errors and cache entries without being
//! shown. The lowest module of the crate: the wire types' redacted `Debug` needs it too.

static TOKEN_HASH_KEY: std::sync::OnceLock<aws_lc_rs::hmac::Key> = std::sync::OnceLock::new();

/// Sets the key of [`token_fingerprint`] (from `logging.tokenHashKeyFile`), so replicas and
/// restarts log the same fingerprint for the same token. Only the first call has an effect;
/// without one, a random per-process key is used.
pub fn set_token_hash_key(key: &[u8]) {
    let _ = TOKEN_HASH_KEY.set(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key));
}

/// A short token identifier for logs: the first 12 hex digits of HMAC-SHA-256 under a key the
/// log reader does not have, so a fingerprint neither reveals the token nor lets someone who
/// holds a token confirm that it was used.
pub fn token_fingerprint(token: &str) -> String {
    Fingerprint::of(token).to_string()
}

/// [`token_fingerprint`] before it is formatted: six bytes, no allocation, kept in cache entries
/// so a cache hit does not run the HMAC over the token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 6]);

impl Fingerprint {
    /// The fingerprint of a token.
    pub fn of(token: &str) -> Fingerprint {
        let key = TOKEN_HASH_KEY.get_or_init(|| {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
                aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &std::process::id().to_le_bytes())
            })
        });
        let tag = aws_lc_rs::hmac::sign(key, token.as_bytes());
        let mut short = [0; 6];
        short.copy_from_slice(&tag.as_ref()[..6]);
        Fingerprint(short)
    }

    /// The six bytes the 12 hex digits spell.
    pub fn bytes(self) -> [u8; 6] {
        self.0
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_short_hex_and_not_the_token() {
        let f = token_fingerprint("eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
        assert_eq!(f.len(), 12);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(f, token_fingerprint("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"));
        assert_eq!(f, Fingerprint::of("eyJhbGciOiJSUzI1NiJ9.e30.c2ln").to_string());
    }
}

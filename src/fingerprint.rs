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
        Fingerprint::from_tag(aws_lc_rs::hmac::sign(key(), token.as_bytes()))
    }

    fn from_tag(tag: aws_lc_rs::hmac::Tag) -> Fingerprint {
        let mut short = [0; 6];
        short.copy_from_slice(&tag.as_ref()[..6]);
        Fingerprint(short)
    }

    /// The six bytes the 12 hex digits spell.
    pub fn bytes(self) -> [u8; 6] {
        self.0
    }
}

/// One HMAC pass over a token that gives both its [`Fingerprint`] and its result-cache key, so a
/// review hashes the token once (it hashed it twice: SHA-256 for the key, HMAC for the log).
pub struct TokenHash {
    /// HMAC-SHA-256 under the fingerprint key, after the token's bytes.
    after_token: aws_lc_rs::hmac::Context,
    token_len: u64,
}

impl TokenHash {
    /// Hashes the token.
    pub fn of(token: &str) -> TokenHash {
        let mut after_token = aws_lc_rs::hmac::Context::with_key(key());
        after_token.update(token.as_bytes());
        TokenHash { after_token, token_len: token.len() as u64 }
    }

    /// The token's [`Fingerprint`]: HMAC-SHA-256 of the token alone, as [`Fingerprint::of`].
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::from_tag(self.after_token.clone().sign())
    }

    /// A key for the token with these extra parts (`spec.audiences`): HMAC-SHA-256 under the
    /// fingerprint key of the token, then each part's length (8 bytes, little-endian) and bytes,
    /// then the token's length. Read from its end, that message has one split only, so no two
    /// different (token, parts) share a key; and the key is secret, so nobody can aim keys at
    /// one bucket of the cache's table.
    pub fn key_with(&self, parts: &[String]) -> [u8; 32] {
        let mut h = self.after_token.clone();
        for part in parts {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&self.token_len.to_le_bytes());
        let mut key = [0; 32];
        key.copy_from_slice(h.sign().as_ref());
        key
    }
}

fn key() -> &'static aws_lc_rs::hmac::Key {
    TOKEN_HASH_KEY.get_or_init(|| {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &std::process::id().to_le_bytes())
        })
    })
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
        assert_eq!(
            TokenHash::of("eyJhbGciOiJSUzI1NiJ9.e30.c2ln").fingerprint(),
            Fingerprint::of("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
        );
    }

    #[test]
    fn one_pass_gives_the_fingerprint_and_a_key_per_audience_split() {
        let key = |token: &str, parts: &[&str]| {
            TokenHash::of(token).key_with(&parts.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        };
        let a = key("tok", &["x"]);
        assert_eq!(a, key("tok", &["x"]));
        assert_ne!(a, key("tok", &[]));
        assert_ne!(a, key("tok", &["y"]));
        assert_ne!(key("tok", &["ab"]), key("tok", &["a", "b"]));
        // The token's end and the parts' start cannot trade bytes.
        let len_x = [1u8, 0, 0, 0, 0, 0, 0, 0, b'x'];
        let shifted = format!("tok{}", std::str::from_utf8(&len_x).unwrap());
        assert_ne!(a, key(&shifted, &[]));
        assert_ne!(key("to", &["k"]), key("tok", &[]));
        // The key of no parts is not the fingerprint's tag either.
        let tag = aws_lc_rs::hmac::sign(super::key(), b"tok");
        assert_ne!(&key("tok", &[])[..], tag.as_ref());
        // The key is HMAC-SHA-256 under the fingerprint key of token, parts, token length.
        let mut message = b"tok".to_vec();
        message.extend_from_slice(&len_x);
        message.extend_from_slice(&3u64.to_le_bytes());
        assert_eq!(&a[..], aws_lc_rs::hmac::sign(super::key(), &message).as_ref());
    }
}

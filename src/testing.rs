//! Helpers for the library's own unit tests.

/// A deterministic xorshift generator, so a test over "random" inputs reproduces its failures.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

//! The TokenReview request parser: arbitrary bytes from the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenreview_gateway::review::ReviewRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = ReviewRequest::parse(data) {
        // Whatever parsed must be JSON text: UTF-8 and well-formed. (Not necessarily readable
        // as a `Value`: numbers such as 3e5002 are valid JSON that `Value` cannot hold, and
        // they may sit in members nobody reads.) The redacting Debug must never show the token.
        let text = std::str::from_utf8(data).expect("parse accepted invalid UTF-8");
        serde_json::from_str::<serde::de::IgnoredAny>(text).expect("parse accepted malformed JSON");
        assert!(text.trim_start().starts_with('{'));
        let token = r.token.expose();
        if token.len() >= 8 {
            assert!(!format!("{:?} {}", r.token, r.token).contains(token), "Debug or Display shows the token");
            // The audiences are shown as sent; only when one of them carries the token may it show.
            if !r.audiences.iter().any(|a| a.contains(token)) {
                assert!(!format!("{r:?}").contains(token), "Debug shows the token");
            }
        }
    }
});

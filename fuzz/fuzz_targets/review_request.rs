//! The TokenReview request parser: arbitrary bytes from the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenreview_gateway::review::ReviewRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = ReviewRequest::parse(data) {
        // Whatever parsed must be a document serde_json itself reads as an object, and the
        // redacting Debug must never show the token.
        let v: serde_json::Value = serde_json::from_slice(data).expect("parse accepted invalid JSON");
        assert!(v.is_object());
        let token = r.token.expose();
        if token.len() >= 8 {
            assert!(!format!("{r:?}").contains(token), "Debug shows the token");
        }
    }
});

//! CEL compilation of configuration expressions, then one evaluation against fixed claims, the
//! way configuration loading checks an expression.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tokenreview_gateway::cel::Cel;

static CEL: LazyLock<Cel> = LazyLock::new(|| Cel::new().expect("CEL environment"));
static CLAIMS: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    let Value::Object(m) = json!({
        "iss": "https://idp.example.com", "sub": "alice", "aud": ["kubernetes"], "exp": 2000000000,
        "email": "alice@example.com", "email_verified": true, "groups": ["dev", "ops"],
        "nested": {"a-b": {"c": [1, 2.5, "x", null, true]}}
    }) else {
        unreachable!()
    };
    m
});

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    // Configuration expressions are short; very long ones only slow the fuzzer down.
    if source.len() > 512 {
        return;
    }
    if let Ok(expression) = CEL.compile(source) {
        let _ = CEL.evaluate(&expression, "claims", &CLAIMS);
    }
});

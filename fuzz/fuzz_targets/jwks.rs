//! JWKS parsing and per-key admission: a hostile or broken identity provider's document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenreview_gateway::authn::keys::{Alg, parse_jwks};

const ALGS: [Alg; 6] = [Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384, Alg::ES512, Alg::EdDSA];

fuzz_target!(|data: &[u8]| {
    let Some((keys, dropped)) = parse_jwks(data, &ALGS) else { return };
    for key in &keys {
        assert!(key.kid.as_ref().is_none_or(|k| k.len() <= 256));
        assert!(key.alg.is_none_or(|a| ALGS.contains(&a) && key.kind.verifies(a)));
        assert!(ALGS.iter().any(|a| key.accepts(*a) && key.kind.verifies(*a)));
        assert!(!key.accepts(Alg::RS384) && !key.accepts(Alg::HS256), "parsed for an algorithm nobody allowed");
    }
    // serde_json skips members parse_jwks ignores without checking their UTF-8: an identity
    // provider's sloppiness we tolerate. The document-level checks need a full parse.
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let entries = doc["keys"].as_array().expect("keys is a list");
    assert_eq!(keys.len() + dropped, entries.len());
    assert!(entries.len() <= 100);
    // Admitted kids are unique.
    let admitted_kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
    for (i, kid) in admitted_kids.iter().enumerate() {
        assert!(!admitted_kids[i + 1..].contains(kid), "duplicate kid admitted");
    }
    // Every admitted kid comes from an entry without private or symmetric members (another entry
    // under the same kid may carry them: it is simply not admitted, so it is no ambiguity).
    let private = |e: &serde_json::Value| ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| e.get(m).is_some());
    for kid in &admitted_kids {
        let clean_source = entries.iter().any(|e| e.get("kid").and_then(|k| k.as_str()) == Some(kid) && !private(e));
        assert!(clean_source, "kid {kid:?} admitted only from an entry with private members");
    }
});

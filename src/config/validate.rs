//! Validation of everything but the mapping rules: listeners, limits, key timing, `jwt` entries'
//! issuers and extensions, `introspection` entries. Every problem is reported at once, against
//! the field that has it.

use std::collections::HashSet;
use std::path::Path;

use super::error::ConfigError;
use super::jwt::SUPPORTED_ALGORITHMS;
use super::settings::{MAX_JWT_AUTHENTICATORS, Settings};
use super::validate_mapping::check_mapping;

impl Settings {
    /// The name of `jwt` entry `i` in error messages: `jwt[i]`, or the entry's place in the
    /// Kubernetes file it came from.
    fn jwt_field(&self, i: usize) -> String {
        match self.sources.inline_jwt {
            Some(inline) if i >= inline => format!("authenticationConfigFile jwt[{}]", i - inline),
            _ => format!("jwt[{i}]"),
        }
    }

    /// Checks every value; returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut p = |field: String, msg: &str| problems.push(format!("{field}: {msg}"));

        let sv = &self.server;
        if sv.listen.parse::<std::net::SocketAddr>().is_err() {
            p("server.listen".into(), "must be an address such as 0.0.0.0:8443");
        }
        if let Some(ops) = &sv.ops_listen
            && ops.parse::<std::net::SocketAddr>().is_err()
        {
            p("server.opsListen".into(), "must be an address such as 0.0.0.0:9090");
        }
        for (name, v) in [
            ("server.bodyTimeoutSeconds", sv.body_timeout_seconds),
            ("server.reviewTimeoutSeconds", sv.review_timeout_seconds),
            ("server.maxInFlight", sv.max_in_flight as u64),
        ] {
            if v == 0 {
                p(name.into(), "must be greater than 0");
            }
        }
        if sv.review_timeout_seconds >= 30 {
            p("server.reviewTimeoutSeconds".into(), "must be under 30 (kube-apiserver's webhook timeout)");
        }
        if let Some(tls) = &sv.tls {
            for (name, file) in [("server.tls.certFile", &tls.cert_file), ("server.tls.keyFile", &tls.key_file)] {
                if !Path::new(file).is_file() {
                    p(name.into(), &format!("file not found: {file}"));
                }
            }
            if let Some(ca) = &tls.client_ca_file
                && !Path::new(ca).is_file()
            {
                p("server.tls.clientCAFile".into(), &format!("file not found: {ca}"));
            }
            if !tls.allowed_client_names.is_empty() && tls.client_ca_file.is_none() {
                p("server.tls.allowedClientNames".into(), "needs server.tls.clientCAFile");
            }
            if tls.reload_interval_seconds == 0 {
                p("server.tls.reloadIntervalSeconds".into(), "must be greater than 0");
            }
        }
        if let Some(f) = &self.logging.token_hash_key_file {
            match std::fs::read(f) {
                Ok(k) if k.len() >= 16 => {}
                Ok(_) => p("logging.tokenHashKeyFile".into(), "the key must be at least 16 bytes"),
                Err(e) => p("logging.tokenHashKeyFile".into(), &format!("cannot read {f}: {e}")),
            }
        }
        if let Some(auth) = &sv.auth {
            match std::fs::read_to_string(&auth.bearer_token_file) {
                Ok(t) if t.trim().len() >= super::server::MIN_CALLER_TOKEN_CHARS => {}
                Ok(_) => p(
                    "server.auth.bearerTokenFile".into(),
                    &format!("the token must be at least {} characters", super::server::MIN_CALLER_TOKEN_CHARS),
                ),
                Err(e) => {
                    p("server.auth.bearerTokenFile".into(), &format!("cannot read {}: {e}", auth.bearer_token_file))
                }
            }
        }
        if self.server.max_body_bytes < 1024 {
            p("server.maxBodyBytes".into(), "must be at least 1024");
        }
        if self.server.max_token_bytes == 0 || self.server.max_token_bytes >= self.server.max_body_bytes {
            p("server.maxTokenBytes".into(), "must be greater than 0 and less than server.maxBodyBytes");
        }
        if self.cache.ttl_seconds == 0 && self.cache.max_entries > 0 {
            p("cache.ttlSeconds".into(), "must be greater than 0 (set cache.maxEntries: 0 to disable the cache)");
        }
        let k = &self.keys;
        for (name, v) in [
            ("keys.refreshIntervalSeconds", k.refresh_interval_seconds),
            ("keys.minRefreshSeconds", k.min_refresh_seconds),
            ("keys.discoveryRefreshSeconds", k.discovery_refresh_seconds),
            ("keys.retryIntervalSeconds", k.retry_interval_seconds),
            ("keys.maxStalenessSeconds", k.max_staleness_seconds),
            ("keys.unknownKidCooldownSeconds", k.unknown_kid_cooldown_seconds),
            ("keys.connectTimeoutSeconds", k.connect_timeout_seconds),
            ("keys.requestTimeoutSeconds", k.request_timeout_seconds),
        ] {
            if v == 0 {
                p(name.into(), "must be greater than 0");
            }
        }
        if k.max_refresh_seconds < k.min_refresh_seconds {
            p("keys.maxRefreshSeconds".into(), "must not be less than keys.minRefreshSeconds");
        }
        if k.max_retry_interval_seconds < k.retry_interval_seconds {
            p("keys.maxRetryIntervalSeconds".into(), "must not be less than keys.retryIntervalSeconds");
        }
        if k.max_response_bytes < 1024 {
            p("keys.maxResponseBytes".into(), "must be at least 1024");
        }
        if self.jwt.len() > MAX_JWT_AUTHENTICATORS {
            p("jwt".into(), "at most 64 entries are allowed");
        }

        let mut urls = HashSet::new();
        let mut discovery_urls = HashSet::new();
        let cel = match crate::cel::Cel::new() {
            Ok(c) => c,
            Err(e) => {
                problems.push(e);
                return Err(ConfigError::Invalid(problems));
            }
        };
        let reserved_issuers = ["https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local"];
        for (i, a) in self.jwt.iter().enumerate() {
            let entry = self.jwt_field(i);
            let at = |f: &str| format!("{entry}.{f}");
            if self.service_account_issuers.contains(&a.issuer.url) || reserved_issuers.contains(&a.issuer.url.as_str())
            {
                p(at("issuer.url"), "must not be a service-account issuer of the cluster");
            }
            let iss = &a.issuer;
            let allow_http = a.allow_loopback_http;
            match check_issuer_url(&iss.url, allow_http) {
                Err(msg) => p(at("issuer.url"), msg),
                Ok(()) => {
                    if !urls.insert(iss.url.as_str()) {
                        p(
                            at("issuer.url"),
                            "duplicate issuer URL: one entry per issuer; to accept tokens for several clients of it, list their client IDs in this entry's issuer.audiences with audienceMatchPolicy: MatchAny",
                        );
                    }
                }
            }
            if let Some(d) = &iss.discovery_url {
                if let Err(msg) = check_issuer_url(d, allow_http) {
                    p(at("issuer.discoveryURL"), msg);
                } else if d.trim_end_matches('/') == iss.url.trim_end_matches('/') {
                    p(at("issuer.discoveryURL"), "must differ from issuer.url (leave it unset to use the default)");
                } else if !discovery_urls.insert(d.as_str()) {
                    p(at("issuer.discoveryURL"), "duplicate discovery URL");
                }
            }
            if let Some(ca) = &iss.certificate_authority
                && !ca.trim().is_empty()
                && !reqwest::Certificate::from_pem_bundle(ca.as_bytes()).is_ok_and(|c| !c.is_empty())
            {
                p(at("issuer.certificateAuthority"), &super::paths::pem_bundle_problem(ca));
            }
            if iss.audiences.is_empty() {
                p(at("issuer.audiences"), "at least one audience is required");
            }
            if iss.audiences.iter().any(|a| a.is_empty()) {
                p(at("issuer.audiences"), "audiences must not be empty strings");
            }
            let distinct: HashSet<_> = iss.audiences.iter().collect();
            if distinct.len() != iss.audiences.len() {
                p(at("issuer.audiences"), "duplicate audience");
            }
            match (iss.audiences.len(), iss.audience_match_policy.as_deref()) {
                (_, None | Some("MatchAny")) if iss.audiences.len() <= 1 => {}
                (_, Some("MatchAny")) => {}
                (_, None) => p(at("issuer.audienceMatchPolicy"), "must be MatchAny when more than one audience is set"),
                (_, Some(_)) => p(at("issuer.audienceMatchPolicy"), "the only supported value is MatchAny"),
            }
            if let Some(e) = &iss.egress_selector_type
                && e != "controlplane"
                && e != "cluster"
            {
                p(at("issuer.egressSelectorType"), "must be controlplane or cluster");
            }
            check_mapping(&cel, a, &at, &mut p);
            if let Some(algs) = &a.algorithms {
                if algs.is_empty() {
                    p(at("algorithms"), "must list at least one algorithm (or be left out for the default)");
                }
                for alg in algs {
                    if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                        p(
                            at("algorithms"),
                            &format!("unsupported algorithm {alg:?}; supported: {}", SUPPORTED_ALGORITHMS.join(", ")),
                        );
                    }
                }
            }
            for (j, host) in a.jwks_hosts.iter().enumerate() {
                if host.is_empty() || host.contains(['/', ':', '@', ' ']) {
                    p(at(&format!("jwksHosts[{j}]")), "must be a bare host name such as www.googleapis.com");
                }
            }
            if let Some(types) = &a.header_types {
                if types.is_empty() {
                    p(at("headerTypes"), "must list at least one type (leave it unset to accept any)");
                }
                let mut seen = HashSet::new();
                for t in types {
                    if !seen.insert(t.to_ascii_lowercase().trim_start_matches("application/").to_string()) {
                        p(at("headerTypes"), &format!("lists {t:?} twice"));
                    }
                }
            }
            if a.max_lifetime_seconds == Some(0) {
                p(at("maxLifetimeSeconds"), "must be greater than 0 (leave it unset for no limit)");
            }
            if a.clock_skew_seconds.is_some_and(|s| s > 300) {
                p(at("clockSkewSeconds"), "must be at most 300");
            }
            if let Some(name) = &a.introspect
                && !self.introspection.iter().any(|e| &e.name == name)
            {
                p(at("introspect"), "names no introspection entry");
            }
            if let Some(ui) = &a.user_info {
                let mapped = a.claim_mappings.groups.as_ref().and_then(|g| g.claim.as_deref());
                match (ui.groups_claim.as_deref(), mapped) {
                    (Some(""), _) => p(at("userInfo.groupsClaim"), "must not be empty"),
                    (None, None) => {
                        p(at("userInfo.groupsClaim"), "is required unless claimMappings.groups names a claim")
                    }
                    _ => {}
                }
            }
        }
        self.validate_introspection(&cel, &mut p);
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }
}

impl Settings {
    /// `introspection` entries: endpoint, credentials, routing, limits and mapping.
    fn validate_introspection(&self, cel: &crate::cel::Cel, p: &mut impl FnMut(String, &str)) {
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        for (i, e) in self.introspection.iter().enumerate() {
            let at = |f: &str| format!("introspection[{i}].{f}");
            if e.name.is_empty() || !e.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                p(at("name"), "must be letters, digits, '-', '_' or '.'");
            } else if !names.insert(e.name.as_str()) {
                p(at("name"), "duplicate name");
            }
            if let Err(msg) = check_issuer_url(&e.url, e.allow_loopback_http) {
                p(at("url"), msg);
            }
            if let Some(ca) = &e.certificate_authority
                && !ca.trim().is_empty()
                && !reqwest::Certificate::from_pem_bundle(ca.as_bytes()).is_ok_and(|c| !c.is_empty())
            {
                p(at("certificateAuthority"), &super::paths::pem_bundle_problem(ca));
            }
            let auth = &e.client_authentication;
            if !["client_secret_basic", "client_secret_post"].contains(&auth.method.as_str()) {
                p(at("clientAuthentication.method"), "must be client_secret_basic or client_secret_post");
            }
            if auth.client_id.is_empty() {
                p(at("clientAuthentication.clientID"), "is required");
            }
            // The secret itself is read when the endpoint is compiled (start, reload, `check`), so
            // a file can be validated on a machine that does not hold the secret.
            if auth.client_secret_file.is_some() == auth.client_secret_env.is_some() {
                p(at("clientAuthentication"), "set exactly one of clientSecretFile and clientSecretEnv");
            }
            let used_by_jwt = self.jwt.iter().any(|a| a.introspect.as_ref() == Some(&e.name));
            match &e.opaque_tokens {
                Some(route) => {
                    if !prefixes.insert(route.prefix.as_str()) {
                        p(at("opaqueTokens.prefix"), "another entry already takes tokens with this prefix");
                    }
                    if let Some(pattern) = &route.pattern
                        && regex::Regex::new(&format!("^(?:{pattern})$")).is_err()
                    {
                        p(at("opaqueTokens.pattern"), "is not a valid regular expression");
                    }
                    if e.claim_mappings.is_none() {
                        p(at("claimMappings"), "is required with opaqueTokens");
                    }
                }
                None if !used_by_jwt => {
                    p(at("opaqueTokens"), "is required unless a jwt entry's introspect names this endpoint")
                }
                None => {}
            }
            if e.claim_mappings.is_some() {
                check_mapping(cel, &e.as_mapping(), &at, p);
            }
            for (name, v) in [
                ("cacheMaxSeconds", e.cache_max_seconds),
                ("maxRequestsPerSecond", u64::from(e.max_requests_per_second)),
                ("burst", u64::from(e.burst)),
                ("connectTimeoutSeconds", e.connect_timeout_seconds),
                ("requestTimeoutSeconds", e.request_timeout_seconds),
            ] {
                if v == 0 {
                    p(at(name), "must be greater than 0");
                }
            }
            if e.request_timeout_seconds >= self.server.review_timeout_seconds {
                p(at("requestTimeoutSeconds"), "must be less than server.reviewTimeoutSeconds");
            }
            if e.max_response_bytes < 1024 {
                p(at("maxResponseBytes"), "must be at least 1024");
            }
            if e.clock_skew_seconds > 300 {
                p(at("clockSkewSeconds"), "must be at most 300");
            }
            if e.audiences.iter().chain(&e.token_types).any(String::is_empty) {
                p(at("audiences"), "audiences and tokenTypes must not contain empty strings");
            }
        }
    }
}

/// Kubernetes' rules for `issuer.url` and `discoveryURL`: https, no userinfo, query or fragment.
/// `http` only on a loopback host and only with the issuer's `allowLoopbackHTTP` (tests, dev stacks).
fn check_issuer_url(s: &str, allow_loopback_http: bool) -> Result<(), &'static str> {
    let u = url::Url::parse(s).map_err(|_| "must be a valid URL")?;
    match u.scheme() {
        "https" => {}
        "http" if allow_loopback_http && is_loopback(&u) => {}
        "http" if allow_loopback_http => return Err("http is only allowed for a loopback host"),
        _ => return Err("must use https"),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not contain a user name or password");
    }
    if u.query().is_some() {
        return Err("must not contain a query");
    }
    if u.fragment().is_some() {
        return Err("must not contain a fragment");
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("must contain a host");
    }
    Ok(())
}

/// `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::tests::{INTROSPECTION, MINIMAL, load_yaml, problems};

    #[test]
    fn issuer_url_rules_follow_kubernetes() {
        for (url, want) in [
            ("http://idp.example.com", "must use https"),
            ("https://user@idp.example.com", "user name"),
            ("https://idp.example.com?x=1", "query"),
            ("https://idp.example.com#f", "fragment"),
            ("not a url", "valid URL"),
        ] {
            let e = problems(&MINIMAL.replace("https://idp.example.com", url));
            assert!(e.contains("jwt[0].issuer.url") && e.contains(want), "{url}: {e}");
        }
    }

    #[test]
    fn http_issuers_need_the_loopback_flag_and_a_loopback_host() {
        let http = MINIMAL.replace("https://idp.example.com", "http://127.0.0.1:5556");
        assert!(problems(&http).contains("jwt[0].issuer.url: must use https"));
        let flagged = format!("{http}    allowLoopbackHTTP: true\n");
        assert!(load_yaml(&flagged).is_ok());
        let remote = format!("{MINIMAL}    allowLoopbackHTTP: true\n").replace("https://", "http://");
        assert!(problems(&remote).contains("http is only allowed for a loopback host"));
    }

    #[test]
    fn key_refresh_bounds_must_be_consistent() {
        let e = problems(&format!(
            "keys:\n  minRefreshSeconds: 600\n  maxRefreshSeconds: 60\n  unknownKidCooldownSeconds: 0\n{MINIMAL}"
        ));
        assert!(e.contains("keys.maxRefreshSeconds: must not be less than keys.minRefreshSeconds"), "{e}");
        assert!(e.contains("keys.unknownKidCooldownSeconds: must be greater than 0"), "{e}");
    }

    #[test]
    fn audience_rules_follow_kubernetes() {
        let e = problems(&MINIMAL.replace("[kubernetes]", "[]"));
        assert!(e.contains("jwt[0].issuer.audiences: at least one"), "{e}");
        let e = problems(&MINIMAL.replace("[kubernetes]", "[a, b]"));
        assert!(e.contains("jwt[0].issuer.audienceMatchPolicy: must be MatchAny"), "{e}");
        let e = problems(&MINIMAL.replace("[kubernetes]", "[a, a]\n      audienceMatchPolicy: MatchAny"));
        assert!(e.contains("duplicate audience"), "{e}");
        let e = problems(&MINIMAL.replace("[kubernetes]", "[a]\n      audienceMatchPolicy: MatchAll"));
        assert!(e.contains("only supported value is MatchAny"), "{e}");
        assert!(load_yaml(&MINIMAL.replace("[kubernetes]", "[a, b]\n      audienceMatchPolicy: MatchAny")).is_ok());
    }

    #[test]
    fn duplicate_issuers_bad_ca_and_unknown_algorithms_are_refused() {
        let two = format!("{MINIMAL}{}", MINIMAL.trim_start_matches("\njwt:\n"));
        assert!(problems(&two).contains("jwt[1].issuer.url: duplicate issuer URL"));
        let e = problems(&MINIMAL.replace("[kubernetes]", "[kubernetes]\n      certificateAuthority: not a pem"));
        assert!(e.contains("jwt[0].issuer.certificateAuthority"), "{e}");
        let e = problems(&format!("{MINIMAL}    algorithms: [HS256]\n"));
        assert!(e.contains("jwt[0].algorithms: unsupported algorithm \"HS256\""), "{e}");
    }

    #[test]
    fn introspection_entries_are_validated_with_the_field_named() {
        let bad = INTROSPECTION
            .replace("https://hydra.example.com", "http://hydra.example.com")
            .replace(
                "clientSecretEnv: HYDRA_SECRET",
                "clientSecretEnv: A, clientSecretFile: /b, method: private_key_jwt",
            )
            .replace("prefix: \"ory_at_\"", "prefix: x, pattern: '(unclosed'")
            .replace("prefix: \"hydra:\"", "prefix: \"hydra:\"}\n      groups: {expression: 'claims.scope.size()'");
        let e = problems(&format!("{bad}    cacheMaxSeconds: 0\n    requestTimeoutSeconds: 20\n"));
        for want in [
            "introspection[0].url: must use https",
            "introspection[0].clientAuthentication.method: must be client_secret_basic or client_secret_post",
            "introspection[0].clientAuthentication: set exactly one of clientSecretFile and clientSecretEnv",
            "introspection[0].opaqueTokens.pattern: is not a valid regular expression",
            "introspection[0].claimMappings.groups.expression",
            "introspection[0].cacheMaxSeconds: must be greater than 0",
            "introspection[0].requestTimeoutSeconds: must be less than server.reviewTimeoutSeconds",
        ] {
            assert!(e.contains(want), "missing {want} in {e}");
        }
        let twice = format!("{INTROSPECTION}{}", INTROSPECTION.replace("introspection:\n", ""));
        let e = problems(&twice);
        assert!(e.contains("introspection[1].name: duplicate name"), "{e}");
        assert!(e.contains("introspection[1].opaqueTokens.prefix: another entry already takes"), "{e}");
        let unrouted = INTROSPECTION.replace("    opaqueTokens: {prefix: \"ory_at_\"}\n", "");
        let e = problems(&unrouted);
        assert!(e.contains("introspection[0].opaqueTokens: is required unless a jwt entry's introspect"), "{e}");
    }

    #[test]
    fn introspect_and_user_info_on_a_jwt_entry_are_checked() {
        let e = problems(&format!("{MINIMAL}    introspect: nowhere\n    userInfo: {{groupsClaim: ''}}\n"));
        assert!(e.contains("jwt[0].introspect: names no introspection entry"), "{e}");
        assert!(e.contains("jwt[0].userInfo.groupsClaim: must not be empty"), "{e}");
        let revocation = INTROSPECTION.replace("    opaqueTokens: {prefix: \"ory_at_\"}\n", "");
        let ok = format!("{MINIMAL}    introspect: hydra\n    userInfo: {{}}\n{revocation}");
        let s = load_yaml(&ok).unwrap();
        assert_eq!(s.jwt[0].introspect.as_deref(), Some("hydra"));
    }

    #[test]
    fn a_duplicate_issuer_says_how_one_entry_serves_several_clients() {
        let two = format!("{MINIMAL}{}", MINIMAL.trim_start_matches("\njwt:\n"));
        assert!(problems(&two).contains(
            "jwt[1].issuer.url: duplicate issuer URL: one entry per issuer; to accept tokens for several clients of it, list their client IDs in this entry's issuer.audiences with audienceMatchPolicy: MatchAny"
        ));
    }

    #[test]
    fn header_types_and_max_lifetime_are_checked() {
        let with = |extra: &str| format!("{MINIMAL}    {extra}\n");
        assert!(load_yaml(&with("headerTypes: [JWT, \"\"]\n    maxLifetimeSeconds: 3600")).is_ok());
        for (extra, want) in [
            ("headerTypes: []", "jwt[0].headerTypes: must list at least one type"),
            ("headerTypes: [at+jwt, application/AT+JWT]", "jwt[0].headerTypes: lists \"application/AT+JWT\" twice"),
            ("maxLifetimeSeconds: 0", "jwt[0].maxLifetimeSeconds: must be greater than 0"),
        ] {
            let e = problems(&with(extra));
            assert!(e.contains(want), "{extra}: {e}");
        }
    }

    #[test]
    fn a_service_account_issuer_cannot_be_a_jwt_issuer() {
        let e = problems(&format!("serviceAccountIssuers: [https://idp.example.com]\n{MINIMAL}"));
        assert!(e.contains("jwt[0].issuer.url: must not be a service-account issuer of the cluster"), "{e}");
        let e = problems(&MINIMAL.replace("https://idp.example.com", "https://kubernetes.default.svc"));
        assert!(e.contains("must not be a service-account issuer"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = problems(
            "server:\n  listen: nowhere\njwt:\n  - issuer: {url: http://x, audiences: []}\n    claimMappings: {}\n",
        );
        for want in ["server.listen", "jwt[0].issuer.url", "jwt[0].issuer.audiences", "jwt[0].claimMappings.username"] {
            assert!(e.contains(want), "missing {want} in {e}");
        }
    }
}

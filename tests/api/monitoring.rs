//! The alert rules and the Grafana dashboard (deploy/monitoring/) against a running gateway:
//! every PromQL expression parses, and names only metrics the gateway's `/metrics` really has,
//! with only the labels it really puts on them. A renamed metric or a typo would otherwise leave
//! an alert that can never fire, and a dashboard panel that stays empty, without anyone noticing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use jsonwebtoken::Algorithm;
use tokenreview_gateway::config::UserInfoSettings;
use tokenreview_gateway::dev::DevIssuer;
use tokenreview_gateway::startup::Application;

use crate::helpers::{TestApp, V1, authenticated, rejected};
use crate::introspection::endpoint_for;

/// Series Prometheus itself adds to every target, not the gateway's.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];
/// Labels Prometheus adds to every series of a target.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// `(where, expression)` for every rule of the rules file.
fn alert_expressions() -> Vec<(String, String)> {
    let docs = YamlLoader::load_from_str(&repo_file("deploy/monitoring/alerts.yaml")).expect("alerts.yaml is YAML");
    let mut found = Vec::new();
    for group in docs[0]["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).expect("alert or record name");
            found.push((name.to_string(), rule["expr"].as_str().expect("expr").to_string()));
        }
    }
    found
}

/// Grafana's variables, replaced by what a query would be sent with.
fn grafana_to_promql(query: &str) -> String {
    query.replace("$__rate_interval", "5m").replace("${job}", ".*").replace("$job", ".*")
}

/// `(where, expression)` for every panel target of the dashboard, and the metric of each
/// `label_values(METRIC, LABEL)` variable query (as a selector).
fn dashboard_expressions() -> Vec<(String, String)> {
    fn walk(node: &Value, title: &str, found: &mut Vec<(String, String)>) {
        match node {
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).unwrap_or(title);
                if let Some(expr) = map.get("expr").and_then(Value::as_str) {
                    found.push((format!("panel {title:?}"), grafana_to_promql(expr)));
                }
                if let Some(query) = map.get("definition").and_then(Value::as_str) {
                    let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')'));
                    let (metric, _label) = inner.and_then(|q| q.rsplit_once(',')).expect("label_values(METRIC, LABEL)");
                    found.push((format!("variable query {query:?}"), metric.trim().to_string()));
                }
                map.values().for_each(|v| walk(v, title, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, title, found)),
            _ => {}
        }
    }
    let dashboard: Value = serde_json::from_str(&repo_file("deploy/monitoring/dashboard.json")).expect("JSON");
    let mut found = Vec::new();
    walk(&dashboard, "", &mut found);
    found
}

/// Every vector selector of an expression.
fn selectors(expr: &Expr) -> Vec<VectorSelector> {
    struct Collect(Vec<VectorSelector>);
    impl ExprVisitor for Collect {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            match expr {
                Expr::VectorSelector(vs) => self.0.push(vs.clone()),
                Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
                _ => {}
            }
            Ok(true)
        }
    }
    let mut collect = Collect(Vec::new());
    let Ok(_) = walk_expr(&mut collect, expr);
    collect.0
}

/// What `/metrics` exports: each series name with the label names seen on its series.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).expect("a series line");
            let labels = names.entry(line[..name_end].to_string()).or_default();
            if let Some(inner) = line[name_end..].strip_prefix('{').and_then(|l| l.split_once('}')).map(|(l, _)| l) {
                // Label values here are URLs and fixed words: no `,` or `=` inside them.
                labels.extend(inner.split(',').filter_map(|pair| pair.split_once('=')).map(|(k, _)| k.to_string()));
            }
        }
    }
    names
}

/// A gateway started from a configuration file, with an introspection endpoint and userinfo
/// groups, after one event of every kind the metrics count: so `/metrics` shows every family
/// (a family without a series is not rendered at all) with the labels of its series.
async fn gateway_that_has_seen_everything() -> String {
    let issuer = DevIssuer::start(&[Algorithm::RS256]).await.expect("dev issuer starts");
    let mut settings = issuer.gateway_settings("127.0.0.1:0");
    settings.keys.startup_wait_seconds = 5;
    settings.jwt[0].user_info = Some(UserInfoSettings { groups_claim: None });
    let mut endpoint =
        endpoint_for(&format!("{}/introspect", issuer.url()), issuer.ca_pem(), "gateway", serde_json::json!({}));
    endpoint.opaque_tokens.as_mut().expect("a routing rule").prefix = "op_".into();
    settings.introspection = vec![endpoint];
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), "# replaced below\n").unwrap();
    let gateway = Application::build(&settings, Some(file.path().to_path_buf())).await.expect("gateway builds");
    let app =
        TestApp { address: format!("http://127.0.0.1:{}", gateway.port()), issuer, client: reqwest::Client::new() };
    tokio::spawn(gateway.run_until_stopped());

    let token = app.token("rs256-1", "alice");
    assert_eq!(app.review(&token).await, authenticated(V1, "alice"));
    app.review(&token).await; // a cache hit
    assert_eq!(app.review("not-a-token").await, rejected(V1));
    app.issuer.set_userinfo("carol", serde_json::json!({"groups": ["platform"]}));
    let without_groups = app.token_with(|c| {
        c["sub"] = "carol".into();
        c.as_object_mut().unwrap().remove("groups");
    });
    app.review(&without_groups).await;
    app.issuer.set_introspection_response(
        "op_0123456789abcdef",
        r#"{"active":true,"client_id":"ci-deployer","token_type":"Bearer","exp":4000000000,"scope":"read"}"#,
    );
    app.review("op_0123456789abcdef").await;
    app.review(&app.token_with_unknown_kid("unknown-1")).await; // one fetch at once...
    app.review(&app.token_with_unknown_kid("unknown-2")).await; // ...then the cooldown
    std::fs::write(file.path(), "jwt: [ this is not yaml").unwrap(); // a failed reload
    for _ in 0..100 {
        if app.metric("tokenreview_gateway_config_reloads_total", &[("result", "failure")]).await >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, text) = app.get("/metrics").await;
    assert!(status.is_success(), "{text}");
    text
}

#[tokio::test]
async fn every_alert_and_dashboard_query_parses_and_names_only_exported_metrics() {
    let text = gateway_that_has_seen_everything().await;
    let metrics = exported(&text);
    for family in [
        "tokenreview_gateway_reviews_total",
        "tokenreview_gateway_config_info",
        "tokenreview_gateway_config_reloads_total",
        "tokenreview_gateway_introspection_requests_total",
        "tokenreview_gateway_userinfo_requests_total",
        "tokenreview_gateway_key_refresh_cooldown_hits_total",
    ] {
        assert!(
            metrics.get(family).is_some_and(|labels| !labels.is_empty() || family.ends_with("_info")),
            "{family} has no series:\n{text}"
        );
    }

    let expressions: Vec<_> = alert_expressions().into_iter().chain(dashboard_expressions()).collect();
    assert!(expressions.len() >= 20, "rules and panels were found: {expressions:?}");
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, promql) in &expressions {
        let expr = match parser::parse(promql) {
            Ok(expr) => expr,
            Err(e) => {
                problems.push(format!("{place}: does not parse: {e}\n    {promql}"));
                continue;
            }
        };
        let found = selectors(&expr);
        if found.is_empty() {
            problems.push(format!("{place}: selects no metric\n    {promql}"));
        }
        for vs in found {
            let name = vs.name.clone().unwrap_or_default();
            used.insert(name.clone());
            if PROMETHEUS_SERIES.contains(&name.as_str()) {
                continue;
            }
            let Some(labels) = metrics.get(&name) else {
                problems.push(format!("{place}: {name:?} is not on the gateway's /metrics\n    {promql}"));
                continue;
            };
            for matcher in vs.matchers.matchers.iter().filter(|m| m.name != "__name__") {
                if !labels.contains(&matcher.name) && !TARGET_LABELS.contains(&matcher.name.as_str()) {
                    problems
                        .push(format!("{place}: {name} has no label {:?} ({labels:?})\n    {promql}", matcher.name));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The issue's signals are all on the dashboard or in a rule.
    for wanted in [
        "tokenreview_gateway_reviews_total",
        "tokenreview_gateway_review_duration_seconds_bucket",
        "tokenreview_gateway_cache_requests_total",
        "tokenreview_gateway_key_fetches_total",
        "tokenreview_gateway_key_staleness_seconds",
        "tokenreview_gateway_config_reloads_total",
        "tokenreview_gateway_introspection_requests_total",
    ] {
        assert!(used.contains(wanted), "{wanted} is used by no rule or panel");
    }
}

#[test]
fn every_alert_says_what_happened_what_to_check_and_has_a_runbook_section() {
    let docs = YamlLoader::load_from_str(&repo_file("deploy/monitoring/alerts.yaml")).unwrap();
    let runbook = repo_file("docs/operations.md");
    let rules: Vec<&Yaml> =
        docs[0]["groups"].as_vec().unwrap().iter().flat_map(|g| g["rules"].as_vec().unwrap()).collect();
    assert!(rules.len() >= 6, "stale keys, issuer not ready, transient errors, reloads, introspection, not scraped");
    for rule in rules {
        let name = rule["alert"].as_str().expect("an alerting rule");
        let annotations = &rule["annotations"];
        for key in ["summary", "description"] {
            let text = annotations[key].as_str().unwrap_or_default();
            assert!(text.len() >= 20, "{name}: annotation {key} is missing or too short to help: {text:?}");
        }
        assert!(rule["labels"]["severity"].as_str().is_some(), "{name}: no severity label");
        let anchor = annotations["runbook"].as_str().unwrap_or_default();
        assert_eq!(anchor, format!("docs/operations.md#{}", name.to_lowercase()), "{name}: runbook annotation");
        assert!(runbook.contains(&format!("\n### {name}\n")), "{name}: no section in docs/operations.md");
    }
}

//! `conf/grafana/switchyard-dashboard.json` queries only metrics the gateway exports.

use std::collections::BTreeSet;

use serde_json::Value;

use super::promtool::busy_gateway;
use crate::harness::prom::families;

/// Every `expr` of every panel.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push(expr.clone());
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

/// The metric names a PromQL expression reads: our families' prefixes, histogram suffixes cut.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with("apisix_") || word.starts_with("switchyard_") {
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(&word);
            names.insert(family.to_string());
        }
        word.clear();
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/grafana/switchyard-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let queried: BTreeSet<String> = queries(&dashboard).iter().flat_map(|e| metric_names(e)).collect();
    for needed in [
        "apisix_http_status",
        "apisix_llm_prompt_tokens",
        "apisix_llm_latency",
        "switchyard_upstream_fallbacks_total",
        "switchyard_instance_health",
    ] {
        assert!(queried.contains(needed), "the dashboard should chart {needed}");
    }
    let busy = busy_gateway().await;
    let exported: BTreeSet<String> = families(&busy.gw.scrape().await).into_iter().collect();
    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics that are not exported: {missing:?}");
    assert!(metric_names("rate(apisix_http_latency_bucket{x=\"y\"}[5m])").contains("apisix_http_latency"));
}

use std::cell::OnceCell;

use bytes::Bytes;
use serde_json::json;

use super::*;

/// Evaluates `vars` against a request to `uri` with `headers` and, when given, `body`.
fn eval(vars: Json, uri: &str, headers: &[(&str, &str)], body: Option<&str>) -> Result<bool, NeedsBody> {
    let vars = Vars::compile(&vars, "vars").unwrap();
    let mut request = http::Request::builder().method("POST").uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (head, ()) = request.body(()).unwrap().into_parts();
    let body = body.map(|b| Bytes::from(b.to_string()));
    let parsed = OnceCell::new();
    let req =
        RequestVars::new(&head, Some("api.example.com"), "10.0.0.7:5000".parse().unwrap(), body.as_ref(), &parsed);
    vars.matches(&req)
}

fn holds(vars: Json) -> bool {
    eval(vars, "/v1/chat?user=alice&n=12", &[("x-tier", "Gold"), ("cookie", "a=1; team=red")], None).unwrap()
}

#[test]
fn each_operator_follows_lua_resty_expr() {
    assert!(holds(json!([["arg_user", "==", "alice"]])));
    assert!(!holds(json!([["arg_user", "==", "bob"]])));
    assert!(holds(json!([["arg_user", "~=", "bob"]])));
    assert!(holds(json!([["arg_missing", "~=", "x"]])), "an absent value differs from anything");
    assert!(holds(json!([["arg_n", ">", 10]])));
    assert!(holds(json!([["arg_n", ">=", 12]])));
    assert!(holds(json!([["arg_n", "<", "13"]])));
    assert!(holds(json!([["arg_n", "<=", 12]])));
    assert!(!holds(json!([["arg_user", ">", 1]])), "a non-number is never ordered");
    assert!(!holds(json!([["arg_n", "==", 12]])), "a string never equals a number");
    assert!(holds(json!([["http_x_tier", "~~", "^G[a-z]+$"]])));
    assert!(!holds(json!([["http_x_tier", "~~", "^g"]])));
    assert!(holds(json!([["http_x_tier", "~*", "^gold$"]])));
    assert!(holds(json!([["arg_user", "in", ["bob", "alice"]]])));
    assert!(!holds(json!([["arg_user", "in", ["bob"]]])));
    assert!(holds(json!([["cookie_team", "==", "red"]])));
    assert!(holds(json!([["arg_user", "!", "==", "bob"]])));
    assert!(!holds(json!([["arg_user", "!", "~~", "^a"]])));
}

#[test]
fn builtin_variables_read_the_request() {
    assert!(holds(json!([["uri", "==", "/v1/chat"], ["host", "==", "api.example.com"]])));
    assert!(holds(json!([["remote_addr", "==", "10.0.0.7"], ["request_method", "==", "POST"]])));
}

#[test]
fn or_and_and_negated_forms_nest() {
    assert!(holds(json!(["OR", ["arg_user", "==", "bob"], ["arg_user", "==", "alice"]])));
    assert!(!holds(json!(["AND", ["arg_user", "==", "alice"], ["arg_n", ">", 100]])));
    assert!(holds(json!(["!AND", ["arg_user", "==", "alice"], ["arg_n", ">", 100]])));
    assert!(!holds(json!(["!OR", ["arg_user", "==", "alice"], ["arg_n", ">", 100]])));
    assert!(holds(json!([
        ["cookie_team", "==", "red"],
        ["OR", ["arg_user", "==", "bob"], ["AND", ["arg_n", ">", 1], ["http_x_tier", "~*", "gold"]]]
    ])));
    assert!(holds(json!([])), "no conditions: always holds");
}

#[test]
fn body_fields_are_read_once_the_body_is_there() {
    let vars = json!([["post_arg.model", "==", "gpt-4o"]]);
    assert_eq!(eval(vars.clone(), "/", &[], None), Err(NeedsBody));
    assert_eq!(eval(vars.clone(), "/", &[], Some(r#"{"model":"gpt-4o"}"#)), Ok(true));
    assert_eq!(eval(vars.clone(), "/", &[], Some(r#"{"model":"other"}"#)), Ok(false));
    assert_eq!(eval(vars, "/", &[], Some("not json")), Ok(false));
    let nested = json!([["post_arg.meta.tier", "in", ["gold", "silver"]], ["post_arg.meta.n", ">", 2]]);
    assert_eq!(eval(nested, "/", &[], Some(r#"{"meta":{"tier":"gold","n":3}}"#)), Ok(true));
    let has = json!([["post_arg.tags", "has", "beta"]]);
    assert_eq!(eval(has.clone(), "/", &[], Some(r#"{"tags":["alpha","beta"]}"#)), Ok(true));
    assert_eq!(eval(has, "/", &[], Some(r#"{"tags":"beta"}"#)), Ok(false));
    let typed = json!([["post_arg.stream", "==", true], ["post_arg.n", "==", 2]]);
    assert_eq!(eval(typed, "/", &[], Some(r#"{"stream":true,"n":2}"#)), Ok(true));
}

#[test]
fn conditions_without_body_fields_never_ask_for_it() {
    let vars = Vars::compile(&json!([["arg_a", "==", "1"]]), "vars").unwrap();
    assert!(!vars.needs_body());
    assert_eq!(eval(json!([["arg_a", "==", "1"]]), "/?a=1", &[], None), Ok(true));
    assert!(Vars::compile(&json!(["OR", ["post_arg.model", "==", "x"]]), "vars").unwrap().needs_body());
}

#[test]
fn bad_conditions_are_refused_naming_the_element() {
    let err = |v: Json| Vars::compile(&v, "vars").unwrap_err();
    let bad_regex = err(json!([["arg_a", "==", "1"], ["uri", "~~", "/v1/(chat"]]));
    assert_eq!(bad_regex.path, "vars[1][2]");
    assert!(bad_regex.to_string().contains("invalid regex at position 4"), "{bad_regex}");
    assert_eq!(err(json!([["arg_a", "=~", "1"]])).path, "vars[0][1]");
    assert_eq!(err(json!([["nope", "==", "1"]])).path, "vars[0][0]");
    assert_eq!(err(json!([["arg_a", "in", "x"]])).path, "vars[0][2]");
    assert_eq!(err(json!([["arg_a", ">", "ten"]])).path, "vars[0][2]");
    assert_eq!(err(json!([["arg_a", "==", {"x": 1}]])).path, "vars[0][2]");
    assert_eq!(err(json!([["arg_a", "=="]])).path, "vars[0]");
    assert_eq!(err(json!(["OR", ["arg_a", "==", "1"], "x"])).path, "vars[2]");
    assert_eq!(err(json!({"a": 1})).path, "vars");
}

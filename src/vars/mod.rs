//! A route's `vars`: lua-resty-expr conditions as APISIX uses them, compiled once with the route
//! (regexes included) and evaluated on a request without allocating. The variables they read are
//! the SDK's ([`switchyard_sdk::vars`]), the one reader plugins use too.
//!
//! Forms: `[[var, op, value], ...]` (all must hold), `[var, "!", op, value]` (negated), and
//! `["OR" | "AND" | "!OR" | "!AND", expr, ...]`, nested freely. Operators: `==`, `~=`, `>`, `<`,
//! `>=`, `<=`, `~~` (regex), `~*` (case-insensitive regex), `in` (value is an array), `has`
//! (the variable is an array holding the value). Comparison follows Lua: a string never equals
//! a number; ordering operators convert both sides with `tonumber`.

use regex::Regex;
use serde_json::Value as Json;
use switchyard_sdk::vars::json_path;
use switchyard_sdk::ConfigError;

pub use switchyard_sdk::vars::{NeedsBody, RequestVars, Value, Variable};

/// A compiled `vars` expression.
#[derive(Debug)]
pub struct Vars {
    expr: Expr,
    needs_body: bool,
}

#[derive(Debug)]
enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Cond(Cond),
}

#[derive(Debug)]
struct Cond {
    var: Variable,
    negate: bool,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Eq(Literal),
    Ne(Literal),
    Gt(f64),
    Ge(f64),
    Lt(f64),
    Le(f64),
    Regex(Regex),
    In(Vec<Literal>),
    Has(Literal),
}

/// A constant from the config.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Vars {
    /// Compiles a route's `vars` (at `path`, for error paths such as `vars[1][2]`). Runs when the
    /// route compiles, on admin writes and on reload; a bad regex is refused here.
    pub fn compile(value: &Json, path: &str) -> Result<Vars, ConfigError> {
        let items = value.as_array().ok_or_else(|| ConfigError::new(path, "must be an array of conditions"))?;
        let expr = match logical(items) {
            Some(_) => compile_expr(value, path)?,
            None => Expr::All(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| compile_expr(item, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let needs_body = expr.needs_body();
        Ok(Vars { expr, needs_body })
    }

    /// Whether some condition reads the request body (`post_arg.*`).
    pub fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// Whether `req` satisfies every condition. `Err(NeedsBody)`: a body field decides, and the
    /// body is not read yet.
    pub fn matches(&self, req: &RequestVars<'_>) -> Result<bool, NeedsBody> {
        self.expr.eval(req)
    }
}

/// The logical operator an expression array starts with, if it does.
fn logical(items: &[Json]) -> Option<&str> {
    items.first().and_then(Json::as_str).filter(|s| matches!(*s, "OR" | "AND" | "!OR" | "!AND"))
}

fn compile_expr(value: &Json, path: &str) -> Result<Expr, ConfigError> {
    let items = value.as_array().ok_or_else(|| ConfigError::new(path, "must be an array"))?;
    if let Some(op) = logical(items) {
        let parts = items[1..]
            .iter()
            .enumerate()
            .map(|(i, item)| compile_expr(item, &format!("{path}[{}]", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        let (negate, all) = match op {
            "AND" => (false, true),
            "OR" => (false, false),
            "!AND" => (true, true),
            _ => (true, false),
        };
        let expr = if all { Expr::All(parts) } else { Expr::Any(parts) };
        return Ok(if negate { Expr::Not(Box::new(expr)) } else { expr });
    }
    match items.first() {
        Some(Json::Array(_)) => Ok(Expr::All(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| compile_expr(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        )),
        Some(Json::String(_)) => compile_cond(items, path).map(Expr::Cond),
        _ => Err(ConfigError::new(path, "must be [variable, operator, value] or [\"OR\"|\"AND\", ...]")),
    }
}

fn compile_cond(items: &[Json], path: &str) -> Result<Cond, ConfigError> {
    let at = |i: usize| format!("{path}[{i}]");
    let text = |i: usize| items.get(i).and_then(Json::as_str);
    let (negate, op_at) = match (items.len(), text(1)) {
        (4, Some("!")) => (true, 2),
        (3, _) => (false, 1),
        _ => {
            return Err(ConfigError::new(
                path,
                "must be [variable, operator, value] or [variable, \"!\", operator, value]",
            ))
        }
    };
    let var = Variable::parse(text(0).unwrap_or_default()).map_err(|reason| ConfigError::new(at(0), reason))?;
    let op_name = text(op_at).ok_or_else(|| ConfigError::new(at(op_at), "must be an operator string"))?;
    let value_at = op_at + 1;
    let value = &items[value_at];
    let literal =
        || literal_of(value).ok_or_else(|| ConfigError::new(at(value_at), "must be a string, number, boolean or null"));
    let number = || {
        literal()?
            .as_number()
            .ok_or_else(|| ConfigError::new(at(value_at), format!("must be a number for `{op_name}`")))
    };
    let op = match op_name {
        "==" => Op::Eq(literal()?),
        "~=" => Op::Ne(literal()?),
        ">" => Op::Gt(number()?),
        ">=" => Op::Ge(number()?),
        "<" => Op::Lt(number()?),
        "<=" => Op::Le(number()?),
        "~~" | "~*" => {
            let pattern = value.as_str().ok_or_else(|| ConfigError::new(at(value_at), "must be a regex string"))?;
            Op::Regex(regex(pattern, op_name == "~*").map_err(|reason| ConfigError::new(at(value_at), reason))?)
        }
        "in" => {
            let list = value.as_array().ok_or_else(|| ConfigError::new(at(value_at), "must be an array for `in`"))?;
            Op::In(
                list.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        literal_of(v).ok_or_else(|| {
                            ConfigError::new(
                                format!("{}[{i}]", at(value_at)),
                                "must be a string, number, boolean or null",
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        "has" => Op::Has(literal()?),
        _ => {
            return Err(ConfigError::new(
                at(op_at),
                "must be one of ==, ~=, >, >=, <, <=, ~~, ~*, in, has (\"!\" before it negates)",
            ))
        }
    };
    Ok(Cond { var, negate, op })
}

fn literal_of(value: &Json) -> Option<Literal> {
    match value {
        Json::Null => Some(Literal::Null),
        Json::String(s) => Some(Literal::Str(s.clone())),
        Json::Number(n) => n.as_f64().map(Literal::Num),
        Json::Bool(b) => Some(Literal::Bool(*b)),
        Json::Array(_) | Json::Object(_) => None,
    }
}

/// Patterns compiled already, by pattern and case-insensitivity, shared by every route: a table
/// of 10,000 routes that repeat a pattern compiles it once (one compile costs a good part of a
/// millisecond; row 10 of the bench took 4.6 s to load its table before this cache). A `Regex`
/// clone shares the compiled program. Emptied when it reaches [`REGEX_CACHE_CAP`] entries, so
/// patterns edited away do not pile up.
static COMPILED_REGEXES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<(String, bool), Regex>>> =
    std::sync::LazyLock::new(Default::default);
const REGEX_CACHE_CAP: usize = 4096;

/// Compiles a `~~` / `~*` pattern, or takes it from the cache. A syntax error says at which
/// character of the pattern it is.
fn regex(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    let key = (pattern.to_string(), case_insensitive);
    let mut compiled = COMPILED_REGEXES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(regex) = compiled.get(&key) {
        return Ok(regex.clone());
    }
    if let Err(err) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
        return Err(format!("invalid regex at position {}: {}", err.span().start.offset, err.kind()));
    }
    let regex = regex::RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .build()
        .map_err(|err| format!("invalid regex: {err}"))?;
    if compiled.len() >= REGEX_CACHE_CAP {
        compiled.clear();
    }
    compiled.insert(key, regex.clone());
    Ok(regex)
}

impl Literal {
    fn as_number(&self) -> Option<f64> {
        match self {
            Literal::Num(n) => Some(*n),
            Literal::Str(s) => s.trim().parse().ok(),
            Literal::Null | Literal::Bool(_) => None,
        }
    }

    /// Lua equality between a request value and this constant.
    fn equals(&self, value: &Value<'_>) -> bool {
        match (self, value) {
            (Literal::Null, Value::Null | Value::Absent) => true,
            (Literal::Str(a), Value::Str(b)) => a == b,
            (Literal::Num(a), Value::Num(b)) => a == b,
            (Literal::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

impl Expr {
    fn needs_body(&self) -> bool {
        match self {
            Expr::All(parts) | Expr::Any(parts) => parts.iter().any(Expr::needs_body),
            Expr::Not(inner) => inner.needs_body(),
            Expr::Cond(cond) => cond.var.needs_body(),
        }
    }

    fn eval(&self, req: &RequestVars<'_>) -> Result<bool, NeedsBody> {
        match self {
            Expr::All(parts) => {
                for part in parts {
                    if !part.eval(req)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Expr::Any(parts) => {
                for part in parts {
                    if part.eval(req)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Expr::Not(inner) => Ok(!inner.eval(req)?),
            Expr::Cond(cond) => Ok(cond.holds(&cond.var.read(req)?) != cond.negate),
        }
    }
}

impl Cond {
    fn holds(&self, value: &Value<'_>) -> bool {
        let number = || value.as_number();
        match &self.op {
            Op::Eq(literal) => literal.equals(value),
            Op::Ne(literal) => !literal.equals(value),
            Op::Gt(n) => number().is_some_and(|v| v > *n),
            Op::Ge(n) => number().is_some_and(|v| v >= *n),
            Op::Lt(n) => number().is_some_and(|v| v < *n),
            Op::Le(n) => number().is_some_and(|v| v <= *n),
            Op::Regex(regex) => matches!(value, Value::Str(s) if regex.is_match(s)),
            Op::In(list) => list.iter().any(|literal| literal.equals(value)),
            Op::Has(literal) => match value {
                Value::Json(raw) => json_path::any_element(raw, &|element| literal.equals(&Value::from_json(element))),
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests;

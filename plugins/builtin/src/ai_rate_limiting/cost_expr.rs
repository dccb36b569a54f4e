//! `cost_expr`: arithmetic over the usage fields (`input_tokens + 2 * output_tokens`), parsed once
//! when the config compiles and evaluated per request. A small recursive-descent parser: numbers,
//! the fields below, `+ - * /`, unary minus and parentheses; never a script engine.

use switchyard_sdk::Usage;

/// The names an expression may use, and which usage figure each is.
const FIELDS: [&str; 9] = [
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
];

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Field(usize),
    Neg(Box<Expr>),
    Binary(Box<Expr>, u8, Box<Expr>),
}

impl Expr {
    /// Parses `source`; the error says what was expected where, never more of the input.
    pub fn parse(source: &str) -> Result<Expr, String> {
        let mut parser = Parser { bytes: source.as_bytes(), at: 0 };
        let expr = parser.sum()?;
        parser.skip_space();
        if parser.at != parser.bytes.len() {
            return Err(format!("unexpected character at offset {}", parser.at));
        }
        Ok(expr)
    }

    /// The cost of a request with `usage`: never negative, rounded up.
    pub fn cost(&self, usage: &Usage) -> u64 {
        let value = self.eval(usage);
        if value.is_finite() && value > 0.0 {
            value.ceil() as u64
        } else {
            0
        }
    }

    fn eval(&self, usage: &Usage) -> f64 {
        match self {
            Expr::Number(n) => *n,
            Expr::Field(i) => field(usage, *i) as f64,
            Expr::Neg(e) => -e.eval(usage),
            Expr::Binary(a, op, b) => {
                let (a, b) = (a.eval(usage), b.eval(usage));
                match op {
                    b'+' => a + b,
                    b'-' => a - b,
                    b'*' => a * b,
                    _ if b == 0.0 => 0.0,
                    _ => a / b,
                }
            }
        }
    }
}

fn field(usage: &Usage, index: usize) -> u64 {
    match FIELDS[index] {
        "prompt_tokens" | "input_tokens" => usage.prompt_tokens,
        "completion_tokens" | "output_tokens" => usage.completion_tokens,
        "total_tokens" => usage.total_tokens,
        "cached_tokens" | "cache_read_input_tokens" => usage.cached_tokens,
        "reasoning_tokens" => usage.reasoning_tokens,
        _ => 0,
    }
}

struct Parser<'s> {
    bytes: &'s [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.at).copied()
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut left = self.product()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.at += 1;
            left = Expr::Binary(Box::new(left), op, Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.at += 1;
            left = Expr::Binary(Box::new(left), op, Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(b'-') => {
                self.at += 1;
                Ok(Expr::Neg(Box::new(self.unary()?)))
            }
            Some(b'(') => {
                self.at += 1;
                let inner = self.sum()?;
                if self.peek() != Some(b')') {
                    return Err(format!("expected `)` at offset {}", self.at));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(b) if b.is_ascii_digit() || b == b'.' => {
                let start = self.at;
                while self.bytes.get(self.at).is_some_and(|b| b.is_ascii_digit() || *b == b'.') {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
                text.parse().map(Expr::Number).map_err(|_| format!("invalid number at offset {start}"))
            }
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                let start = self.at;
                while self.bytes.get(self.at).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                    self.at += 1;
                }
                let name = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
                FIELDS
                    .iter()
                    .position(|f| *f == name)
                    .map(Expr::Field)
                    .ok_or_else(|| format!("unknown variable at offset {start}: use one of {}", FIELDS.join(", ")))
            }
            _ => Err(format!("expected a number, a usage field or `(` at offset {}", self.at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_over_usage_fields() {
        let usage =
            Usage { prompt_tokens: 10, completion_tokens: 48, total_tokens: 58, cached_tokens: 4, ..Usage::default() };
        assert_eq!(Expr::parse("input_tokens + 2 * output_tokens").unwrap().cost(&usage), 106);
        assert_eq!(Expr::parse("(prompt_tokens - cached_tokens) / 4 + completion_tokens").unwrap().cost(&usage), 50);
        assert_eq!(Expr::parse("-total_tokens").unwrap().cost(&usage), 0);
        assert_eq!(Expr::parse("total_tokens / 0").unwrap().cost(&usage), 0);
        assert_eq!(Expr::parse("0.5 * total_tokens").unwrap().cost(&usage), 29);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", "os.exit()", "total_tokens +", "(1", "1 2", "secret_field", "1..2"] {
            assert!(Expr::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}

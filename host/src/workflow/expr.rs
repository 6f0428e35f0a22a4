//! The data-mapping language of step inputs: JSON-like literals and paths into the saga context.
//!
//! ```text
//! { 'order_id': input.order_id, 'items': input.items, 'payment': steps.charge.payment_id }
//! ```
//!
//! The context is `{ input, steps: { <step name>: <output> } }`. Strings take single or double
//! quotes; object keys may be bare identifiers; `a.b[0]` indexes arrays. A path that leads
//! nowhere is *undefined*: an object entry whose value is undefined is left out (so optional
//! fields stay optional), and an undefined array element or whole payload becomes `null`.
//!
//! Expressions are parsed once, when the workflow is loaded, and evaluated against borrowed
//! saga data, so only the values a step asks for are copied.

use serde_json::{Map, Number, Value};

/// Deepest nesting of `{..}` and `[..]` an expression may have. The parser recurses once per
/// level, so without a bound a hostile definition could overflow the host's stack; a payload
/// mapping deeper than this is not one a person wrote.
pub const MAX_DEPTH: usize = 32;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    Object(Vec<(String, Expr)>),
    Array(Vec<Expr>),
    Path(Path),
}

/// `input.a.b[0]` or `steps.<name>.field`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub root: Root,
    pub segments: Vec<Segment>,
}

/// Where a path starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    /// The saga's input.
    Input,
    /// The output of the named step.
    Step(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

/// What an expression reads when it is evaluated.
pub trait Scope {
    fn input(&self) -> &Value;
    /// The output of a step, if it has one.
    fn step_output(&self, step: &str) -> Option<&Value>;
}

impl Expr {
    /// Parse `text`. The error names the character offset and what was expected.
    pub fn parse(text: &str) -> Result<Expr, String> {
        let mut p = Parser { src: text.as_bytes(), pos: 0, depth: 0 };
        let e = p.expr()?;
        p.skip_ws();
        if p.pos != p.src.len() {
            return Err(p.error("end of expression"));
        }
        Ok(e)
    }

    /// Every path in the expression, for validation.
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut out);
        out
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a Path>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Object(fields) => fields.iter().for_each(|(_, e)| e.collect_paths(out)),
            Expr::Array(items) => items.iter().for_each(|e| e.collect_paths(out)),
            Expr::Path(p) => out.push(p),
        }
    }

    /// Evaluate against `scope`; `None` means undefined.
    pub fn eval(&self, scope: &dyn Scope) -> Option<Value> {
        match self {
            Expr::Literal(v) => Some(v.clone()),
            Expr::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (k, e) in fields {
                    if let Some(v) = e.eval(scope) {
                        map.insert(k.clone(), v);
                    }
                }
                Some(Value::Object(map))
            }
            Expr::Array(items) => {
                Some(Value::Array(items.iter().map(|e| e.eval(scope).unwrap_or(Value::Null)).collect()))
            }
            Expr::Path(p) => p.lookup(scope).cloned(),
        }
    }
}

impl Path {
    fn lookup<'a>(&self, scope: &'a dyn Scope) -> Option<&'a Value> {
        let mut v = match &self.root {
            Root::Input => scope.input(),
            Root::Step(name) => scope.step_output(name)?,
        };
        for seg in &self.segments {
            v = match seg {
                Segment::Field(f) => v.get(f.as_str())?,
                Segment::Index(i) => v.get(*i)?,
            };
        }
        Some(v)
    }
}

/// Prints the expression in the syntax [`Expr::parse`] reads.
impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expr::Literal(Value::String(s)) => write!(f, "{}", quoted(s)),
            Expr::Literal(v) => write!(f, "{v}"),
            Expr::Object(fields) => {
                f.write_str("{ ")?;
                for (i, (k, e)) in fields.iter().enumerate() {
                    let sep = if i + 1 < fields.len() { ", " } else { " " };
                    write!(f, "{}: {e}{sep}", quoted(k))?;
                }
                f.write_str("}")
            }
            Expr::Array(items) => {
                f.write_str("[")?;
                for (i, e) in items.iter().enumerate() {
                    write!(f, "{}{e}", if i > 0 { ", " } else { "" })?;
                }
                f.write_str("]")
            }
            Expr::Path(p) => write!(f, "{p}"),
        }
    }
}

/// `text` in single quotes, with `\\` and `'` escaped, as [`Expr::parse`] reads it back.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.root {
            Root::Input => write!(f, "input")?,
            Root::Step(s) => write!(f, "steps.{s}")?,
        }
        for seg in &self.segments {
            match seg {
                Segment::Field(s) => write!(f, ".{s}")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    /// Open `{` and `[` around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, expected: &str) -> String {
        match self.src.get(self.pos) {
            Some(&c) => format!("expected {expected} at offset {}, found {:?}", self.pos, c as char),
            None => format!("expected {expected} at offset {}, found the end", self.pos),
        }
    }

    fn skip_ws(&mut self) {
        while self.src.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.src.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        if matches!(self.peek(), Some(b'{' | b'[')) {
            // Checked before recursing, so the stack never grows past the bound.
            if self.depth >= MAX_DEPTH {
                return Err(format!(
                    "the expression nests {{..}} and [..] deeper than {MAX_DEPTH} levels (at offset {}): flatten it",
                    self.pos
                ));
            }
            self.depth += 1;
            let e = if self.peek() == Some(b'{') { self.object() } else { self.array() };
            self.depth -= 1;
            return e;
        }
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'\'' | b'"') => Ok(Expr::Literal(Value::String(self.string()?))),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let word = self.ident()?;
                match word.as_str() {
                    "true" => Ok(Expr::Literal(Value::Bool(true))),
                    "false" => Ok(Expr::Literal(Value::Bool(false))),
                    "null" => Ok(Expr::Literal(Value::Null)),
                    _ => self.path(word),
                }
            }
            _ => Err(self.error("a value: {..}, [..], 'text', a number, true, false, null, input.… or steps.…")),
        }
    }

    fn object(&mut self) -> Result<Expr, String> {
        self.eat(b'{');
        let mut fields = Vec::new();
        while !self.eat(b'}') {
            let key = match self.peek() {
                Some(b'\'' | b'"') => self.string()?,
                Some(c) if c.is_ascii_alphabetic() || c == b'_' => self.ident()?,
                _ => return Err(self.error("a key ('name' or name) or '}'")),
            };
            if !self.eat(b':') {
                return Err(self.error("':' after the key"));
            }
            fields.push((key, self.expr()?));
            if !self.eat(b',') {
                if !self.eat(b'}') {
                    return Err(self.error("',' or '}'"));
                }
                break;
            }
        }
        Ok(Expr::Object(fields))
    }

    fn array(&mut self) -> Result<Expr, String> {
        self.eat(b'[');
        let mut items = Vec::new();
        while !self.eat(b']') {
            items.push(self.expr()?);
            if !self.eat(b',') {
                if !self.eat(b']') {
                    return Err(self.error("',' or ']'"));
                }
                break;
            }
        }
        Ok(Expr::Array(items))
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.src[self.pos];
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.src.get(self.pos) {
                None => {
                    return Err(format!("unterminated string starting before offset {}", self.pos));
                }
                Some(&c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let esc = *self.src.get(self.pos + 1).ok_or_else(|| self.error("an escaped character"))?;
                    out.push(match esc {
                        b'n' => b'\n',
                        b't' => b'\t',
                        other => other,
                    });
                    self.pos += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| "string is not UTF-8".to_owned())
    }

    fn number(&mut self) -> Result<Expr, String> {
        let start = self.pos;
        while self.src.get(self.pos).is_some_and(|c| c.is_ascii_digit() || b"-+.eE".contains(c)) {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or_default();
        let n: Number = text.parse().map_err(|_| format!("{text:?} at offset {start} is not a number"))?;
        Ok(Expr::Literal(Value::Number(n)))
    }

    fn ident(&mut self) -> Result<String, String> {
        self.skip_ws();
        let start = self.pos;
        while self.src.get(self.pos).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-') {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("a name"));
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn path(&mut self, first: String) -> Result<Expr, String> {
        let mut segments = Vec::new();
        loop {
            // No whitespace inside a path: `input . x` is not a path.
            match self.src.get(self.pos) {
                Some(b'.') => {
                    self.pos += 1;
                    segments.push(Segment::Field(self.ident()?));
                }
                Some(b'[') => {
                    self.pos += 1;
                    let start = self.pos;
                    while self.src.get(self.pos).is_some_and(u8::is_ascii_digit) {
                        self.pos += 1;
                    }
                    let index = std::str::from_utf8(&self.src[start..self.pos])
                        .unwrap_or_default()
                        .parse()
                        .map_err(|_| self.error("an array index"))?;
                    if self.src.get(self.pos) != Some(&b']') {
                        return Err(self.error("']'"));
                    }
                    self.pos += 1;
                    segments.push(Segment::Index(index));
                }
                _ => break,
            }
        }
        let root = match first.as_str() {
            "input" => Root::Input,
            "steps" => match segments.first() {
                Some(Segment::Field(name)) => {
                    let name = name.clone();
                    segments.remove(0);
                    Root::Step(name)
                }
                _ => {
                    return Err("`steps` must be followed by a step name, e.g. steps.reserve.reservation_id".to_owned());
                }
            },
            other => {
                return Err(format!(
                    "unknown name {other:?}: a path starts with `input` or `steps.<step>` (quote text: '{other}')"
                ));
            }
        };
        Ok(Expr::Path(Path { root, segments }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Ctx {
        input: Value,
        steps: Value,
    }

    impl Scope for Ctx {
        fn input(&self) -> &Value {
            &self.input
        }
        fn step_output(&self, step: &str) -> Option<&Value> {
            self.steps.get(step)
        }
    }

    fn eval(text: &str) -> Option<Value> {
        let ctx = Ctx {
            input: json!({"order_id": "o-1", "items": [{"sku": "A-1"}], "n": 3}),
            steps: json!({"reserve": {"reservation_id": "r-1"}}),
        };
        Expr::parse(text).unwrap().eval(&ctx)
    }

    #[test]
    fn maps_paths_and_literals() {
        assert_eq!(
            eval(
                "{ 'id': input.order_id, sku: input.items[0].sku, 'r': steps.reserve.reservation_id, 'k': 'x', 'n': 1.5, 'b': true, 'z': null }"
            ),
            Some(json!({"id": "o-1", "sku": "A-1", "r": "r-1", "k": "x", "n": 1.5, "b": true, "z": null}))
        );
        assert_eq!(eval("input.n"), Some(json!(3)));
        assert_eq!(eval("[input.n, input.missing]"), Some(json!([3, null])));
    }

    #[test]
    fn undefined_fields_are_left_out() {
        assert_eq!(eval("{ 'a': input.missing, 'b': steps.charge.x, 'c': 1 }"), Some(json!({"c": 1})));
        assert_eq!(eval("input.items[7]"), None);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "{ 'a': input.x[2].y, 'b': [1, 'it\\'s', null], 'c': steps.s.z }",
            "input",
            "'plain'",
            "{ \"a'b\": 1, 'a\\\\b': 2 }",
            "[5e-72, 0.5e40, 446445111709174407370955111709505095511170954]",
        ] {
            let e = Expr::parse(text).unwrap();
            assert_eq!(Expr::parse(&e.to_string()).unwrap(), e, "{text} -> {e}");
        }
    }

    #[test]
    fn reports_what_it_expected() {
        for (text, needle) in [
            ("{ 'a' input.x }", "expected ':'"),
            ("{ 'a': }", "expected a value"),
            ("order.id", "unknown name \"order\""),
            ("steps", "must be followed by a step name"),
            ("'open", "unterminated string"),
            ("input.x y", "expected end of expression"),
            (&*"[".repeat(100_000), "deeper than 32 levels"),
            (&*"{ a: ".repeat(100_000), "deeper than 32 levels"),
        ] {
            let err = Expr::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}

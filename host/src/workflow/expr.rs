//! The expression language of workflows: [CEL], the Common Expression Language, for step
//! inputs (data mapping) and conditions.
//!
//! ```text
//! { 'order_id': input.order_id, 'items': input.items, 'payment': steps.charge.payment_id }
//! input.total > 5000.0 && has(steps.reserve)
//! { 'sku': item.sku, 'qty': item.qty * 2, 'gift': has(input.gift) ? input.gift : null }
//! input.items.map(i, {'sku': i.sku, 'qty': i.qty})
//! ```
//!
//! # The context
//!
//! An expression reads five names, and nothing else (any other name is a parse error):
//!
//! - `input`: the saga's input.
//! - `steps`: a map from step name to that step's latest output. It holds only the steps that
//!   have an output, so `has(steps.charge)` tells whether `charge` ran. A step is always named
//!   (`steps.charge`, `steps['charge']`, `has(steps.charge)`); `steps[x]`, `size(steps)` and
//!   other uses of the whole map are parse errors, so that [`Expr::steps_read`] is exactly the
//!   steps an expression depends on.
//! - `item` and `index`: the element and its position, in a `for_each`.
//! - `error`: `{step, code, message}` of the failure, in a catch target.
//!
//! A name the evaluation does not provide (e.g. `item` outside a `for_each`) is absent from
//! the context: reading it is an evaluation error ("`item` is not set here").
//!
//! # Missing keys
//!
//! Reading a key that is not there is an error, as everywhere in CEL: `input.coupon` fails
//! ("no such key: coupon") when the input has none. For an optional field write
//! `has(input.coupon) ? input.coupon : null`, or test with `'coupon' in input`;
//! `input.?coupon.orValue('none')` works too (CEL optionals).
//!
//! # The language
//!
//! Map literals `{ 'k': v }` (keys are quoted: a bare word is a name), lists `[1, 2]`, strings
//! in single or double quotes (`'''...'''` over several lines, `r'...'` raw), `null`, `true`;
//! `&&` `||` `!`, `==` `!=` `<` `<=` `>` `>=`, `+` `-` `*` `/` `%`, `c ? a : b`, `x in list`
//! and `'k' in map`, `size(x)`, `has(a.b)`, `s.startsWith(p)`, `contains`, `endsWith`, `int()`,
//! `uint()`, `double()`, `string()`, `type()`, and the macros `l.all(x, p)`, `exists`,
//! `exists_one`, `map(x, e)`, `map(x, p, e)` and `filter(x, p)`. `//` starts a comment.
//! A function that does not exist is a parse error; among them `matches()` (regular
//! expressions), `timestamp()` and `duration()`: the crate's `regex` and `chrono` features are
//! off (see the workspace `Cargo.toml`).
//!
//! # JSON and CEL
//!
//! JSON objects become maps with string keys, arrays lists, `null` null. A JSON number that is
//! an integer fitting an `i64` becomes an `int`, any other number a `double`: so `input.qty * 2`
//! is an `int`, `input.price * 2.0` a `double`. CEL compares numbers across types
//! (`input.total > 5000` is true for a total of 5000.5, and `1 == 1.0`), but its arithmetic does
//! not mix them: `input.qty * 1.5` is an error when `qty` is an integer. Write
//! `double(input.qty) * 1.5`, and `5000.0` rather than `5000` where a double is meant.
//!
//! The result goes back to JSON: `int` and `uint` as integers, `double` as a number (NaN and
//! the infinities are errors), strings, bools, `null`, lists, and maps whose keys are strings
//! (any other key is an error); an optional becomes its value, or `null` when it has none, and
//! a type its name (`type(1)` gives `"int"`). Bytes are an error.
//!
//! CEL maps have no order. An object written as a map literal keeps its keys in the order
//! written (inside `map()` and `? :` too). An object taken from the data keeps its order when
//! the expression is only literals and paths (as most step inputs are), and has its keys
//! sorted otherwise.
//!
//! # Limits
//!
//! An expression is at most [`MAX_LEN`] bytes, nests brackets at most [`MAX_DEPTH`] deep, and
//! its syntax tree is at most 100 levels deep (a chain of 100 `+`, say): the parser and the
//! interpreter recurse, and a hostile definition must not overflow the stack (long texts are
//! parsed on a thread with a large stack, then rejected if too deep). One evaluation iterates
//! at most 100,000 times over all its macros (`map`, `all`, ...; the size of each list is
//! counted up front), so that nested macros cannot make a step's evaluation run for ever.
//! Values nested more than 200 deep are an evaluation error.
//!
//! # Cost
//!
//! Expressions are compiled once, when the workflow is loaded (tens of microseconds each). An
//! evaluation converts only what the expression reads: only the steps of
//! [`Expr::steps_read`], only the variables of [`Expr::variables`], and of those only the
//! fields it names (`input.order_id` converts the order id, not the whole input). An
//! expression of literals and paths only skips the interpreter: it is evaluated on the JSON.
//!
//! [CEL]: https://cel.dev

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock};

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr as Node, IdedExpr, LiteralValue, SourceInfo, operators,
};
use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, DYN_TYPE};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, ParseErrors};
use serde_json::{Map, Number, Value};

/// Deepest nesting of (), [], {} an expression may have, checked before parsing so a hostile
/// definition cannot overflow the stack (the CEL parser recurses).
pub const MAX_DEPTH: usize = 32;

/// Longest expression text accepted, in bytes. A mapping or a condition a person writes is a
/// few hundred bytes; the bound keeps the parser's time (it is slow: up to 0.1 s for 16 KiB)
/// and memory small, and the depth of a chain such as `1 + 1 + ... + 1` that has no brackets
/// (the depth check after parsing then rejects it).
pub const MAX_LEN: usize = 16 * 1024;

/// Top-level names an expression may use.
pub const VARIABLES: [&str; 5] = ["input", "steps", "item", "index", "error"];

/// The deepest syntax tree accepted. Evaluation recurses once per level (about 2.5 KiB of
/// stack each: 100 levels take some 250 KiB), and runs on the orchestrator's threads.
const MAX_NODE_DEPTH: usize = 100;

/// How many elements one evaluation may iterate over, in all its comprehensions together.
const MAX_ITERATIONS: u64 = 100_000;

/// Deepest JSON value converted to or from CEL (the conversions recurse).
const MAX_VALUE_DEPTH: usize = 200;

/// Texts longer than this are parsed on a thread of their own with a [`PARSE_STACK`] stack:
/// the parser needs about 0.5 KiB of stack per level of a chain like `a.b.c...` (2.5 KiB
/// unoptimised), a 16 KiB text can be a chain of 8,000, and the caller may be a 2 MiB worker.
const INLINE_PARSE_LEN: usize = 512;
const PARSE_STACK: usize = 64 << 20;

/// Names that are CEL types, valid wherever a value is (`type(x) == int`).
const TYPE_NAMES: [&str; 11] =
    ["bool", "bytes", "double", "int", "list", "map", "null_type", "optional_type", "string", "type", "uint"];

/// The function the compiler wraps around the range of every comprehension, to charge its
/// size to the evaluation's iteration budget. Not an identifier, so no expression can call it.
const CHARGE: &str = "@baton_charge";

thread_local! {
    /// Iterations left to the evaluation running on this thread.
    static BUDGET: Cell<u64> = const { Cell::new(0) };
}

/// The standard library, and [`CHARGE`].
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_overload(CHARGE, "baton_charge_dyn", vec![DYN_TYPE], charge).expect("the name is not a standard one");
    Arc::new(env)
});

/// A compiled CEL expression. Cheap to clone (Arc inside). Compiled once when the workflow loads.
#[derive(Clone)]
pub struct Expr(Arc<Compiled>);

struct Compiled {
    source: String,
    ast: IdedExpr,
    variables: Vec<String>,
    steps: Vec<String>,
    /// What is read of `input`, `item`, `index` and `error`, by their place in [`VARIABLES`]
    /// (`None`: not read; the `steps` place is always `None`).
    reads: [Option<Reads>; 5],
    /// What is read of each step of `steps`, in the same order.
    step_reads: Vec<Reads>,
    /// The key order of the objects the expression writes as literals.
    shape: Shape,
    /// How to evaluate the expression straight on JSON, if it is only literals and paths.
    plan: Option<Plan>,
}

/// What is read of a JSON value: all of it, only whether it is there (`has(a.b)`), or some of
/// its fields (`a.b`, `a['b']`).
#[derive(Debug, Clone, PartialEq)]
enum Reads {
    All,
    Presence,
    Fields(BTreeMap<String, Reads>),
}

/// An expression made only of literals, lists, maps with literal string keys and paths
/// (`input.a.b`, `steps.x.y`, `item`), evaluated on the JSON itself: what most step inputs
/// are, several times faster than the interpreter. It gives what the interpreter gives, except that
/// objects copied from the data keep the order of their keys; on any error (a missing key, a
/// field of a non-object...) the interpreter runs instead, and reports it.
#[derive(Debug)]
enum Plan {
    Const(Value),
    Object(Vec<(String, Plan)>),
    Array(Vec<Plan>),
    /// A variable, by its place in [`VARIABLES`], and the fields read from it; of `steps`,
    /// the first field is the step.
    Read(usize, Vec<String>),
}

/// Where the result's objects come from map literals: the order to put their keys in.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Any,
    Object(Vec<(String, Shape)>),
    Items(Vec<Shape>),
    Each(Box<Shape>),
}

/// What an expression reads when it is evaluated.
pub trait Scope {
    fn input(&self) -> &Value;
    /// The latest output of a step, if it has one. Only the steps in `steps_read()` are asked for.
    fn step_output(&self, step: &str) -> Option<&Value>;
    /// `item`, `index` or `error`, where they apply (None elsewhere).
    fn variable(&self, name: &str) -> Option<Value>;
}

/// The empty scope: `input` is `null`, no step has run, no other variable is set. For
/// expressions that read nothing, and for checks.
impl Scope for () {
    fn input(&self) -> &Value {
        static NULL: Value = Value::Null;
        &NULL
    }
    fn step_output(&self, _step: &str) -> Option<&Value> {
        None
    }
    fn variable(&self, _name: &str) -> Option<Value> {
        None
    }
}

impl Expr {
    /// Parse and compile. Errors are one line, name what is wrong and where (column if the
    /// parser gives one), e.g. "unknown name `foo`: an expression can read input, steps, item, index and error".
    pub fn parse(text: &str) -> Result<Expr, String> {
        if text.len() > MAX_LEN {
            return Err(format!("the expression is {} bytes long; at most {MAX_LEN} are allowed", text.len()));
        }
        if text.trim().is_empty() {
            return Err("the expression is empty".to_owned());
        }
        check_brackets(text)?;
        let compiled = if text.len() <= INLINE_PARSE_LEN {
            catch_unwind(|| compile(text)).unwrap_or_else(|_| Err(parser_panicked()))
        } else {
            std::thread::scope(|s| {
                let thread = std::thread::Builder::new()
                    .name("cel-parse".to_owned())
                    .stack_size(PARSE_STACK)
                    .spawn_scoped(s, || compile(text))
                    .map_err(|e| format!("cannot start a thread to parse the expression: {e}"))?;
                thread.join().unwrap_or_else(|_| Err(parser_panicked()))
            })
        };
        Ok(Expr(Arc::new(compiled.map_err(|e| one_line(&e))?)))
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// Top-level variables the expression reads (subset of VARIABLES), sorted, deduplicated.
    pub fn variables(&self) -> &[String] {
        &self.0.variables
    }

    /// Steps the expression reads as `steps.NAME` (or `steps['NAME']`, or `has(steps.NAME)`),
    /// sorted, deduplicated.
    pub fn steps_read(&self) -> &[String] {
        &self.0.steps
    }

    /// The keys of the object the expression builds, when it is a map literal whose every
    /// key is a string literal (`{ 'sku': item.sku, 'qty': 1 }`); `None` when the keys are
    /// not known before it runs (any other expression, a computed key, an optional entry).
    pub fn literal_keys(&self) -> Option<Vec<String>> {
        let Node::Map(map) = &self.0.ast.expr else { return None };
        map.entries
            .iter()
            .map(|entry| match &entry.expr {
                EntryExpr::MapEntry(e) if !e.optional => match &e.key.expr {
                    Node::Literal(LiteralValue::String(key)) => Some(key.inner().to_owned()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Evaluate to JSON. Errors are one line naming the problem and the expression, e.g.
    /// "no such key: sku (in `item.sku`)".
    pub fn eval(&self, scope: &dyn Scope) -> Result<Value, String> {
        if let Some(plan) = &self.0.plan
            && let Some(value) = plan.run(scope, &variables(scope, &self.0.reads), 0)
        {
            return Ok(value);
        }
        self.run(scope, |value, c| to_json(value, &c.shape, 0))
    }

    /// Evaluate a condition; a non-bool result is an error naming its type.
    pub fn eval_bool(&self, scope: &dyn Scope) -> Result<bool, String> {
        self.run(scope, |value, _| match value {
            cel::Value::Bool(b) => Ok(*b),
            other => Err(format!("the condition gives {}, not a bool", a_type(cel_name(&other.type_of().to_string())))),
        })
    }

    /// Evaluates against `scope` and hands the result to `finish`, on this thread.
    fn run<T>(
        &self,
        scope: &dyn Scope,
        finish: impl FnOnce(&cel::Value, &Compiled) -> Result<T, String>,
    ) -> Result<T, String> {
        let c = &*self.0;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let owned = variables(scope, &c.reads);
            let mut vars = Vars { slots: Default::default() };
            for (i, (reads, slot)) in c.reads.iter().zip(&mut vars.slots).enumerate() {
                let Some(reads) = reads else { continue };
                let value = if i == 0 { Some(scope.input()) } else { owned[i].as_ref() };
                if let Some(value) = value {
                    *slot = Some(to_cel(value, reads, 0)?);
                }
            }
            if !c.steps.is_empty() {
                let mut map = HashMap::with_capacity(c.steps.len());
                for (step, reads) in c.steps.iter().zip(&c.step_reads) {
                    if let Some(output) = scope.step_output(step) {
                        map.insert(CelMapKey::String(CelString::from(step.as_str())), to_cel(output, reads, 1)?);
                    }
                }
                vars.slots[1] = Some(Box::new(CelMap::from(map)));
            }
            BUDGET.set(MAX_ITERATIONS);
            let mut context = Context::with_env(Arc::clone(&ENV));
            context.set_variable_resolver(&vars);
            // `Value::resolve`, not `resolve_val`: the latter is `#[inline(always)]`, so it would
            // be compiled in this crate, and in a debug build its frames are tens of KiB each.
            let result = cel::Value::resolve(&c.ast, &context).map_err(|e| describe(&e))?;
            finish(&result, c)
        }));
        outcome
            .unwrap_or_else(|_| Err("the CEL interpreter panicked".to_owned()))
            .map_err(|problem| one_line(&format!("{problem} (in `{}`)", abbreviate(&c.source))))
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.0.source)
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        self.0.source == other.0.source
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.source)
    }
}

/// The values of `item`, `index` and `error` that `reads` reads, by their place in
/// [`VARIABLES`]. They come owned: they live here while an evaluation borrows them.
fn variables(scope: &dyn Scope, reads: &[Option<Reads>; 5]) -> [Option<Value>; 5] {
    std::array::from_fn(|i| match &reads[i] {
        Some(_) if i >= 2 => scope.variable(VARIABLES[i]),
        _ => None,
    })
}

/// The variables of one evaluation, handed to the interpreter by reference.
struct Vars<'a> {
    slots: [Option<Box<dyn Val + 'a>>; 5],
}

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let i = match name {
            "input" => 0,
            "steps" => 1,
            "item" => 2,
            "index" => 3,
            "error" => 4,
            _ => return None,
        };
        self.slots[i].as_ref().map(|value| CowVal::Borrowed(value.as_ref()))
    }
}

/// [`CHARGE`]: takes the size of a comprehension's range from the budget, and returns the
/// range as it is.
fn charge<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let Some(range) = args.into_iter().next() else {
        return Err(ExecutionError::invalid_argument_count(1, 0));
    };
    let size = range.as_sizer().map_or(0, |s| u64::try_from(*s.size().inner()).unwrap_or(0));
    let left = BUDGET.get();
    if size > left {
        return Err(ExecutionError::function_error(CHARGE, ""));
    }
    BUDGET.set(left - size);
    Ok(range)
}

fn parser_panicked() -> String {
    "the CEL parser panicked on this expression".to_owned()
}

// ---------------------------------------------------------------------------------------------
// Compiling

/// Parses `text` and works out what it reads. Runs on a large stack for long texts.
fn compile(text: &str) -> Result<Compiled, String> {
    let (mut ast, info) = ENV.parser().parse_with_source_info(text).map_err(|e| parse_error(text, &e))?;
    check_tree_depth(&ast).map_err(|id| {
        format!("the expression nests more than {MAX_NODE_DEPTH} levels deep{}: split it up", at(text, &info, id))
    })?;
    let mut analysis =
        Analysis { text, info: &info, reads: Default::default(), steps: BTreeMap::new(), bound: Vec::new() };
    analysis.visit(&ast)?;
    let Analysis { reads, steps, .. } = analysis;
    let shape = shape_of(&ast);
    let plan = plan_of(&ast);
    charge_comprehensions(&mut ast);

    let mut variables: Vec<String> = VARIABLES
        .iter()
        .enumerate()
        .filter(|(i, _)| reads[*i].is_some() || (*i == 1 && !steps.is_empty()))
        .map(|(_, name)| (*name).to_owned())
        .collect();
    variables.sort();
    let (steps, step_reads) = steps.into_iter().unzip();
    Ok(Compiled { source: text.to_owned(), ast, variables, steps, reads, step_reads, shape, plan })
}

/// The first of the parser's errors, on one line.
fn parse_error(text: &str, errors: &ParseErrors) -> String {
    let Some(e) = errors.errors.first() else {
        return "syntax error".to_owned();
    };
    let msg = e.msg.strip_prefix("Syntax error: ").unwrap_or(&e.msg);
    let quoted = |prefix: &str| {
        msg.strip_prefix(prefix).map(|rest| {
            let end = rest.find(" expecting").unwrap_or(rest.len());
            rest[..end].trim_matches('\'').to_owned()
        })
    };
    let what = if msg.contains("Recursion limit") {
        "the expression nests too deeply".to_owned()
    } else if let Some(token) = quoted("mismatched input ").or_else(|| quoted("extraneous input ")) {
        if token == "<EOF>" { "the expression ends too early".to_owned() } else { format!("unexpected `{token}`") }
    } else if let Some(rest) = msg.strip_prefix("missing ") {
        let (missing, before) = rest.split_once(" at ").unwrap_or((rest, ""));
        format!("missing `{}` before `{}`", missing.trim_matches('\''), before.trim_matches('\''))
    } else if let Some(token) = quoted("token recognition error at: ") {
        format!("unexpected `{token}`")
    } else if let Some(token) = quoted("no viable alternative at input ") {
        format!("cannot read `{token}`")
    } else {
        let end = msg.find(" expecting {").unwrap_or(msg.len());
        msg[..end].lines().next().unwrap_or_default().to_owned()
    };
    let line = usize::try_from(e.pos.0).unwrap_or(0);
    let column = usize::try_from(e.pos.1).unwrap_or(0);
    if line == 0 || column == 0 || msg.contains("Recursion limit") {
        return format!("syntax error: {what}");
    }
    if text.contains('\n') {
        format!("syntax error at line {line}, column {column}: {what}")
    } else {
        format!("syntax error at column {column}: {what}")
    }
}

/// " at column N" (or " at line L, column N") of the node `id`, or nothing if the parser did
/// not say where it is.
fn at(text: &str, info: &SourceInfo, id: u64) -> String {
    match offset(text, info, id) {
        Some(offset) => position(text, offset),
        None => String::new(),
    }
}

/// [`at`] for a call, whose node is where its `(` is: where the function's name is.
fn at_name(text: &str, info: &SourceInfo, id: u64, name: &str) -> String {
    match offset(text, info, id) {
        Some(offset) => {
            let before = text[..offset].trim_end();
            match before.strip_suffix(name) {
                Some(rest) => position(text, rest.len()),
                None => position(text, offset),
            }
        }
        None => String::new(),
    }
}

/// The byte offset of the node `id` in `text`.
fn offset(text: &str, info: &SourceInfo, id: u64) -> Option<usize> {
    // The parser's offsets count bytes.
    info.offset_for(id).map(|(start, _)| {
        let mut offset = (start as usize).min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    })
}

/// " at column N" (or " at line L, column N") of the byte offset `offset` of `text`.
fn position(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    if text.contains('\n') {
        let line = before.matches('\n').count() + 1;
        format!(" at line {line}, column {column}")
    } else {
        format!(" at column {column}")
    }
}

/// The brackets of `text` are balanced and nest at most [`MAX_DEPTH`] deep. Skips string
/// literals (with their escapes, raw and triple-quoted ones) and `//` comments. Only this
/// loop looks at the text before the parser, which recurses once per bracket.
fn check_brackets(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let mut open: Vec<(u8, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
            }
            quote @ (b'\'' | b'"') => i = string_end(text, i, quote)?,
            c @ (b'(' | b'[' | b'{') => {
                open.push((c, i));
                if open.len() > MAX_DEPTH {
                    return Err(format!(
                        "the expression nests brackets more than {MAX_DEPTH} deep{}",
                        position(text, i)
                    ));
                }
            }
            c @ (b')' | b']' | b'}') => {
                let opener = match c {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                match open.pop() {
                    Some((o, _)) if o == opener => {}
                    Some((o, at)) => {
                        return Err(format!(
                            "`{}`{} does not close the `{}`{}",
                            c as char,
                            position(text, i),
                            o as char,
                            position(text, at)
                        ));
                    }
                    None => {
                        return Err(format!("`{}`{} closes nothing", c as char, position(text, i)));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    match open.last() {
        Some((o, at)) => Err(format!("`{}`{} is never closed", *o as char, position(text, *at))),
        None => Ok(()),
    }
}

/// The offset of the last byte of the string literal whose opening quote is at `start`.
fn string_end(text: &str, start: usize, quote: u8) -> Result<usize, String> {
    let b = text.as_bytes();
    // A raw string, r'...', has no escapes. Its prefix (r, b, rb or br, in either case) sits
    // right before the quote, and is not the end of a longer name.
    let mut p = start;
    while p > 0 && start - p < 2 && matches!(b[p - 1], b'r' | b'R' | b'b' | b'B') {
        p -= 1;
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let raw = (p == 0 || !word(b[p - 1])) && b[p..start].iter().any(|c| matches!(c, b'r' | b'R'));
    let triple = b[start..].starts_with(&[quote; 3]);
    let mut i = start + if triple { 3 } else { 1 };
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && !raw {
            i += 2;
            continue;
        }
        if triple {
            if b[i..].starts_with(&[quote; 3]) {
                return Ok(i + 2);
            }
        } else if c == quote {
            return Ok(i);
        } else if c == b'\n' || c == b'\r' {
            break;
        }
        i += 1;
    }
    Err(format!("the string{} is never closed", position(text, start)))
}

/// The children of a node, in no particular order.
fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Node::Call(call) => call.target.as_deref().into_iter().chain(&call.args).collect(),
        Node::Comprehension(c) => {
            vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
        }
        Node::List(list) => list.elements.iter().collect(),
        Node::Map(map) => map.entries.iter().flat_map(|entry| entry_children(&entry.expr)).collect(),
        Node::Struct(s) => s.entries.iter().flat_map(|entry| entry_children(&entry.expr)).collect(),
        Node::Select(select) => vec![&select.operand],
        Node::Ident(_) | Node::Literal(_) | Node::Unspecified => Vec::new(),
    }
}

fn entry_children(entry: &EntryExpr) -> Vec<&IdedExpr> {
    match entry {
        EntryExpr::MapEntry(e) => vec![&e.key, &e.value],
        EntryExpr::StructField(f) => vec![&f.value],
    }
}

/// The tree is at most [`MAX_NODE_DEPTH`] deep; else the id of a node too deep. A loop, not
/// a recursion: the tree may be thousands deep.
fn check_tree_depth(root: &IdedExpr) -> Result<(), u64> {
    let mut todo = vec![(root, 1)];
    while let Some((e, depth)) = todo.pop() {
        if depth > MAX_NODE_DEPTH {
            return Err(e.id);
        }
        todo.extend(children(e).into_iter().map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// Whether the environment has a function (or member function) of that name.
fn declared(function: &str) -> bool {
    // The only public way to ask: a context refuses to add a function of a declared name.
    Context::with_env(Arc::clone(&ENV)).add_function(function, |a: i64| a).is_err()
}

/// Checks the names of an expression and works out what it reads of each variable.
struct Analysis<'a> {
    text: &'a str,
    info: &'a SourceInfo,
    reads: [Option<Reads>; 5],
    steps: BTreeMap<String, Reads>,
    /// The variables of the comprehensions around the node being visited.
    bound: Vec<&'a str>,
}

impl<'a> Analysis<'a> {
    fn visit(&mut self, e: &'a IdedExpr) -> Result<(), String> {
        if let Some(path) = as_path(e) {
            return self.read(path);
        }
        match &e.expr {
            Node::Ident(name) => {
                self.read(Path { root: name, id: e.id, fields: Vec::new(), presence: false, optional: false })
            }
            Node::Call(call) => {
                // `optional.of(x)` calls the function `optional.of`: no variable there.
                let namespace = call.target.as_deref().is_some_and(
                    |t| matches!(&t.expr, Node::Ident(n) if n == "optional" && !self.bound.contains(&"optional")),
                );
                let function = if namespace { format!("optional.{}", call.func_name) } else { call.func_name.clone() };
                if operator(&function).is_none() && function != operators::NOT_STRICTLY_FALSE && !declared(&function) {
                    return Err(format!(
                        "unknown function `{function}`{}",
                        at_name(self.text, self.info, e.id, &call.func_name)
                    ));
                }
                if let Some(target) = &call.target
                    && !namespace
                {
                    self.visit(target)?;
                }
                call.args.iter().try_for_each(|arg| self.visit(arg))
            }
            Node::Comprehension(c) => {
                self.visit(&c.iter_range)?;
                self.visit(&c.accu_init)?;
                let before = self.bound.len();
                self.bound.push(&c.iter_var);
                self.bound.extend(c.iter_var2.as_deref());
                self.bound.push(&c.accu_var);
                let result = [&c.loop_cond, &c.loop_step, &c.result].into_iter().try_for_each(|e| self.visit(e));
                self.bound.truncate(before);
                result
            }
            Node::Struct(s) => Err(format!(
                "`{}{{...}}`{}: there are no message types here; write a map, {{'key': value}}",
                s.type_name,
                at(self.text, self.info, e.id)
            )),
            Node::Unspecified => Err("syntax error".to_owned()),
            Node::List(_) | Node::Map(_) | Node::Select(_) | Node::Literal(_) => {
                children(e).into_iter().try_for_each(|c| self.visit(c))
            }
        }
    }

    /// Records that `path` is read.
    fn read(&mut self, path: Path<'a>) -> Result<(), String> {
        if self.bound.contains(&path.root) {
            return Ok(());
        }
        let Some(slot) = VARIABLES.iter().position(|v| *v == path.root) else {
            if TYPE_NAMES.contains(&path.root) && path.fields.is_empty() {
                return Ok(());
            }
            return Err(format!(
                "unknown name `{}`{}: an expression can read input, steps, item, index and error",
                path.root,
                at(self.text, self.info, path.id)
            ));
        };
        let mut reads = if path.presence { Reads::Presence } else { Reads::All };
        if slot == 1 {
            let Some((step, rest)) = path.fields.split_first() else {
                return Err(format!(
                    "`steps`{} must name a step: write steps.NAME, steps['NAME'] or has(steps.NAME)",
                    at(self.text, self.info, path.id)
                ));
            };
            for field in rest.iter().rev() {
                reads = Reads::Fields(BTreeMap::from([((*field).to_owned(), reads)]));
            }
            match self.steps.get_mut(*step) {
                Some(known) => known.merge(reads),
                None => {
                    self.steps.insert((*step).to_owned(), reads);
                }
            }
        } else {
            for field in path.fields.iter().rev() {
                reads = Reads::Fields(BTreeMap::from([((*field).to_owned(), reads)]));
            }
            match &mut self.reads[slot] {
                Some(known) => known.merge(reads),
                empty => *empty = Some(reads),
            }
        }
        Ok(())
    }
}

/// A variable and the fields selected on it by name: `input.a.b`, `steps['x'].y`, `a.?b`, or
/// `has(input.a)` (`presence`: only whether the last field is there is read).
struct Path<'a> {
    root: &'a str,
    /// The node of the root, for messages.
    id: u64,
    fields: Vec<&'a str>,
    presence: bool,
    /// Whether a field is selected optionally (`a.?b`, `a[?'b']`).
    optional: bool,
}

fn as_path(e: &IdedExpr) -> Option<Path<'_>> {
    let mut fields = Vec::new();
    let mut presence = false;
    let mut optional = false;
    let mut node = e;
    loop {
        match &node.expr {
            Node::Ident(name) => {
                if fields.is_empty() {
                    return None;
                }
                fields.reverse();
                return Some(Path { root: name, id: node.id, fields, presence, optional });
            }
            Node::Select(select) => {
                if select.test {
                    if !fields.is_empty() {
                        return None;
                    }
                    presence = true;
                }
                fields.push(select.field.as_str());
                node = &select.operand;
            }
            Node::Call(CallExpr { func_name, target: None, args })
                if matches!(func_name.as_str(), operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT)
                    && args.len() == 2 =>
            {
                let Node::Literal(LiteralValue::String(field)) = &args[1].expr else {
                    return None;
                };
                optional |= func_name != operators::INDEX;
                fields.push(field.inner());
                node = &args[0];
            }
            _ => return None,
        }
    }
}

impl Reads {
    /// Reads `self` and `other`.
    fn merge(&mut self, other: Reads) {
        match (&mut *self, other) {
            (Reads::All, _) | (Reads::Fields(_), Reads::Presence) => {}
            (Reads::Presence, other) => *self = other,
            (Reads::Fields(_), Reads::All) => *self = Reads::All,
            (Reads::Fields(mine), Reads::Fields(theirs)) => {
                for (name, reads) in theirs {
                    match mine.get_mut(&name) {
                        Some(known) => known.merge(reads),
                        None => {
                            mine.insert(name, reads);
                        }
                    }
                }
            }
        }
    }
}

/// The order of the keys of the objects `e` writes as literals.
fn shape_of(e: &IdedExpr) -> Shape {
    match &e.expr {
        Node::Map(map) => Shape::Object(
            map.entries
                .iter()
                .filter_map(|entry| match &entry.expr {
                    EntryExpr::MapEntry(entry) => match &entry.key.expr {
                        Node::Literal(LiteralValue::String(key)) => {
                            Some((key.inner().to_owned(), shape_of(&entry.value)))
                        }
                        _ => None,
                    },
                    EntryExpr::StructField(_) => None,
                })
                .collect(),
        ),
        Node::List(list) => {
            let items: Vec<Shape> = list.elements.iter().map(shape_of).collect();
            if items.iter().all(|s| *s == Shape::Any) { Shape::Any } else { Shape::Items(items) }
        }
        Node::Call(call) if call.func_name == operators::CONDITIONAL && call.args.len() == 3 => {
            shape_of(&call.args[1]).or(shape_of(&call.args[2]))
        }
        Node::Comprehension(c) => match appended(c) {
            Some(item) => match shape_of(item) {
                Shape::Any => Shape::Any,
                shape => Shape::Each(Box::new(shape)),
            },
            None => Shape::Any,
        },
        _ => Shape::Any,
    }
}

/// What a `map()` comprehension appends to its result on each iteration.
fn appended(c: &ComprehensionExpr) -> Option<&IdedExpr> {
    let append = |e: &'_ IdedExpr| -> bool { matches!(&e.expr, Node::Ident(name) if *name == c.accu_var) };
    let step = match &c.loop_step.expr {
        Node::Call(call) if call.func_name == operators::CONDITIONAL && call.args.len() == 3 => &call.args[1],
        _ => &c.loop_step,
    };
    match &step.expr {
        Node::Call(call) if call.func_name == operators::ADD && call.args.len() == 2 && append(&call.args[0]) => {
            match &call.args[1].expr {
                Node::List(list) if list.elements.len() == 1 => Some(&list.elements[0]),
                _ => None,
            }
        }
        _ => None,
    }
}

impl Shape {
    /// The shape of a value that is one of `self` and `other`.
    fn or(self, other: Shape) -> Shape {
        match (self, other) {
            (Shape::Any, s) | (s, Shape::Any) => s,
            (Shape::Object(mut a), Shape::Object(b)) => {
                for (key, shape) in b {
                    match a.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, known)) => *known = std::mem::replace(known, Shape::Any).or(shape),
                        None => a.push((key, shape)),
                    }
                }
                Shape::Object(a)
            }
            (Shape::Each(a), Shape::Each(b)) => Shape::Each(Box::new(a.or(*b))),
            (Shape::Items(a), Shape::Items(b)) if a.len() == b.len() => {
                Shape::Items(a.into_iter().zip(b).map(|(a, b)| a.or(b)).collect())
            }
            (a, _) => a,
        }
    }

    fn key(&self, key: &str) -> &Shape {
        match self {
            Shape::Object(keys) => keys.iter().find(|(k, _)| k == key).map_or(&Shape::Any, |(_, s)| s),
            _ => &Shape::Any,
        }
    }

    fn item(&self, index: usize) -> &Shape {
        match self {
            Shape::Items(items) => items.get(index).unwrap_or(&Shape::Any),
            Shape::Each(shape) => shape,
            _ => &Shape::Any,
        }
    }
}

/// The plan of `e`, if it is only literals and paths.
fn plan_of(e: &IdedExpr) -> Option<Plan> {
    if let Some(path) = as_path(e) {
        let slot = VARIABLES.iter().position(|v| *v == path.root)?;
        if path.presence || path.optional {
            return None;
        }
        return Some(Plan::Read(slot, path.fields.iter().map(|f| (*f).to_owned()).collect()));
    }
    Some(match &e.expr {
        Node::Ident(name) => Plan::Read(VARIABLES.iter().position(|v| v == name)?, Vec::new()),
        Node::Literal(literal) => Plan::Const(match literal {
            LiteralValue::Null => Value::Null,
            LiteralValue::Boolean(b) => Value::Bool(*b.inner()),
            LiteralValue::Int(i) => Value::from(*i.inner()),
            LiteralValue::UInt(u) => Value::from(*u.inner()),
            LiteralValue::Double(d) => Value::Number(Number::from_f64(*d.inner())?),
            LiteralValue::String(s) => Value::String(s.inner().to_owned()),
            LiteralValue::Bytes(_) => return None,
        }),
        Node::List(list) if list.optional_indices.is_empty() => {
            Plan::Array(list.elements.iter().map(plan_of).collect::<Option<_>>()?)
        }
        Node::Map(map) => {
            let mut entries: Vec<(String, Plan)> = Vec::with_capacity(map.entries.len());
            for entry in &map.entries {
                let EntryExpr::MapEntry(entry) = &entry.expr else { return None };
                let Node::Literal(LiteralValue::String(key)) = &entry.key.expr else { return None };
                if entry.optional || entries.iter().any(|(k, _)| k == key.inner()) {
                    return None;
                }
                entries.push((key.inner().to_owned(), plan_of(&entry.value)?));
            }
            Plan::Object(entries)
        }
        _ => return None,
    })
}

impl Plan {
    /// The value of the plan, or `None` where the interpreter is to say what is wrong.
    /// `owned` holds `item`, `index` and `error` (see [`variables`]); `depth` is how deep in
    /// the result this is.
    fn run(&self, scope: &dyn Scope, owned: &[Option<Value>; 5], depth: usize) -> Option<Value> {
        match self {
            Plan::Const(value) => Some(value.clone()),
            Plan::Object(entries) => {
                let mut object = Map::with_capacity(entries.len());
                for (key, plan) in entries {
                    object.insert(key.clone(), plan.run(scope, owned, depth + 1)?);
                }
                Some(Value::Object(object))
            }
            Plan::Array(items) => {
                items.iter().map(|plan| plan.run(scope, owned, depth + 1)).collect::<Option<_>>().map(Value::Array)
            }
            Plan::Read(slot, fields) => {
                let (mut value, fields) = match slot {
                    0 => (scope.input(), &fields[..]),
                    1 => (scope.step_output(fields.first()?)?, &fields[1..]),
                    _ => (owned[*slot].as_ref()?, &fields[..]),
                };
                for field in fields {
                    value = value.as_object()?.get(field)?;
                }
                // The interpreter converts the value at the depth of its path in the data,
                // and back at its depth in the result: either may be too deep.
                copy(value, depth.max(fields.len() + usize::from(*slot == 1)))
            }
        }
    }
}

/// A copy of `value` as the interpreter would give it back: a number that is neither an `i64`
/// nor a double becomes a double. `None` if it nests deeper than [`MAX_VALUE_DEPTH`].
fn copy(value: &Value, depth: usize) -> Option<Value> {
    /// Whether `value` is fine as it is; `None` if it is too deep.
    fn as_is(value: &Value, depth: usize) -> Option<bool> {
        if depth > MAX_VALUE_DEPTH {
            return None;
        }
        Some(match value {
            Value::Number(n) => n.is_i64() || n.is_f64(),
            Value::Array(items) => {
                let mut fine = true;
                for v in items {
                    fine &= as_is(v, depth + 1)?;
                }
                fine
            }
            Value::Object(object) => {
                let mut fine = true;
                for v in object.values() {
                    fine &= as_is(v, depth + 1)?;
                }
                fine
            }
            _ => true,
        })
    }
    fn converted(value: &Value) -> Option<Value> {
        Some(match value {
            Value::Number(n) if !n.is_i64() && !n.is_f64() => Value::Number(Number::from_f64(n.as_f64()?)?),
            Value::Array(items) => Value::Array(items.iter().map(converted).collect::<Option<_>>()?),
            Value::Object(object) => {
                let mut copy = Map::with_capacity(object.len());
                for (k, v) in object {
                    copy.insert(k.clone(), converted(v)?);
                }
                Value::Object(copy)
            }
            other => other.clone(),
        })
    }
    if as_is(value, depth)? { Some(value.clone()) } else { converted(value) }
}

/// Wraps the range of every comprehension in a call to [`CHARGE`].
fn charge_comprehensions(e: &mut IdedExpr) {
    match &mut e.expr {
        Node::Comprehension(c) => {
            let range = std::mem::take(&mut c.iter_range);
            c.iter_range = IdedExpr {
                id: range.id,
                expr: Node::Call(CallExpr { func_name: CHARGE.to_owned(), target: None, args: vec![range] }),
            };
            for e in [&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                charge_comprehensions(e);
            }
        }
        Node::Call(call) => {
            if let Some(target) = &mut call.target {
                charge_comprehensions(target);
            }
            call.args.iter_mut().for_each(charge_comprehensions);
        }
        Node::List(list) => list.elements.iter_mut().for_each(charge_comprehensions),
        Node::Map(map) => {
            for entry in &mut map.entries {
                if let EntryExpr::MapEntry(entry) = &mut entry.expr {
                    charge_comprehensions(&mut entry.key);
                    charge_comprehensions(&mut entry.value);
                }
            }
        }
        Node::Select(select) => charge_comprehensions(&mut select.operand),
        Node::Struct(_) | Node::Ident(_) | Node::Literal(_) | Node::Unspecified => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Values

/// `value` as a CEL value, borrowing its strings; of an object, only the fields `reads` names.
fn to_cel<'a>(value: &'a Value, reads: &Reads, depth: usize) -> Result<Box<dyn Val + 'a>, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("a value nests more than {MAX_VALUE_DEPTH} levels deep"));
    }
    Ok(match (value, reads) {
        (Value::Object(object), Reads::Fields(fields)) => {
            let mut map = HashMap::with_capacity(fields.len());
            for (name, reads) in fields {
                if let Some((key, value)) = object.get_key_value(name.as_str()) {
                    map.insert(CelMapKey::String(CelString::from(key.as_str())), to_cel(value, reads, depth + 1)?);
                }
            }
            Box::new(CelMap::from(map))
        }
        (_, Reads::Presence) => Box::new(CelNull),
        (Value::Null, _) => Box::new(CelNull),
        (Value::Bool(b), _) => Box::new(CelBool::from(*b)),
        (Value::Number(n), _) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(f)) => Box::new(CelDouble::from(f)),
            (None, None) => return Err(format!("the number {n} is out of range")),
        },
        (Value::String(s), _) => Box::new(CelString::from(s.as_str())),
        (Value::Array(items), _) => {
            let list: Result<Vec<_>, _> = items.iter().map(|v| to_cel(v, &Reads::All, depth + 1)).collect();
            Box::new(CelList::from(list?))
        }
        (Value::Object(object), _) => {
            let mut map = HashMap::with_capacity(object.len());
            for (key, value) in object {
                map.insert(CelMapKey::String(CelString::from(key.as_str())), to_cel(value, &Reads::All, depth + 1)?);
            }
            Box::new(CelMap::from(map))
        }
    })
}

/// The JSON of a CEL value; `shape` orders the keys of its objects.
fn to_json(value: &cel::Value, shape: &Shape, depth: usize) -> Result<Value, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("the result nests more than {MAX_VALUE_DEPTH} levels deep"));
    }
    Ok(match value {
        cel::Value::Null => Value::Null,
        cel::Value::Bool(b) => Value::Bool(*b),
        cel::Value::Int(i) => Value::from(*i),
        cel::Value::UInt(u) => Value::from(*u),
        cel::Value::Float(d) => Value::Number(
            Number::from_f64(*d).ok_or_else(|| format!("the result holds {d}, which is not a JSON number"))?,
        ),
        cel::Value::String(s) => Value::String(s.as_str().to_owned()),
        cel::Value::List(items) => {
            let items: Result<Vec<Value>, String> =
                items.iter().enumerate().map(|(i, v)| to_json(v, shape.item(i), depth + 1)).collect();
            Value::Array(items?)
        }
        cel::Value::Map(map) => {
            let mut entries = Vec::with_capacity(map.map.len());
            for (key, value) in map.map.iter() {
                let key = match key {
                    cel::objects::Key::String(s) => s.as_str(),
                    cel::objects::Key::Int(i) => return Err(non_string_key(i)),
                    cel::objects::Key::Uint(u) => return Err(non_string_key(u)),
                    cel::objects::Key::Bool(b) => return Err(non_string_key(b)),
                };
                entries.push((key, value));
            }
            // The keys a literal wrote, in its order, then the others, sorted.
            let order = |key: &str| match shape {
                Shape::Object(keys) => keys.iter().position(|(k, _)| k == key).unwrap_or(usize::MAX),
                _ => usize::MAX,
            };
            entries.sort_by(|(a, _), (b, _)| order(a).cmp(&order(b)).then_with(|| a.cmp(b)));
            let mut object = Map::with_capacity(entries.len());
            for (key, value) in entries {
                object.insert(key.to_owned(), to_json(value, shape.key(key), depth + 1)?);
            }
            Value::Object(object)
        }
        cel::Value::Opaque(opaque) => match opaque.downcast_ref::<cel::objects::OptionalValue>() {
            Some(optional) => match optional.value() {
                Some(inner) => to_json(inner, shape, depth + 1)?,
                None => Value::Null,
            },
            None => {
                return Err(format!("the result holds {}, which JSON cannot hold", a_type(opaque.runtime_type_name())));
            }
        },
        cel::Value::Bytes(_) => return Err("the result holds bytes, which JSON cannot hold".to_owned()),
        other => {
            return Err(format!(
                "the result holds {}, which JSON cannot hold",
                a_type(cel_name(&other.type_of().to_string()))
            ));
        }
    })
}

fn non_string_key(key: &dyn fmt::Display) -> String {
    format!("the result has a map with the key {key}: JSON object keys are strings")
}

// ---------------------------------------------------------------------------------------------
// Messages

/// An evaluation error, on one line.
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::UndeclaredReference(name) if VARIABLES.contains(&name.as_str()) => {
            format!("`{name}` is not set here")
        }
        ExecutionError::UndeclaredReference(name) => format!("unknown name `{name}`"),
        ExecutionError::NoSuchOverload(o) => {
            let op = operator(o.function());
            let types = o.argument_types();
            let numbers = |t: &String| matches!(t.as_str(), "int" | "uint" | "double");
            let hint = if types.len() == 2 && types.iter().all(numbers) && types[0] != types[1] {
                ": CEL does not mix number types, convert one side with double(), int() or uint()"
            } else {
                ""
            };
            let what = |t: &str| if t == "null_type" { "null".to_owned() } else { a_type(t) };
            match op {
                Some(".") if !types.is_empty() => format!("cannot read a field of {}", what(&types[0])),
                Some("[]") if types.len() == 2 => {
                    format!("cannot index {} with {}", what(&types[0]), what(&types[1]))
                }
                Some(op) => format!("`{op}` cannot take {}{hint}", types.join(" and ")),
                None if o.is_member_function() && !types.is_empty() => {
                    format!("no function {}.{}({})", types[0], o.function(), types[1..].join(", "))
                }
                None => format!("no function {}({})", o.function(), types.join(", ")),
            }
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => {
            let (a, b) = (a.type_of().to_string(), b.type_of().to_string());
            let symbol = symbol(op);
            let numbers = |t: &str| matches!(t, "int" | "uint" | "float");
            let hint = if numbers(&a) && numbers(&b) && a != b {
                ": CEL does not mix number types, convert one side with double(), int() or uint()"
            } else {
                ""
            };
            format!("`{symbol}` cannot take {} and {}{hint}", cel_name(&a), cel_name(&b))
        }
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "remainder by zero".to_owned(),
        ExecutionError::Overflow(op, _, _) => format!("integer overflow in `{}`", symbol(op)),
        ExecutionError::UnsupportedIndex(index, target) => format!(
            "cannot index {} with {}",
            a_type(cel_name(&target.type_of().to_string())),
            a_type(cel_name(&index.type_of().to_string()))
        ),
        ExecutionError::IndexOutOfBounds(i) => format!("index {} is out of range", show(i)),
        ExecutionError::UnexpectedType { got, want } => format!("expected {want}, got {got}"),
        ExecutionError::DuplicateKey(key) => format!("the key {} is written twice", show(key)),
        ExecutionError::UnsupportedKeyType(key) => {
            format!("{} cannot be a map key", a_type(&key.type_of().to_string()))
        }
        ExecutionError::ValuesNotComparable(a, b) => format!(
            "cannot compare {} with {}",
            a_type(cel_name(&a.type_of().to_string())),
            a_type(cel_name(&b.type_of().to_string()))
        ),
        ExecutionError::FunctionError { function, .. } if function == CHARGE => {
            format!("the expression iterates more than {MAX_ITERATIONS} times (in map(), all(), exists()...)")
        }
        ExecutionError::FunctionError { function, message } => {
            format!("{function}: {}", message.lines().next().unwrap_or_default())
        }
        other => other.to_string().lines().next().unwrap_or_default().to_owned(),
    }
}

/// The symbol of an arithmetic operator as the interpreter names it: `add` is `+`.
fn symbol(op: &str) -> &str {
    match op {
        "add" => "+",
        "sub" => "-",
        "mul" => "*",
        "div" => "/",
        "rem" => "%",
        "negate" => "unary -",
        other => other,
    }
}

/// The symbol of an operator's function name: `_+_` is `+`.
fn operator(function: &str) -> Option<&'static str> {
    Some(match function {
        operators::ADD => "+",
        operators::SUBSTRACT => "-",
        operators::MULTIPLY => "*",
        operators::DIVIDE => "/",
        operators::MODULO => "%",
        operators::EQUALS => "==",
        operators::NOT_EQUALS => "!=",
        operators::LESS => "<",
        operators::LESS_EQUALS => "<=",
        operators::GREATER => ">",
        operators::GREATER_EQUALS => ">=",
        operators::LOGICAL_AND => "&&",
        operators::LOGICAL_OR => "||",
        operators::LOGICAL_NOT => "!",
        operators::NEGATE => "-",
        operators::INDEX => "[]",
        operators::OPT_INDEX => "[?]",
        operators::OPT_SELECT => ".?",
        operators::IN => "in",
        operators::CONDITIONAL => "?:",
        "_._" => ".",
        _ => return None,
    })
}

/// The CEL name of a type as the crate's `Value` names it.
fn cel_name(t: &str) -> &str {
    match t {
        "float" => "double",
        "null" => "null_type",
        other => other,
    }
}

/// A scalar of the crate's `Value` as CEL writes it.
fn show(v: &cel::Value) -> String {
    match v {
        cel::Value::Int(i) => i.to_string(),
        cel::Value::UInt(u) => format!("{u}u"),
        cel::Value::Float(f) => f.to_string(),
        cel::Value::String(s) => format!("{s:?}"),
        cel::Value::Bool(b) => b.to_string(),
        cel::Value::Null => "null".to_owned(),
        other => a_type(cel_name(&other.type_of().to_string())),
    }
}

/// "an int", "a string".
fn a_type(name: &str) -> String {
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {name}")
}

/// `message` with its line breaks made spaces (a key or a token may hold one).
fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

/// `source`, cut to fit in an error message.
fn abbreviate(source: &str) -> String {
    const MAX: usize = 120;
    let one_line = source.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        format!("{}...", one_line.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;

    /// A scope over JSON: `{input, steps: {name: output}, item, index, error}`; records the
    /// steps and variables it is asked for.
    struct Json {
        data: Value,
        asked: RefCell<Vec<String>>,
    }

    impl Json {
        fn new(data: Value) -> Json {
            Json { data, asked: RefCell::new(Vec::new()) }
        }
    }

    impl Scope for Json {
        fn input(&self) -> &Value {
            self.asked.borrow_mut().push("input".to_owned());
            &self.data["input"]
        }
        fn step_output(&self, step: &str) -> Option<&Value> {
            self.asked.borrow_mut().push(format!("steps.{step}"));
            self.data["steps"].get(step)
        }
        fn variable(&self, name: &str) -> Option<Value> {
            self.asked.borrow_mut().push(name.to_owned());
            self.data.get(name).cloned()
        }
    }

    fn order() -> Json {
        Json::new(json!({
            "input": {
                "order_id": "o-1",
                "customer": "ada",
                "total": 5000.5,
                "qty": 3,
                "items": [{"sku": "A-1", "qty": 2, "price": 10.5}, {"sku": "B-2", "qty": 1, "price": 3.0}],
                "address": {"city": "Paris", "zip": "75001"},
                "big": 18446744073709551615u64,
                "nothing": null,
            },
            "steps": {
                "reserve": {"reservation_id": "r-9", "skus": ["A-1"]},
                "charge": {"payment_id": "p-7"},
            },
            "item": {"sku": "A-1", "qty": 2},
            "index": 0,
            "error": {"step": "charge", "code": "declined", "message": "card declined"},
        }))
    }

    fn eval(text: &str) -> Result<Value, String> {
        Expr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).eval(&order())
    }

    fn ok(text: &str) -> Value {
        eval(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn truth(text: &str) -> bool {
        Expr::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .eval_bool(&order())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn parse_err(text: &str) -> String {
        match Expr::parse(text) {
            Ok(e) => panic!("{text:?} parsed: {e:?}"),
            Err(e) => e,
        }
    }

    fn eval_err(text: &str) -> String {
        match eval(text) {
            Ok(v) => panic!("{text:?} evaluated to {v}"),
            Err(e) => e,
        }
    }

    #[test]
    fn map_literals_keep_the_order_written() {
        let v = ok("{ 'order_id': input.order_id, 'customer': input.customer, 'a': 1 }");
        assert_eq!(v, json!({"order_id": "o-1", "customer": "ada", "a": 1}));
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"order_id":"o-1","customer":"ada","a":1}"#);
        let nested =
            ok("{'z': {'y': 1, 'x': [{'b': 1, 'a': 2}]}, 'm': input.items.map(i, {'sku': i.sku, 'qty': i.qty})}");
        assert_eq!(
            serde_json::to_string(&nested).unwrap(),
            r#"{"z":{"y":1,"x":[{"b":1,"a":2}]},"m":[{"sku":"A-1","qty":2},{"sku":"B-2","qty":1}]}"#
        );
        // Objects that come from the data have their keys sorted.
        assert_eq!(serde_json::to_string(&ok("input.address")).unwrap(), r#"{"city":"Paris","zip":"75001"}"#);
        assert_eq!(serde_json::to_string(&ok("true ? {'b': 1, 'a': 2} : {'c': 3}")).unwrap(), r#"{"b":1,"a":2}"#);
    }

    #[test]
    fn quotes_and_strings() {
        assert_eq!(ok("'single'"), json!("single"));
        assert_eq!(ok("\"double\""), json!("double"));
        assert_eq!(ok(r#"'it\'s ' + "a \"b\"""#), json!("it's a \"b\""));
        assert_eq!(ok("'''multi\nline'''"), json!("multi\nline"));
        assert_eq!(ok(r"r'\d+'"), json!(r"\d+"));
        assert_eq!(ok("'(' + \"[{\" + ')'"), json!("([{)"));
        assert_eq!(ok("'a'.startsWith('a') && 'abc'.contains('b') && 'abc'.endsWith('c')"), json!(true));
    }

    #[test]
    fn operators() {
        assert!(truth("size(input.items) == 2 && size('héllo') == 5 && size({'a': 1}) == 1"));
        assert!(truth("input.items.size() == 2"));
        assert!(truth("has(input.customer) && !has(input.coupon)"));
        assert!(truth("has(steps.charge) && !has(steps.ship)"));
        assert!(truth("true || 1 / 0 == 1"), "|| short-circuits, errors included");
        assert!(!truth("false && 1 / 0 == 1"));
        assert!(truth("!false"));
        assert!(truth("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3 && 1 != 2 && 'a' < 'b'"));
        assert_eq!(ok("input.qty * 2 + 1 - 3 / 2 % 5"), json!(6));
        assert_eq!(ok("input.total * 2.0"), json!(10001.0));
        assert_eq!(ok("-input.qty"), json!(-3));
        assert_eq!(ok("input.qty > 2 ? 'many' : 'few'"), json!("many"));
        assert!(truth("'A-1' in input.items.map(i, i.sku)"));
        assert!(truth("'customer' in input && !('coupon' in input)"));
        assert!(truth("2 in [1, 2, 3]"));
        assert!(truth("input.items.all(i, i.qty > 0) && input.items.exists(i, i.sku == 'B-2')"));
        assert!(truth("input.items.exists_one(i, i.qty == 2)"));
        assert_eq!(ok("input.items.filter(i, i.qty > 1).map(i, i.sku)"), json!(["A-1"]));
        assert_eq!(ok("input.items.map(i, i.qty > 1, i.sku)"), json!(["A-1"]));
        assert_eq!(ok("[1, 2] + [3]"), json!([1, 2, 3]));
        assert_eq!(ok("string(input.qty) + '!'"), json!("3!"));
        assert_eq!(ok("int('42') + int(2.7)"), json!(44));
        assert_eq!(ok("double(input.qty) * 1.5"), json!(4.5));
        assert!(truth("type(input.qty) == int && type(input.total) == double && type(input.items) == list"));
        assert_eq!(ok("input.?coupon.orValue('none')"), json!("none"));
        assert_eq!(ok("input.?customer"), json!("ada"));
        assert_eq!(ok("{'a': 1}.?b"), json!(null));
        assert_eq!(ok("null"), json!(null));
        assert_eq!(ok("input.nothing"), json!(null));
        assert_eq!(ok("// a comment (with a bracket\n 1 + 1"), json!(2));
    }

    #[test]
    fn numbers() {
        // JSON integers that fit an i64 are ints, other numbers doubles.
        assert!(truth("type(input.big) == double"));
        assert_eq!(ok("input.qty"), json!(3));
        assert_eq!(ok("input.total"), json!(5000.5));
        assert_eq!(ok("7u"), json!(7));
        assert_eq!(ok("18446744073709551615u"), json!(18446744073709551615u64));
        assert_eq!(ok("1.0"), json!(1.0));
        // Comparisons mix int and double; arithmetic does not.
        assert!(truth("input.total > 5000"), "5000.5 > 5000");
        assert!(truth("input.total > 5000.0"));
        assert!(truth("input.qty == 3.0 && 3.0 == input.qty && input.qty < 3.5"));
        assert!(truth("[1, 2] == [1.0, 2.0]"));
        let e = eval_err("input.qty * 1.5");
        assert!(e.contains("`*` cannot take int and double") && e.contains("double()"), "{e}");
        let e = eval_err("1.0 / 0.0");
        assert!(e.contains("inf") && e.contains("not a JSON number"), "{e}");
        assert!(eval_err("0.0 / 0.0").contains("NaN"));
        assert_eq!(eval_err("1 / 0"), "division by zero (in `1 / 0`)");
        assert!(eval_err("5 % 0").contains("remainder by zero"));
        assert!(eval_err("9223372036854775807 + 1").contains("integer overflow in `+`"));
        assert!(eval_err("1u - 2u").contains("integer overflow in `-`"));
        assert!(eval_err("input.items[1.5]").contains("cannot index a list with a double"));
    }

    #[test]
    fn results_that_are_not_json() {
        assert_eq!(
            eval_err("{1: 'a'}"),
            "the result has a map with the key 1: JSON object keys are strings (in `{1: 'a'}`)"
        );
        assert!(eval_err("{true: 'a'}").contains("key true"));
        assert!(eval_err("b'abc'").contains("bytes"));
        // A type becomes its name.
        assert_eq!(ok("int"), json!("int"));
        assert_eq!(ok("type(input.items)"), json!("list"));
        assert!(eval_err("[b'x']").contains("bytes"));
        assert!(eval_err("{'a': 1, 'a': 2}").contains("written twice"));
        assert!(eval_err("{[1]: 2}").contains("cannot be a map key"));
    }

    #[test]
    fn missing_keys_and_optional_fields() {
        assert_eq!(eval_err("item.sku_x"), "no such key: sku_x (in `item.sku_x`)");
        assert_eq!(eval_err("input.coupon"), "no such key: coupon (in `input.coupon`)");
        assert_eq!(eval_err("input['coupon']"), "no such key: coupon (in `input['coupon']`)");
        assert_eq!(eval_err("steps.ship.tracking"), "no such key: ship (in `steps.ship.tracking`)");
        assert_eq!(ok("has(input.coupon) ? input.coupon : null"), json!(null));
        assert_eq!(ok("'coupon' in input ? input.coupon : 'none'"), json!("none"));
        assert_eq!(ok("has(input.customer) ? input.customer : null"), json!("ada"));
        assert!(eval_err("input.items[5]").contains("index 5 is out of range"));
        assert_eq!(eval_err("input.customer.name"), "cannot read a field of a string (in `input.customer.name`)");
        assert_eq!(
            Expr::parse("input.x").unwrap().eval(&()),
            Err("cannot read a field of null (in `input.x`)".to_owned())
        );
        assert!(eval_err("input.items['a']").contains("cannot index a list with a string"));
    }

    #[test]
    fn the_context() {
        assert_eq!(ok("item.sku"), json!("A-1"));
        assert_eq!(ok("index + 1"), json!(1));
        assert_eq!(ok("error.code == 'declined' ? error.step : ''"), json!("charge"));
        assert_eq!(ok("steps.reserve.reservation_id + '/' + steps['charge'].payment_id"), json!("r-9/p-7"));
        assert_eq!(ok("steps.reserve"), json!({"reservation_id": "r-9", "skus": ["A-1"]}));
        // A variable the scope does not provide is absent.
        let e = Expr::parse("item.sku").unwrap();
        assert_eq!(e.eval(&()), Err("`item` is not set here (in `item.sku`)".to_owned()));
        assert_eq!(Expr::parse("has(steps.x)").unwrap().eval_bool(&()), Ok(false));
        assert_eq!(Expr::parse("input").unwrap().eval(&()), Ok(json!(null)));
        assert_eq!(Expr::parse("1 + 1").unwrap().eval(&()), Ok(json!(2)));
    }

    #[test]
    fn variables_and_steps_read() {
        let e = Expr::parse("{ 'a': steps.ship.x, 'b': steps['charge'], 'c': has(steps.reserve), 'd': input.x, 'e': steps.ship.y, 'f': item }").unwrap();
        assert_eq!(e.variables(), ["input", "item", "steps"]);
        assert_eq!(e.steps_read(), ["charge", "reserve", "ship"]);
        let e = Expr::parse("error.message + string(index)").unwrap();
        assert_eq!(e.variables(), ["error", "index"]);
        assert!(e.steps_read().is_empty());
        let e = Expr::parse("steps.?ship.orValue(1)").unwrap();
        assert_eq!(e.steps_read(), ["ship"]);
        assert!(Expr::parse("1").unwrap().variables().is_empty());
        // The variables of a comprehension are not the context's.
        let e = Expr::parse("[1, 2].map(input, input * 2)").unwrap();
        assert!(e.variables().is_empty(), "{:?}", e.variables());
        let e = Expr::parse("[1].map(steps, steps + 1)").unwrap();
        assert!(e.steps_read().is_empty());
        assert_eq!(Expr::parse("[1].map(x, x + index)").unwrap().variables(), ["index"]);
        assert_eq!(Expr::parse("optional.of(input).value()").unwrap().variables(), ["input"]);
    }

    #[test]
    fn steps_must_be_named() {
        for text in
            ["steps", "steps[input.x]", "size(steps)", "'a' in steps", "steps.map(s, s)", "[steps]", "has(steps)"]
        {
            let e = parse_err(text);
            assert!(e.contains("must name a step") || text == "has(steps)", "{text}: {e}");
        }
        assert_eq!(
            parse_err("1 + steps[x]"),
            "`steps` at column 5 must name a step: write steps.NAME, steps['NAME'] or has(steps.NAME)"
        );
    }

    #[test]
    fn unknown_names() {
        assert_eq!(
            parse_err("foo"),
            "unknown name `foo` at column 1: an expression can read input, steps, item, index and error"
        );
        assert!(parse_err("input.x + bar.baz").contains("unknown name `bar` at column 11"));
        assert!(parse_err("{'a': inputs}").contains("unknown name `inputs`"));
        assert!(parse_err("'é' + foo").contains("column 7"), "{}", parse_err("'é' + foo"));
        assert!(parse_err("'日本' + foo.x").contains("column 8"), "{}", parse_err("'日本' + foo.x"));
        assert!(parse_err("1 +\n  foo").contains("line 2, column 3"), "{}", parse_err("1 +\n  foo"));
        assert!(parse_err("Msg{a: 1}").contains("no message types"));
        assert_eq!(parse_err("input.name.startswith('a')"), "unknown function `startswith` at column 12");
        assert_eq!(parse_err("duration('1s')"), "unknown function `duration` at column 1");
        assert!(parse_err("'a'.matches('a')").contains("unknown function `matches`"));
        assert!(parse_err("optional.off(1)").contains("unknown function `optional.off`"));
        assert!(parse_err("[1].map(x, foo(x))").contains("unknown function `foo`"));
        // Type names and the optional namespace are not unknown.
        Expr::parse("type(input) == map && optional.none() == optional.none()").unwrap();
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let cases = [
            ("(1 + ", "`(` at column 1 is never closed"),
            ("1 + ", "syntax error at column 5: the expression ends too early"),
            ("1 +* 2", "syntax error at column 4: unexpected `*`"),
            ("{'a' 1}", "syntax error at column 6: missing `:` before `1`"),
            ("'abc", "the string at column 1 is never closed"),
            (")", "`)` at column 1 closes nothing"),
            ("[1, 2)", "`)` at column 6 does not close the `[` at column 1"),
            ("", "the expression is empty"),
            ("  ", "the expression is empty"),
            ("a b", "syntax error at column 3: unexpected `b`"),
            ("1 # 2", "syntax error at column 3: unexpected `#`"),
        ];
        for (text, want) in cases {
            let e = parse_err(text);
            assert!(!e.contains('\n'), "{text:?}: {e:?}");
            assert!(e.starts_with(want), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn only_what_is_read_is_asked_for_and_converted() {
        let scope = order();
        let e = Expr::parse("{ 'a': steps.charge.payment_id, 'b': has(steps.ship) }").unwrap();
        assert_eq!(e.eval(&scope).unwrap(), json!({"a": "p-7", "b": false}));
        assert_eq!(*scope.asked.borrow(), ["steps.charge", "steps.ship"]);
        let scope = order();
        Expr::parse("1 + 1").unwrap().eval(&scope).unwrap();
        assert!(scope.asked.borrow().is_empty());
        let scope = order();
        Expr::parse("item.qty + index").unwrap().eval(&scope).unwrap();
        assert_eq!(*scope.asked.borrow(), ["item", "index"]);

        let e =
            Expr::parse("{'c': input.address.city, 'h': has(input.items), 'x': input['qty'], 'z': input.address.?zip}")
                .unwrap();
        let Some(Reads::Fields(fields)) = &e.0.reads[0] else { panic!("{:?}", e.0.reads[0]) };
        let names: Vec<&String> = fields.keys().collect();
        assert_eq!(names, ["address", "items", "qty"]);
        assert_eq!(fields["items"], Reads::Presence);
        assert_eq!(
            fields["address"],
            Reads::Fields(BTreeMap::from([("city".to_owned(), Reads::All), ("zip".to_owned(), Reads::All)]))
        );
        assert_eq!(e.eval(&order()).unwrap(), json!({"c": "Paris", "h": true, "x": 3, "z": "75001"}));
        // Reading the whole of a variable anywhere converts all of it.
        let e = Expr::parse("input.qty + size(input)").unwrap();
        assert_eq!(e.0.reads[0], Some(Reads::All));
        assert_eq!(e.eval(&order()).unwrap(), json!(11));
        // Pruning keeps the semantics of missing keys and of non-objects.
        assert!(eval_err("input.address.street").contains("no such key: street"));
        assert!(eval_err("input.qty.x").contains("cannot read a field of an int"));
        assert_eq!(ok("has(input.address.zip) && !has(input.address.street)"), json!(true));
    }

    #[test]
    fn eval_bool() {
        assert!(truth("input.qty == 3"));
        let e = Expr::parse("input.qty").unwrap().eval_bool(&order()).unwrap_err();
        assert_eq!(e, "the condition gives an int, not a bool (in `input.qty`)");
        let e = Expr::parse("input.customer").unwrap().eval_bool(&order()).unwrap_err();
        assert!(e.contains("a string, not a bool"), "{e}");
        assert!(Expr::parse("1 ? 2 : 3").unwrap().eval(&()).unwrap_err().contains("expected bool, got int"));
        assert!(Expr::parse("true && 1").unwrap().eval(&()).unwrap_err().contains("`&&` cannot take bool and int"));
    }

    #[test]
    fn display_debug_eq() {
        let e = Expr::parse("input.a  +  1").unwrap();
        assert_eq!(e.to_string(), "input.a  +  1");
        assert_eq!(e.source(), "input.a  +  1");
        assert_eq!(format!("{e:?}"), "Expr(\"input.a  +  1\")");
        assert_eq!(e, Expr::parse("input.a  +  1").unwrap());
        assert_ne!(e, Expr::parse("input.a + 1").unwrap());
        let clone = e.clone();
        assert!(Arc::ptr_eq(&clone.0, &e.0));
    }

    #[test]
    fn hostile_nesting_is_an_error() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse_err(&deep).contains("at most 16384 are allowed"));
        let deep = format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(parse_err(&deep).contains("nests brackets more than 32 deep at column 33"), "{}", parse_err(&deep));
        let ok_depth = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        Expr::parse(&ok_depth).unwrap().eval(&()).unwrap();
        let too_deep = format!("{}1{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        parse_err(&too_deep);
        // Chains with no brackets nest too: rejected after parsing (on a large stack), not
        // overflowing it.
        for chain in [
            vec!["1"; 8000].join("+"),
            format!("input{}", ".a".repeat(8000)),
            format!("input{}", "[0]".repeat(5000)),
            format!("'a'{}", ".size()".repeat(2000)),
            vec!["true ? 1 :"; 1400].join(" ") + " 1",
            vec!["1"; 400].join("+"),
        ] {
            let e = parse_err(&chain);
            assert!(e.contains("nests more than 100 levels deep") || e.contains("nests too deeply"), "{e}");
        }
        let mut long_and = vec!["input.a == 1"; 1000].join(" && ");
        assert!(Expr::parse(&long_and).is_ok(), "&& chains are balanced");
        long_and.push_str(" && ");
        assert!(parse_err(&long_and).contains("ends too early"));
    }

    #[test]
    fn hostile_text_is_an_error() {
        let huge = format!("'{}'", "a".repeat(1 << 20));
        assert!(parse_err(&huge).contains("at most 16384"));
        for text in ["(((", ")))", "[}", "{'a': (1]}", "'unterminated", "\"also", "'''never", "r'", "b'\\'"] {
            let e = parse_err(text);
            assert!(!e.contains('\n'), "{e}");
        }
        // Brackets in strings and comments do not count; escapes are skipped.
        let strings = [
            ("'((((' + \"]]]\"", json!("((((]]]")),
            (r"'\'(' + 'x'", json!("'(x")),
            (r#""\"[" + ")""#, json!("\"[)")),
            ("'''(''' + ''''[ '''", json!("('[ ")),
            (r"r'\' + '('", json!("\\(")),
            (r"'\\' + ')'", json!("\\)")),
            ("{'a': '}'}", json!({"a": "}"})),
            ("[1] // )))", json!([1])),
        ];
        for (text, want) in strings {
            assert_eq!(Expr::parse(text).and_then(|e| e.eval(&())), Ok(want), "{text}");
        }
        let many_strings = vec!["'((((('"; 30].join(" + ");
        Expr::parse(&many_strings).unwrap();
        // An expression at the length limit, long strings.
        let long = format!("'{}'", "(".repeat(MAX_LEN - 2));
        assert_eq!(Expr::parse(&long).unwrap().eval(&()).unwrap().as_str().map(str::len), Some(MAX_LEN - 2));
    }

    #[test]
    fn the_deepest_expression_evaluates_on_a_small_stack() {
        let deepest = [
            format!("{}input{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH)),
            vec!["input.qty"; 90].join(" + "),
            format!("{}1{}", "[1].map(x, ".repeat(24), ")".repeat(24)),
        ];
        for text in deepest {
            let e = Expr::parse(&text).unwrap_or_else(|e| panic!("{e}"));
            let result = std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || e.eval(&order()).map(|_| ()))
                .unwrap()
                .join()
                .unwrap();
            assert!(result.is_ok(), "{result:?}");
        }
    }

    #[test]
    fn evaluation_is_bounded() {
        // 10^16 iterations, were it not for the budget.
        let digits = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]";
        let mut text = "true".to_owned();
        for var in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"] {
            text = format!("{digits}.all({var}, {text})");
        }
        let started = std::time::Instant::now();
        let e = Expr::parse(&text).unwrap().eval(&()).unwrap_err();
        assert!(e.contains("iterates more than 100000 times"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // The budget is per evaluation, and large enough for real lists.
        let items: Vec<Value> = (0..50_000).map(|i| json!({"n": i})).collect();
        let scope = Json::new(json!({"input": {"items": items}}));
        let e = Expr::parse("input.items.map(i, i.n).filter(n, n % 2 == 0).size()").unwrap();
        for _ in 0..3 {
            assert_eq!(e.eval(&scope), Ok(json!(25_000)));
        }
        let e = Expr::parse("input.items.all(i, input.items.exists(j, j.n == i.n))").unwrap();
        assert!(e.eval(&scope).unwrap_err().contains("iterates more than"));
    }

    #[test]
    fn deep_values_are_an_error() {
        let mut deep = json!(1);
        for _ in 0..500 {
            deep = json!([deep]);
        }
        let scope = Json::new(json!({"input": {"deep": deep}}));
        let e = Expr::parse("input.deep").unwrap().eval(&scope).unwrap_err();
        assert!(e.contains("nests more than 200 levels"), "{e}");
        assert_eq!(Expr::parse("has(input.deep)").unwrap().eval(&scope), Ok(json!(true)));
    }

    #[test]
    fn the_order_saga_mappings() {
        let e = Expr::parse("{ 'order_id': input.order_id, 'customer': input.customer }").unwrap();
        assert_eq!(e.variables(), ["input"]);
        assert_eq!(e.eval(&order()), Ok(json!({"order_id": "o-1", "customer": "ada"})));
        let e = Expr::parse("{ 'customer': input.customer, 'message': 'Your order is on its way', 'tracking_number': steps.ship.tracking_number }").unwrap();
        assert_eq!(e.steps_read(), ["ship"]);
        let scope = Json::new(json!({"input": {"customer": "ada"}, "steps": {"ship": {"tracking_number": "T1"}}}));
        assert_eq!(
            serde_json::to_string(&e.eval(&scope).unwrap()).unwrap(),
            r#"{"customer":"ada","message":"Your order is on its way","tracking_number":"T1"}"#
        );
    }

    /// Evaluates with the interpreter, even when there is a plan.
    fn interpreted(e: &Expr, scope: &dyn Scope) -> Result<Value, String> {
        e.run(scope, |value, c| to_json(value, &c.shape, 0))
    }

    #[test]
    fn plans_give_what_the_interpreter_gives() {
        let mut deep = json!("bottom");
        for _ in 0..199 {
            deep = json!({"d": deep});
        }
        let scope = Json::new(json!({
            "input": {"a": {"b": [1, 2.5, {"c": null}]}, "big": 18446744073709551615u64, "s": "x", "deep": deep},
            "steps": {"ship": {"tracking_number": "T1"}},
            "item": {"sku": "A-1"},
            "index": 3,
        }));
        let planned = [
            "input",
            "input.a",
            "input.a.b",
            "input['a'].b",
            "input.big",
            "[input.big, 1u, 2.5, -3, 'x', \"y\", null, true, []]",
            "{ 'a': input.a, 'n': { 'm': [item.sku, index] }, 's': steps.ship.tracking_number }",
            "steps.ship",
            "steps['ship']['tracking_number']",
            "item",
            "{}",
            "input.deep",
            "{'x': input.deep}",
            "{'x': {'y': input.deep}}",
            "{'x': input.deep.d}",
            // Errors: the plan gives up, the interpreter says why.
            "input.nope",
            "input.s.x",
            "input.a.b.c",
            "steps.charge.x",
            "error",
            "{ 'e': error.code }",
            "{ 'a': input.nope, 'b': 1 }",
        ];
        for text in planned {
            let e = Expr::parse(text).unwrap();
            assert!(e.0.plan.is_some(), "{text}");
            assert_eq!(e.eval(&scope), interpreted(&e, &scope), "{text}");
        }
        for text in
            ["{'a': 1, 'a': 2}", "input.?a", "has(input.a)", "b'x'", "{1: 2}", "[1].map(x, x)", "input.a.b[0]", "1 + 1"]
        {
            assert!(Expr::parse(text).unwrap().0.plan.is_none(), "{text}");
        }
        assert!(
            Expr::parse("{'x': {'y': input.deep}}").unwrap().eval(&scope).unwrap_err().contains("nests more than 200")
        );
        assert!(Expr::parse("{'x': input.deep}").unwrap().eval(&scope).is_ok());
        // The one difference: an object copied from the data keeps its order.
        let scope = Json::new(json!({"input": {"z": 1, "a": 2}}));
        let e = Expr::parse("input").unwrap();
        assert_eq!(serde_json::to_string(&e.eval(&scope).unwrap()).unwrap(), r#"{"z":1,"a":2}"#);
        assert_eq!(serde_json::to_string(&interpreted(&e, &scope).unwrap()).unwrap(), r#"{"a":2,"z":1}"#);
    }

    #[test]
    fn expressions_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Expr>();
    }
}

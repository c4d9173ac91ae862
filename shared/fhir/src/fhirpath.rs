//! A FHIRPath subset: what the R4 search parameter expressions use, evaluated over raw JSON.
//!
//! Syntax: paths (`Patient.name.given`), backtick identifiers, string (`'it\'s'`), integer,
//! decimal and boolean literals, `{}`, `$this`, `%resource` (also `%rootResource`, `%ucum`,
//! `%sct`, `%loinc`), parentheses, the indexer `[n]`, the operators `is`, `as`, `|`, `=`,
//! `!=`, `and`, `or`, `xor`, `implies`, and the functions `where(cond)`, `exists([cond])`,
//! `empty()`, `first()`, `not()`, `resolve()`, `as(T)`, `ofType(T)`, `is(T)` and
//! `extension(url)`. Operators are parsed by the full FHIRPath N1 precedence table; the ones
//! this subset does not evaluate (`+`, `<`, `in`, ...) and unknown functions are parse errors.
//!
//! There is no FHIR model, so types come from the JSON itself:
//! - The first identifier of a path names the focus itself when it equals the focus's
//!   `resourceType` (or is `Resource`/`DomainResource`); otherwise it is a member of the focus,
//!   so an expression rooted at another resource type yields nothing.
//! - Navigation flattens arrays, skips `null`s and `_`-prefixed keys, and yields nothing from
//!   non-objects. A missing member `x` matches a choice key `x` + type suffix (`valueQuantity`),
//!   giving the node that R4 data type (`Quantity`, `dateTime`, ...). Without a model, a sibling
//!   that merely looks like one (`sourceId` when `source` is absent) is taken as a choice too.
//!   Objects with a known `resourceType` get that type.
//! - `as`/`ofType`/`is` compare known types exactly. A node of unknown type matches any complex
//!   type if it is an object, and only a primitive type its JSON kind allows otherwise (bool:
//!   `boolean`; number: `decimal`, integers if integral; string: the string-like primitives).
//!   System type names (`DateTime`, `System.String`) mean the FHIR primitives.
//! - `resolve()` does not fetch anything: it yields the Reference itself, typed as its target
//!   resource type (from `Type/id[/_history/v]`, absolute URLs, contained `#id` or `type`).
//! - Collections used as booleans follow FHIRPath singleton evaluation: empty or several items
//!   is empty, one boolean is itself, any other single item is true.
//!
//! Parsing is bounded (syntax nodes and nesting), and evaluation never panics on odd JSON.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde_json::Value;

use crate::types::ResourceType;

/// At most this many syntax nodes per expression (the largest R4 expression has under 200).
const MAX_NODES: usize = 1000;
/// At most this many nested parentheses, brackets or function arguments.
const MAX_NESTING: usize = 32;

/// The R4 primitive types, as FHIRPath names them (choice keys capitalise the first letter).
const PRIMITIVES: &str = "base64Binary boolean canonical code date dateTime decimal id instant \
    integer markdown oid positiveInt string time unsignedInt uri url uuid";
/// The R4 complex data types a choice element can take (the open type list).
const COMPLEX: &str = "Address Age Annotation Attachment CodeableConcept Coding ContactDetail \
    ContactPoint Contributor Count DataRequirement Distance Dosage Duration Expression HumanName \
    Identifier Meta Money ParameterDefinition Period Quantity Range Ratio Reference \
    RelatedArtifact SampledData Signature Timing TriggerDefinition UsageContext";
/// The primitives whose JSON form is a number or a boolean rather than a string.
const NOT_STRINGS: [&str; 5] = [
    "boolean",
    "decimal",
    "integer",
    "positiveInt",
    "unsignedInt",
];

/// Binary operators by FHIRPath precedence, tightest first (levels 3 to 12 of the N1 table).
const LEVELS: [&str; 10] = [
    "* / div mod",
    "+ - &",
    "is as",
    "|",
    "< > <= >=",
    "= ~ != !~",
    "in contains",
    "and",
    "xor or",
    "implies",
];
/// The binary operators this subset evaluates (besides `is` and `as`).
const EVALUATED: [&str; 7] = ["|", "=", "!=", "and", "or", "xor", "implies"];

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    ast: Ast,
}

/// Why an expression did not parse (Display: a one-line message naming the position / token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// One item of a result collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub value: Cow<'a, Value>,
    /// The FHIR type when known: from a choice element's suffix (`valueQuantity` -> "Quantity",
    /// `valueDateTime` -> "dateTime", `valueString` -> "string", `onsetPeriod` -> "Period"),
    /// from `as`/`ofType`, or "boolean"/"string"/"integer" for computed/literal values.
    pub type_name: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
enum Ast {
    Empty,
    Literal(Value, &'static str),
    This,
    Root,
    /// A member of the base's result, or of the focus when there is no base.
    Member(Option<Box<Ast>>, String),
    Call(Option<Box<Ast>>, Func),
    Index(Box<Ast>, Box<Ast>),
    /// `is T` (true) or `as T` (false).
    Type(Box<Ast>, bool, String),
    Binary(&'static str, Box<Ast>, Box<Ast>),
}

#[derive(Debug, Clone, PartialEq)]
enum Func {
    Where(Box<Ast>),
    Exists(Option<Box<Ast>>),
    Empty,
    First,
    Not,
    Resolve,
    OfType(String),
    Is(String),
    Extension(Box<Ast>),
}

impl Expr {
    pub fn parse(s: &str) -> Result<Expr, ParseError> {
        let mut p = Parser {
            toks: lex(s)?,
            i: 0,
            nodes: 0,
            nesting: 0,
        };
        let ast = p.binary(LEVELS.len())?;
        match p.peek() {
            Tok::End => Ok(Expr { ast }),
            _ => Err(p.err("expected an operator or the end")),
        }
    }

    /// Evaluates the expression with `resource` (a resource's JSON object) as the root.
    pub fn eval<'a>(&self, resource: &'a Value) -> Vec<Node<'a>> {
        let focus = node(Cow::Borrowed(resource), resource_type_of(resource));
        eval(&self.ast, &[focus], resource)
    }

    /// Evaluates the expression relative to `focus` (composite search parameter components:
    /// `code`, `value.as(Quantity)`), with `resource` as the root for resolve()/contained lookups.
    pub fn eval_on<'a>(&self, resource: &'a Value, focus: &Node<'a>) -> Vec<Node<'a>> {
        eval(&self.ast, std::slice::from_ref(focus), resource)
    }
}

// ---- lexing and parsing ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier; `true` when it was backtick-quoted (never a keyword then).
    Ident(String, bool),
    Str(String),
    Num(String),
    Var(String),
    This,
    Sym(&'static str),
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s, _) | Tok::Num(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "string '{s}'"),
            Tok::Var(s) => write!(f, "`%{s}`"),
            Tok::This => f.write_str("`$this`"),
            Tok::Sym(s) => write!(f, "`{s}`"),
            Tok::End => f.write_str("the end"),
        }
    }
}

/// Two-character symbols first.
const SYMBOLS: &str = "!= !~ <= >= . , ( ) [ ] { } | = ~ < > + - * / &";

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let err = |pos: usize, what: &str| ParseError(format!("{what} at offset {pos} in `{s}`"));
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let word = |i: usize| {
            let n = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            (&s[i..i + n], i + n)
        };
        let tok = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let (w, end) = word(i);
            i = end;
            Tok::Ident(w.to_owned(), false)
        } else if c.is_ascii_digit() {
            let mut n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if b.get(i + n) == Some(&b'.') && b.get(i + n + 1).is_some_and(u8::is_ascii_digit) {
                n += 1 + b[i + n + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
            }
            i += n;
            Tok::Num(s[start..i].to_owned())
        } else if c == b'$' || c == b'%' {
            let (w, end) = word(i + 1);
            i = end;
            match (c, w) {
                (b'$', "this") => Tok::This,
                (b'%', w) if !w.is_empty() => Tok::Var(w.to_owned()),
                _ => return Err(err(start, "unsupported variable")),
            }
        } else if c == b'\'' || c == b'`' {
            let mut text = String::new();
            let mut chars = s[i + 1..].char_indices();
            loop {
                match chars.next() {
                    None => return Err(err(start, "unterminated quote")),
                    Some((k, q)) if q as u32 == c as u32 => {
                        i += 1 + k + 1;
                        break;
                    }
                    Some((_, '\\')) => match chars.next().map(|(_, e)| e) {
                        Some('n') => text.push('\n'),
                        Some('r') => text.push('\r'),
                        Some('t') => text.push('\t'),
                        Some('f') => text.push('\u{c}'),
                        Some('u') => {
                            let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                            match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                                Some(ch) if hex.len() == 4 => text.push(ch),
                                _ => return Err(err(start, "bad \\u escape")),
                            }
                        }
                        Some(e @ ('\'' | '"' | '`' | '\\' | '/')) => text.push(e),
                        _ => return Err(err(start, "bad escape")),
                    },
                    Some((_, ch)) => text.push(ch),
                }
            }
            if c == b'`' {
                Tok::Ident(text, true)
            } else {
                Tok::Str(text)
            }
        } else if let Some(sym) = SYMBOLS.split(' ').find(|sym| s[i..].starts_with(sym)) {
            i += sym.len();
            Tok::Sym(sym)
        } else {
            let ch = s[i..].chars().next().unwrap_or('?');
            return Err(err(start, &format!("unexpected character `{ch}`")));
        };
        out.push((start, tok));
    }
    out.push((s.len(), Tok::End));
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
    nodes: usize,
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i.min(self.toks.len() - 1)].1
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.i = (self.i + 1).min(self.toks.len() - 1);
        t
    }

    fn err(&self, what: &str) -> ParseError {
        let (pos, tok) = &self.toks[self.i.min(self.toks.len() - 1)];
        ParseError(format!("{what}: found {tok} at offset {pos}"))
    }

    fn expect(&mut self, sym: &str) -> Result<(), ParseError> {
        match self.peek() {
            Tok::Sym(s) if *s == sym => {
                self.next();
                Ok(())
            }
            _ => Err(self.err(&format!("expected `{sym}`"))),
        }
    }

    /// Counts a syntax node, failing past the bound.
    fn node(&mut self, ast: Ast) -> Result<Ast, ParseError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.err("expression too long"));
        }
        Ok(ast)
    }

    fn nest(&mut self, by: isize) -> Result<(), ParseError> {
        self.nesting = self.nesting.saturating_add_signed(by);
        if self.nesting > MAX_NESTING {
            return Err(self.err("expression nested too deeply"));
        }
        Ok(())
    }

    /// Binary operators of `level` (1-based index into `LEVELS`) and tighter.
    fn binary(&mut self, level: usize) -> Result<Ast, ParseError> {
        if level == 0 {
            return self.postfix();
        }
        let mut lhs = self.binary(level - 1)?;
        loop {
            let word = match self.peek() {
                Tok::Sym(s) => *s,
                Tok::Ident(s, false) => s.as_str(),
                _ => return Ok(lhs),
            };
            let Some(op) = LEVELS[level - 1].split(' ').find(|o| *o == word) else {
                return Ok(lhs);
            };
            if !matches!(op, "is" | "as") && !EVALUATED.contains(&op) {
                return Err(self.err("unsupported operator"));
            }
            self.next();
            let ast = match op {
                "is" | "as" => Ast::Type(Box::new(lhs), op == "is", self.type_spec()?),
                _ => Ast::Binary(op, Box::new(lhs), Box::new(self.binary(level - 1)?)),
            };
            lhs = self.node(ast)?;
        }
    }

    fn number(&self, n: &str) -> Result<Ast, ParseError> {
        let v = if n.contains('.') {
            n.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(|x| (Value::Number(x), "decimal"))
        } else {
            n.parse::<i64>().ok().map(|x| (Value::from(x), "integer"))
        };
        v.map(|(v, t)| Ast::Literal(v, t))
            .ok_or_else(|| self.err("number out of range"))
    }

    fn postfix(&mut self) -> Result<Ast, ParseError> {
        let mut ast = self.term()?;
        loop {
            ast = match self.peek() {
                Tok::Sym(".") => {
                    self.next();
                    match self.next() {
                        Tok::Ident(name, quoted) => {
                            if !quoted && self.peek() == &Tok::Sym("(") {
                                Ast::Call(Some(Box::new(ast)), self.function(&name)?)
                            } else {
                                Ast::Member(Some(Box::new(ast)), name)
                            }
                        }
                        _ => return Err(self.err("expected a name after `.`")),
                    }
                }
                Tok::Sym("[") => {
                    self.next();
                    self.nest(1)?;
                    let index = self.binary(LEVELS.len())?;
                    self.expect("]")?;
                    self.nest(-1)?;
                    Ast::Index(Box::new(ast), Box::new(index))
                }
                _ => return Ok(ast),
            };
            ast = self.node(ast)?;
        }
    }

    fn term(&mut self) -> Result<Ast, ParseError> {
        let at = self.i;
        let ast = match self.next() {
            Tok::Str(s) => Ast::Literal(Value::String(s), "string"),
            Tok::Num(n) => self.number(&n)?,
            Tok::This => Ast::This,
            Tok::Var(v) => match v.as_str() {
                "resource" | "rootResource" => Ast::Root,
                "ucum" => Ast::Literal("http://unitsofmeasure.org".into(), "string"),
                "sct" => Ast::Literal("http://snomed.info/sct".into(), "string"),
                "loinc" => Ast::Literal("http://loinc.org".into(), "string"),
                _ => return Err(self.err(&format!("unsupported variable %{v}"))),
            },
            Tok::Ident(b, false) if b == "true" || b == "false" => {
                Ast::Literal(Value::Bool(b == "true"), "boolean")
            }
            Tok::Ident(name, quoted) => {
                if !quoted && self.peek() == &Tok::Sym("(") {
                    Ast::Call(None, self.function(&name)?)
                } else {
                    Ast::Member(None, name)
                }
            }
            Tok::Sym("(") => {
                self.nest(1)?;
                let ast = self.binary(LEVELS.len())?;
                self.expect(")")?;
                self.nest(-1)?;
                return Ok(ast);
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                Ast::Empty
            }
            _ => {
                self.i = at;
                return Err(self.err("expected an expression"));
            }
        };
        self.node(ast)
    }

    /// A function call's arguments, from its `(`.
    fn function(&mut self, name: &str) -> Result<Func, ParseError> {
        self.expect("(")?;
        self.nest(1)?;
        let closed = self.peek() == &Tok::Sym(")");
        let func = match name {
            "where" => Func::Where(Box::new(self.binary(LEVELS.len())?)),
            "exists" if closed => Func::Exists(None),
            "exists" => Func::Exists(Some(Box::new(self.binary(LEVELS.len())?))),
            "empty" => Func::Empty,
            "first" => Func::First,
            "not" => Func::Not,
            "resolve" => Func::Resolve,
            "as" | "ofType" => Func::OfType(self.type_spec()?),
            "is" => Func::Is(self.type_spec()?),
            "extension" => Func::Extension(Box::new(self.binary(LEVELS.len())?)),
            _ => {
                self.i -= 2;
                return Err(self.err("unsupported function"));
            }
        };
        self.expect(")")?;
        self.nest(-1)?;
        Ok(func)
    }

    /// A type name, optionally qualified by `FHIR.` or `System.`; System types (`DateTime`)
    /// become the FHIR primitives (`dateTime`).
    fn type_spec(&mut self) -> Result<String, ParseError> {
        let at = self.i;
        let Tok::Ident(mut name, _) = self.next() else {
            self.i = at;
            return Err(self.err("expected a type name"));
        };
        if (name == "FHIR" || name == "System") && self.peek() == &Tok::Sym(".") {
            self.next();
            match self.next() {
                Tok::Ident(n, _) => name = n,
                _ => return Err(self.err("expected a type name after `.`")),
            }
        }
        Ok(match name.as_str() {
            "Boolean" | "String" | "Integer" | "Decimal" | "Date" | "Time" => name.to_lowercase(),
            "DateTime" => "dateTime".to_owned(),
            _ => name,
        })
    }
}

// ---- evaluation ----

fn eval<'a>(ast: &Ast, focus: &[Node<'a>], root: &'a Value) -> Vec<Node<'a>> {
    match ast {
        Ast::Empty => Vec::new(),
        Ast::Literal(v, t) => vec![node(Cow::Owned(v.clone()), Some(t))],
        Ast::This => focus.to_vec(),
        Ast::Root => vec![node(Cow::Borrowed(root), resource_type_of(root))],
        Ast::Member(None, name) => {
            let mut out = Vec::new();
            for n in focus {
                let ty = resource_type_of(&n.value);
                let names_focus = name == "Resource" || name == "DomainResource";
                if ty.is_some_and(|t| names_focus || t == name) {
                    out.push(n.clone());
                } else {
                    member(n, name, &mut out);
                }
            }
            out
        }
        Ast::Member(Some(base), name) => {
            let mut out = Vec::new();
            for n in &eval(base, focus, root) {
                member(n, name, &mut out);
            }
            out
        }
        Ast::Index(base, index) => {
            let k = match eval(index, focus, root).as_slice() {
                [n] => n.value.as_u64().and_then(|k| usize::try_from(k).ok()),
                _ => None,
            };
            let input = eval(base, focus, root);
            k.and_then(|k| input.into_iter().nth(k))
                .into_iter()
                .collect()
        }
        Ast::Call(base, func) => {
            let input = match base {
                Some(base) => eval(base, focus, root),
                None => focus.to_vec(),
            };
            call(func, input, root)
        }
        Ast::Type(base, is, t) => {
            let input = eval(base, focus, root);
            if *is {
                type_test(&input, t)
            } else {
                input.into_iter().filter(|n| has_type(n, t)).collect()
            }
        }
        Ast::Binary(op, l, r) => binary(op, eval(l, focus, root), eval(r, focus, root)),
    }
}

fn call<'a>(func: &Func, input: Vec<Node<'a>>, root: &'a Value) -> Vec<Node<'a>> {
    let holds = |cond: &Ast, n: &Node<'a>| truth(&eval(cond, std::slice::from_ref(n), root));
    match func {
        Func::Where(cond) => input
            .into_iter()
            .filter(|n| holds(cond, n) == Some(true))
            .collect(),
        Func::Exists(None) => boolean(!input.is_empty()),
        Func::Exists(Some(cond)) => boolean(input.iter().any(|n| holds(cond, n) == Some(true))),
        Func::Empty => boolean(input.is_empty()),
        Func::First => input.into_iter().take(1).collect(),
        Func::Not => truth(&input).map(|b| boolean(!b)).unwrap_or_default(),
        Func::Resolve => input
            .into_iter()
            .filter_map(|n| Some(node(n.value.clone(), Some(target_type(&n.value, root)?))))
            .collect(),
        Func::OfType(t) => input.into_iter().filter(|n| has_type(n, t)).collect(),
        Func::Is(t) => type_test(&input, t),
        Func::Extension(url) => {
            let url = eval(url, &input, root);
            let [Node { value: url, .. }] = url.as_slice() else {
                return Vec::new();
            };
            let mut exts = Vec::new();
            for n in &input {
                member(n, "extension", &mut exts);
            }
            exts.retain(|e| e.value.get("url") == Some(url));
            exts
        }
    }
}

fn binary<'a>(op: &str, l: Vec<Node<'a>>, r: Vec<Node<'a>>) -> Vec<Node<'a>> {
    let (a, b) = (truth(&l), truth(&r));
    let logic = match op {
        "|" => return union(l, r),
        "=" | "!=" if l.is_empty() || r.is_empty() => None,
        "=" | "!=" => {
            let eq =
                l.len() == r.len() && l.iter().zip(&r).all(|(x, y)| json_eq(&x.value, &y.value));
            Some(eq != (op == "!="))
        }
        "and" => match (a, b) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        "or" => match (a, b) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        "xor" => a.zip(b).map(|(a, b)| a != b),
        // "implies": the parser admits no other operator.
        _ => match (a, b) {
            (Some(false), _) | (_, Some(true)) => Some(true),
            (Some(true), Some(false)) => Some(false),
            _ => None,
        },
    };
    logic.map(boolean).unwrap_or_default()
}

/// `l | r`: both, without repeats (the same JSON node, or an equal computed value).
fn union<'a>(l: Vec<Node<'a>>, r: Vec<Node<'a>>) -> Vec<Node<'a>> {
    let mut seen = HashSet::new();
    let mut out: Vec<Node<'a>> = Vec::new();
    for n in l.into_iter().chain(r) {
        let repeat = match &n.value {
            Cow::Borrowed(v) => !seen.insert(*v as *const Value),
            Cow::Owned(v) => out.iter().any(|o| json_eq(&o.value, v)),
        };
        if !repeat {
            out.push(n);
        }
    }
    out
}

fn node<'a>(value: Cow<'a, Value>, type_name: Option<&'static str>) -> Node<'a> {
    Node { value, type_name }
}

fn boolean<'a>(b: bool) -> Vec<Node<'a>> {
    vec![node(Cow::Owned(Value::Bool(b)), Some("boolean"))]
}

/// FHIRPath singleton evaluation of a collection as a boolean.
fn truth(c: &[Node]) -> Option<bool> {
    match c {
        [n] => Some(n.value.as_bool().unwrap_or(true)),
        _ => None,
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// Pushes member `name` of `n` (array items flattened, choice suffixes typed) onto `out`.
fn member<'a>(n: &Node<'a>, name: &str, out: &mut Vec<Node<'a>>) {
    match &n.value {
        Cow::Borrowed(v) => member_of(v, name, &mut |c, t| out.push(node(Cow::Borrowed(c), t))),
        Cow::Owned(v) => member_of(v, name, &mut |c, t| {
            out.push(node(Cow::Owned(c.clone()), t))
        }),
    }
}

fn member_of<'v>(v: &'v Value, name: &str, f: &mut dyn FnMut(&'v Value, Option<&'static str>)) {
    let Value::Object(o) = v else { return };
    if name.is_empty() || name.starts_with('_') {
        return;
    }
    let mut each = |x: &'v Value, t: Option<&'static str>| {
        let items = match x {
            Value::Array(a) => a.as_slice(),
            x => std::slice::from_ref(x),
        };
        for x in items.iter().filter(|x| !x.is_null()) {
            f(x, t.or_else(|| resource_type_of(x)));
        }
    };
    if let Some(x) = o.get(name) {
        return each(x, None);
    }
    for (k, x) in o {
        if let Some(t) = k.strip_prefix(name).and_then(choice_type) {
            each(x, Some(t));
        }
    }
}

/// The data type a choice key's suffix names: `Quantity`, `DateTime` -> `dateTime`.
fn choice_type(suffix: &str) -> Option<&'static str> {
    let first = *suffix.as_bytes().first()?;
    if !first.is_ascii_uppercase() {
        return None;
    }
    PRIMITIVES
        .split_whitespace()
        .chain(COMPLEX.split_whitespace())
        .find(|t| t.as_bytes()[0].to_ascii_uppercase() == first && t[1..] == suffix[1..])
}

fn is_primitive(t: &str) -> bool {
    PRIMITIVES.split_whitespace().any(|p| p == t)
}

fn resource_type(name: &str) -> Option<&'static str> {
    ResourceType::parse(name).map(|t| t.as_str())
}

fn resource_type_of(v: &Value) -> Option<&'static str> {
    v.get("resourceType")?.as_str().and_then(resource_type)
}

/// Whether `n` is of type `t` (see the module docs for unknown types).
fn has_type(n: &Node, t: &str) -> bool {
    match n.type_name.or_else(|| resource_type_of(&n.value)) {
        Some(k) => {
            k == t || (matches!(t, "Resource" | "DomainResource") && resource_type(k).is_some())
        }
        None => match &*n.value {
            Value::Bool(_) => t == "boolean",
            Value::Number(x) => {
                t == "decimal"
                    || (matches!(t, "integer" | "unsignedInt" | "positiveInt")
                        && (x.is_i64() || x.is_u64()))
            }
            Value::String(_) => is_primitive(t) && !NOT_STRINGS.contains(&t),
            Value::Object(_) | Value::Array(_) => !is_primitive(t),
            Value::Null => false,
        },
    }
}

fn type_test<'a>(input: &[Node<'a>], t: &str) -> Vec<Node<'a>> {
    match input {
        [n] => boolean(has_type(n, t)),
        _ => Vec::new(),
    }
}

/// The resource type a Reference (or a reference string) points to, if R4 defines it.
fn target_type(v: &Value, root: &Value) -> Option<&'static str> {
    let (reference, ty) = match v {
        Value::String(s) => (Some(s.as_str()), None),
        Value::Object(o) => (
            o.get("reference").and_then(Value::as_str),
            o.get("type").and_then(Value::as_str),
        ),
        _ => return None,
    };
    let from_reference = reference.and_then(|r| match r.strip_prefix('#') {
        Some("") => resource_type_of(root),
        Some(id) => root
            .get("contained")?
            .as_array()?
            .iter()
            .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
            .and_then(resource_type_of),
        None => {
            let mut segments = r.rsplit('/');
            let (mut id, mut t) = (segments.next()?, segments.next()?);
            if t == "_history" {
                (id, t) = (segments.next()?, segments.next()?);
            }
            if id.is_empty() {
                None
            } else {
                resource_type(t)
            }
        }
    });
    // `type` is a URI: `Patient` or `http://hl7.org/fhir/StructureDefinition/Patient`.
    from_reference.or_else(|| resource_type(ty?.rsplit('/').next()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The values of `expr` over `r` as one JSON array.
    fn vals(expr: &str, r: &Value) -> Value {
        let e = Expr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        e.eval(r)
            .into_iter()
            .map(|n| n.value.into_owned())
            .collect()
    }

    /// `check!(resource, expression => [expected values], ...)`.
    macro_rules! check {
        ($r:expr, $($e:literal => $want:tt),+ $(,)?) => {
            $(assert_eq!(vals($e, &$r), json!($want), "{}", $e);)+
        };
    }

    /// The type names of `expr`'s results, `-` where unknown.
    fn types(expr: &str, r: &Value) -> Vec<&'static str> {
        let e = Expr::parse(expr).unwrap();
        e.eval(r)
            .iter()
            .map(|n| n.type_name.unwrap_or("-"))
            .collect()
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient", "id": "p", "active": true, "gender": "female",
            "name": [
                {"family": "Doe", "given": ["a", "b"]},
                {"given": ["c", null], "_given": [null, {"id": "x"}]}
            ],
            "telecom": [
                {"system": "phone", "value": "555"},
                {"system": "email", "value": "a@x.org"},
                {"system": "email", "value": "b@x.org"}
            ],
            "extension": [
                {"url": "http://x/race", "valueCoding": {"code": "r"}},
                {"url": "http://x/other", "valueString": "o"}
            ]
        })
    }

    #[test]
    fn paths_flatten_arrays_and_skip_nulls() {
        let p = patient();
        check!(p,
            "Patient.name.given" => ["a", "b", "c"],
            "Patient.`name`.given.first()" => ["a"],
            "name.family" => ["Doe"],
            "Patient.gender.code" => [],
            "Patient.name._given" => [],
            "Patient.birthDate" => [],
        );
        let gender = Expr::parse("Patient.gender").unwrap().eval(&p);
        assert!(matches!(gender[0].value, Cow::Borrowed(v) if std::ptr::eq(v, &p["gender"])));
        assert_eq!(types("Patient | Patient.gender", &p), ["Patient", "-"]);
    }

    #[test]
    fn choice_types_and_type_filters() {
        let obs = json!({
            "resourceType": "Observation", "valueQuantity": {"value": 5},
            "_valueString": {"id": "not-a-value"}, "effectiveDateTime": "2020-01-01"
        });
        assert_eq!(
            types("Observation.value | Observation.effective", &obs),
            ["Quantity", "dateTime"]
        );
        check!(obs,
            "(Observation.value as Quantity).value" => [5],
            "Observation.value.as(Quantity).value" => [5],
            "Observation.value.ofType(FHIR.Quantity).value" => [5],
            "Observation.value as CodeableConcept" => [],
            "(Observation.value as CodeableConcept).text" => [],
            "Observation.effective.as(DateTime)" => ["2020-01-01"],
            "Observation.effective as System.DateTime" => ["2020-01-01"],
            "Observation.effective.as(Period)" => [],
            "Observation.value is Quantity" => [true],
            "Observation.value.is(Range)" => [false],
        );
        let cc = json!({"resourceType": "Observation", "valueCodeableConcept": {"text": "pos"}});
        check!(cc, "(Observation.value as CodeableConcept).text" => ["pos"]);
        let age = json!({"resourceType": "Condition", "onsetAge": {"value": 40}});
        assert_eq!(types("Condition.onset.as(Age)", &age), ["Age"]);
        check!(age, "Condition.onset.as(Period)" => []);
    }

    #[test]
    fn unknown_types_follow_the_json_kind() {
        check!(patient(),
            "Patient.active as boolean" => [true],
            "Patient.active as string" => [],
            "Patient.gender as code" => ["female"],
            "Patient.gender as integer" => [],
            "(Patient.name as HumanName).family" => ["Doe"],
            "Patient.name as string" => [],
            "Patient is DomainResource" => [true],
            "Patient is Observation" => [false],
            "Patient.name is HumanName" => [],
            "1.5 is integer" => [false],
            "1.5 is decimal" => [true],
        );
    }

    #[test]
    fn resolve_types_references_by_target() {
        let prov = json!({
            "resourceType": "Provenance",
            "contained": [
                {"resourceType": "Patient", "id": "cp"},
                {"resourceType": "Organization", "id": "co"}
            ],
            "target": [
                {"reference": "Patient/1"},
                {"reference": "http://example.org/fhir/Patient/2"},
                {"reference": "Patient/3/_history/2"},
                {"type": "Patient"},
                {"reference": "#cp"},
                {"reference": "Practitioner/9"},
                {"reference": "#co"},
                {"reference": "#missing"},
                {"reference": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
                {"reference": "Unknown/1"},
                {"reference": "Patient/"},
                {"display": "nothing"},
                "Patient/7",
                [{"reference": "Patient/8"}],
                5
            ]
        });
        let got = vals("Provenance.target.where(resolve() is Patient)", &prov);
        let target = prov["target"].as_array().unwrap();
        let want: Vec<Value> = [0, 1, 2, 3, 4, 12]
            .iter()
            .map(|i| target[*i].clone())
            .collect();
        assert_eq!(got, Value::Array(want));
        assert_eq!(
            types("Provenance.target.resolve()", &prov).join(" "),
            "Patient Patient Patient Patient Patient Practitioner Organization Patient"
        );
        let group = "http://hl7.org/fhir/StructureDefinition/Group";
        let by_type = json!({"resourceType": "Observation", "subject": {"type": group}});
        assert_eq!(types("Observation.subject.resolve()", &by_type), ["Group"]);
    }

    #[test]
    fn where_and_extension_filter() {
        check!(patient(),
            "Patient.telecom.where(system='email').value" => ["a@x.org", "b@x.org"],
            "Patient.telecom.where(system = 'phone').value" => ["555"],
            "Patient.telecom.where(system='fax')" => [],
            "Patient.name.given.where($this = 'b')" => ["b"],
            "Patient.name.where(given.exists($this = 'c')).given" => ["c"],
            "Patient.extension('http://x/race').value" => [{"code": "r"}],
            "Patient.extension('http://x/none')" => [],
        );
        assert_eq!(
            types("Patient.extension('http://x/other').value", &patient()),
            ["string"]
        );
        let linked = json!({"resourceType": "PlanDefinition", "relatedArtifact": [
            {"type": "predecessor", "resource": "http://x/a"},
            {"type": "successor", "resource": "http://x/b"}
        ]});
        check!(linked,
            "PlanDefinition.relatedArtifact.where(type='successor').resource" => ["http://x/b"],
        );
    }

    #[test]
    fn deceased_expression() {
        let e = "Patient.deceased.exists() and Patient.deceased != false";
        for (deceased, want) in [
            (json!({"deceasedBoolean": true}), true),
            (json!({"deceasedBoolean": false}), false),
            (json!({"deceasedDateTime": "2020-02-02"}), true),
            (json!({}), false),
        ] {
            let mut p = deceased;
            p["resourceType"] = json!("Patient");
            assert_eq!(vals(e, &p), json!([want]), "{p}");
        }
    }

    #[test]
    fn logic_is_three_valued() {
        check!(patient(),
            "true and {}" => [],
            "false and {}" => [false],
            "true or {}" => [true],
            "false or {}" => [],
            "true xor false" => [true],
            "{} implies false" => [],
            "false implies {}" => [true],
            "Patient.active.not()" => [false],
            "Patient.birthDate.empty()" => [true],
            "Patient.birthDate = 'x'" => [],
            "Patient.gender = 'female' and Patient.active = true" => [true],
            "Patient.gender != 'female' or Patient.active" => [true],
            "1 = 1.0" => [true],
            "'it\\'s' = 'it'" => [false],
            "'it\\'s\\u0021'" => ["it's!"],
            "Patient.name.given = Patient.name.given" => [true],
        );
    }

    #[test]
    fn indexer_union_and_other_roots() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Composition", "id": "c"}},
            {"resource": {"resourceType": "Patient", "id": "p"}}
        ]});
        check!(bundle,
            "Bundle.entry[0].resource.id" => ["c"],
            "Bundle.entry[2].resource" => [],
            "Bundle.entry.resource.ofType(Patient).id" => ["p"],
        );
        assert_eq!(types("Bundle.entry[1].resource", &bundle), ["Patient"]);
        check!(patient(),
            "Patient.name.given | Patient.name.given" => ["a", "b", "c"],
            "(Patient.name | Patient.name.first()).family" => ["Doe"],
            "'a' | 'a' | 'b'" => ["a", "b"],
            "Observation.code | Patient.gender" => ["female"],
            "Resource.id | DomainResource.gender | %resource.active" => ["p", "female", true],
            // Union binds tighter than `=`.
            "Patient.gender | 'x' = 'female' | 'x'" => [true],
        );
    }

    #[test]
    fn eval_on_component_focus() {
        let obs = json!({"resourceType": "Observation", "id": "o", "component": [
            {"code": {"text": "sys"}, "valueQuantity": {"value": 120}},
            {"code": {"text": "note"}, "valueString": "x"}
        ]});
        let comps = Expr::parse("Observation.component").unwrap().eval(&obs);
        let on = |e: &str, focus: &Node| -> Value {
            let e = Expr::parse(e).unwrap();
            e.eval_on(&obs, focus)
                .into_iter()
                .map(|n| n.value.into_owned())
                .collect()
        };
        assert_eq!(on("code.text", &comps[0]), json!(["sys"]));
        assert_eq!(on("value.as(Quantity)", &comps[0]), json!([{"value": 120}]));
        assert_eq!(on("valueQuantity.value", &comps[0]), json!([120]));
        assert_eq!(
            on("value.as(Quantity) | valueQuantity", &comps[1]),
            json!([])
        );
        assert_eq!(on("%resource.id | Observation.id", &comps[1]), json!(["o"]));
        let typed = Expr::parse("value.as(Quantity)")
            .unwrap()
            .eval_on(&obs, &comps[0]);
        assert_eq!(typed[0].type_name, Some("Quantity"));
        let owned = Node {
            value: Cow::Owned(json!({"code": {"text": "t"}})),
            type_name: None,
        };
        assert_eq!(on("code.text", &owned), json!(["t"]));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        let long = format!("a{}", ".b".repeat(2000));
        for bad in [
            "",
            "Patient.",
            "(a",
            "'unterminated",
            "where(",
            "Patient..name",
            "a +",
            "a + b",
            "a < b",
            "foo()",
            "a.foo()",
            "a[",
            "a[0",
            "`x",
            "a.where(b",
            "a as",
            "a is 'x'",
            "$index",
            "%",
            "%other",
            "a = ",
            "a ! b",
            "1 2",
            "a.first(b)",
            "a)",
            "{",
            "'\\q'",
            "'\\u12'",
            "-1",
            "99999999999999999999",
            "a | | b",
            "Patient.name.where(",
            &deep,
            &long,
        ] {
            let err = Expr::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("offset"), "{bad}: {err}");
        }
        let e = Expr::parse("Patient.").unwrap_err().to_string();
        assert!(e.contains("the end") && e.contains("offset 8"), "{e}");
    }

    #[test]
    fn r4_style_expressions_parse() {
        for e in [
            "Account.subject.where(resolve() is Patient)",
            "(ActivityDefinition.useContext.value as Quantity) | (X.useContext.value as Range)",
            "Condition.onset.as(Age) | Condition.onset.as(Range)",
            "value.as(DateTime) | value.as(Period)",
            "%resource.referenceSeq.chromosome",
            "Person.telecom.where(system='phone') | Patient.telecom.where(system='phone')",
            "Composition.relatesTo.target as Identifier",
        ] {
            assert!(Expr::parse(e).is_ok(), "{e}");
        }
    }

    #[test]
    fn malformed_and_deep_resources_never_panic() {
        let mut deep = json!({"v": 1});
        for i in 0..1000 {
            deep = match i % 3 {
                0 => json!({"resourceType": "Patient", "name": [deep], "given": "g"}),
                1 => json!({"name": [[deep]], "contained": [{"id": "x"}]}),
                _ => json!({"name": deep}),
            };
        }
        let odd = [
            json!({"resourceType": "Patient",
                "name": [[{"given": ["a"]}], "x", 5, null, {"given": [[["b"]]]}]}),
            json!({"resourceType": "Patient", "name": "str", "telecom": {"system": ["email"]}}),
            json!({"resourceType": ["Patient"], "contained": "x",
                "subject": {"reference": 5, "type": {}}}),
            json!({"resourceType": "Patient", "contained": [5, {"id": 3}],
                "link": [{"other": {"reference": "#"}}]}),
            json!(["not", "an", "object"]),
            json!(null),
            json!("Patient"),
            deep,
        ];
        for e in [
            "Patient.name.given",
            "Patient.name.name.name.name.given | Patient.name[0].name",
            "Patient.telecom.where(system='email')",
            "Patient.subject.where(resolve() is Patient)",
            "Patient.link.other.resolve()",
            "Patient.name as string",
            "Patient.name.exists() and Patient.name != false",
            "Patient.contained.where(resolve() is Patient)",
            "Patient.name.extension('u').value",
        ] {
            let e = Expr::parse(e).unwrap();
            for r in &odd {
                e.eval(r);
            }
        }
        assert_eq!(vals("Patient.name.given", &odd[0]), json!([[["b"]]]));
        assert_eq!(types("Patient.link.other.resolve()", &odd[3]), ["Patient"]);
    }
}

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
//!   giving the node that R4 data type (`Quantity`, `dateTime`, ...). Objects with a known
//!   `resourceType` get that type.
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

/// At most this many syntax nodes per expression (the longest R4 expression has about 170).
const MAX_NODES: usize = 1000;
/// At most this many nested parentheses, brackets or function arguments.
const MAX_NESTING: usize = 32;

/// The R4 primitive types, as FHIRPath names them.
const PRIMITIVES: [&str; 19] = [
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
];
/// The R4 complex data types a choice element can take (the open type list).
const COMPLEX: [&str; 31] = [
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "Coding",
    "ContactDetail",
    "ContactPoint",
    "Contributor",
    "Count",
    "DataRequirement",
    "Distance",
    "Dosage",
    "Duration",
    "Expression",
    "HumanName",
    "Identifier",
    "Meta",
    "Money",
    "ParameterDefinition",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "RelatedArtifact",
    "SampledData",
    "Signature",
    "Timing",
    "TriggerDefinition",
    "UsageContext",
];
/// The primitives whose JSON form is a string.
const STRING_LIKE: [&str; 14] = [
    "base64Binary",
    "canonical",
    "code",
    "date",
    "dateTime",
    "id",
    "instant",
    "markdown",
    "oid",
    "string",
    "time",
    "uri",
    "url",
    "uuid",
];

/// Binary operators by FHIRPath precedence, tightest first (levels 3 to 12 of the table).
const LEVELS: [&[&str]; 10] = [
    &["*", "/", "div", "mod"],
    &["+", "-", "&"],
    &["is", "as"],
    &["|"],
    &["<", ">", "<=", ">="],
    &["=", "~", "!=", "!~"],
    &["in", "contains"],
    &["and"],
    &["xor", "or"],
    &["implies"],
];

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
    Binary(Op, Box<Ast>, Box<Ast>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Union,
    Eq,
    Ne,
    And,
    Or,
    Xor,
    Implies,
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
        let focus = Node {
            value: Cow::Borrowed(resource),
            type_name: resource_type_of(resource),
        };
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

const SYMBOLS: [&str; 21] = [
    "!=", "!~", "<=", ">=", ".", ",", "(", ")", "[", "]", "{", "}", "|", "=", "~", "<", ">", "+",
    "-", "*", "/",
];

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
        } else if let Some(sym) = SYMBOLS.iter().find(|sym| s[i..].starts_with(**sym)) {
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
            return self.unary();
        }
        let mut lhs = self.binary(level - 1)?;
        loop {
            let word = match self.peek() {
                Tok::Sym(s) => *s,
                Tok::Ident(s, false) => s.as_str(),
                _ => return Ok(lhs),
            };
            let op = LEVELS[level - 1].iter().find(|o| **o == word);
            let Some(&op) = op else { return Ok(lhs) };
            let op = match op {
                "is" | "as" => None,
                "|" => Some(Op::Union),
                "=" => Some(Op::Eq),
                "!=" => Some(Op::Ne),
                "and" => Some(Op::And),
                "or" => Some(Op::Or),
                "xor" => Some(Op::Xor),
                "implies" => Some(Op::Implies),
                _ => return Err(self.err("unsupported operator")),
            };
            let is = matches!(self.next(), Tok::Ident(s, _) if s == "is");
            let ast = match op {
                None => Ast::Type(Box::new(lhs), is, self.type_spec()?),
                Some(op) => Ast::Binary(op, Box::new(lhs), Box::new(self.binary(level - 1)?)),
            };
            lhs = self.node(ast)?;
        }
    }

    fn unary(&mut self) -> Result<Ast, ParseError> {
        let negate = match self.peek() {
            Tok::Sym("-") => true,
            Tok::Sym("+") => false,
            _ => return self.postfix(),
        };
        self.next();
        match self.next() {
            Tok::Num(n) => {
                let n = if negate { format!("-{n}") } else { n };
                let lit = self.number(&n)?;
                self.node(lit)
            }
            _ => Err(self.err("unary operators apply only to numbers here")),
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
        Ast::Literal(v, t) => vec![Node {
            value: Cow::Owned(v.clone()),
            type_name: Some(t),
        }],
        Ast::This => focus.to_vec(),
        Ast::Root => vec![Node {
            value: Cow::Borrowed(root),
            type_name: resource_type_of(root),
        }],
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
        Ast::Binary(op, l, r) => binary(*op, eval(l, focus, root), eval(r, focus, root)),
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
            .filter_map(|n| {
                let t = target_type(&n.value, root)?;
                Some(Node {
                    value: n.value,
                    type_name: Some(t),
                })
            })
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

fn binary<'a>(op: Op, l: Vec<Node<'a>>, r: Vec<Node<'a>>) -> Vec<Node<'a>> {
    let (a, b) = (truth(&l), truth(&r));
    let logic = match op {
        Op::Union => return union(l, r),
        Op::Eq | Op::Ne if l.is_empty() || r.is_empty() => None,
        Op::Eq | Op::Ne => {
            let eq =
                l.len() == r.len() && l.iter().zip(&r).all(|(x, y)| json_eq(&x.value, &y.value));
            Some(eq != (op == Op::Ne))
        }
        Op::And => match (a, b) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Op::Or => match (a, b) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Op::Xor => a.zip(b).map(|(a, b)| a != b),
        Op::Implies => match (a, b) {
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

fn boolean<'a>(b: bool) -> Vec<Node<'a>> {
    vec![Node {
        value: Cow::Owned(Value::Bool(b)),
        type_name: Some("boolean"),
    }]
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
        Cow::Borrowed(v) => member_of(v, name, &mut |c, t| {
            out.push(Node {
                value: Cow::Borrowed(c),
                type_name: t,
            })
        }),
        Cow::Owned(v) => member_of(v, name, &mut |c, t| {
            out.push(Node {
                value: Cow::Owned(c.clone()),
                type_name: t,
            })
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
        .iter()
        .chain(&COMPLEX)
        .copied()
        .find(|t| t.as_bytes()[0].to_ascii_uppercase() == first && t[1..] == suffix[1..])
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
            Value::String(_) => STRING_LIKE.contains(&t),
            Value::Object(_) | Value::Array(_) => !PRIMITIVES.contains(&t),
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

    fn values(expr: &str, resource: &Value) -> Vec<Value> {
        let e = Expr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        e.eval(resource)
            .into_iter()
            .map(|n| n.value.into_owned())
            .collect()
    }

    fn types(expr: &str, resource: &Value) -> Vec<Option<&'static str>> {
        let e = Expr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        e.eval(resource).into_iter().map(|n| n.type_name).collect()
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient", "id": "p", "active": true, "gender": "female",
            "name": [{"family": "Doe", "given": ["a", "b"]}, {"given": ["c", null], "_given": [null, {"id": "x"}]}],
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
        assert_eq!(
            values("Patient.name.given", &p),
            [json!("a"), json!("b"), json!("c")]
        );
        assert_eq!(values("Patient.name.family", &p), [json!("Doe")]);
        assert_eq!(values("name.given.first()", &p), [json!("a")]);
        assert_eq!(values("Patient.`name`.given", &p).len(), 3);
        assert!(values("Patient.gender.code", &p).is_empty());
        assert!(values("Patient.name._given", &p).is_empty());
        assert!(values("Patient.birthDate", &p).is_empty());
        let borrowed = Expr::parse("Patient.gender").unwrap().eval(&p);
        assert!(matches!(borrowed[0].value, Cow::Borrowed(v) if std::ptr::eq(v, &p["gender"])));
        assert_eq!(types("Patient", &p), [Some("Patient")]);
    }

    #[test]
    fn choice_types_and_type_filters() {
        let obs = json!({
            "resourceType": "Observation",
            "valueQuantity": {"value": 5, "unit": "mg"},
            "_valueString": {"id": "not-a-value"},
            "effectiveDateTime": "2020-01-01",
            "code": {"text": "c"}
        });
        assert_eq!(types("Observation.value", &obs), [Some("Quantity")]);
        assert_eq!(types("Observation.effective", &obs), [Some("dateTime")]);
        for e in [
            "Observation.value as Quantity",
            "Observation.value.as(Quantity)",
            "Observation.value.ofType(Quantity)",
            "(Observation.value as FHIR.Quantity).value.first()",
            "Observation.effective.as(DateTime)",
            "Observation.effective as System.DateTime",
        ] {
            assert_eq!(values(e, &obs).len(), 1, "{e}");
        }
        assert_eq!(
            values("(Observation.value as Quantity).value", &obs),
            [json!(5)]
        );
        assert!(values("Observation.value as CodeableConcept", &obs).is_empty());
        assert!(values("Observation.effective.as(Period)", &obs).is_empty());
        assert!(values("(Observation.value as CodeableConcept).text", &obs).is_empty());
        assert_eq!(values("Observation.value is Quantity", &obs), [json!(true)]);
        assert_eq!(values("Observation.value.is(Range)", &obs), [json!(false)]);

        let cc = json!({"resourceType": "Observation", "valueCodeableConcept": {"text": "pos"}});
        assert_eq!(
            values("(Observation.value as CodeableConcept).text", &cc),
            [json!("pos")]
        );
        let age = json!({"resourceType": "Condition", "onsetAge": {"value": 40}});
        assert_eq!(types("Condition.onset.as(Age)", &age), [Some("Age")]);
        assert!(values("Condition.onset.as(Period)", &age).is_empty());
    }

    #[test]
    fn unknown_types_follow_the_json_kind() {
        let p = patient();
        assert_eq!(values("Patient.active as boolean", &p), [json!(true)]);
        assert!(values("Patient.active as string", &p).is_empty());
        assert_eq!(values("Patient.gender as code", &p).len(), 1);
        assert!(values("Patient.gender as integer", &p).is_empty());
        assert_eq!(values("Patient.name as HumanName", &p).len(), 2);
        assert!(values("Patient.name as string", &p).is_empty());
        assert_eq!(values("Patient is DomainResource", &p), [json!(true)]);
        assert_eq!(values("Patient is Observation", &p), [json!(false)]);
        assert!(
            values("Patient.name is HumanName", &p).is_empty(),
            "two items"
        );
        assert_eq!(values("1.5 is integer", &p), [json!(false)]);
        assert_eq!(values("1.5 is decimal", &p), [json!(true)]);
    }

    #[test]
    fn resolve_types_references_by_target() {
        let prov = json!({
            "resourceType": "Provenance",
            "contained": [{"resourceType": "Patient", "id": "cp"}, {"resourceType": "Organization", "id": "co"}],
            "target": [
                {"reference": "Patient/1"},
                {"reference": "http://example.org/fhir/Patient/2"},
                {"reference": "Patient/3/_history/2"},
                {"type": "Patient", "identifier": {"value": "4"}},
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
        let got = values("Provenance.target.where(resolve() is Patient)", &prov);
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(
            got[3],
            json!({"type": "Patient", "identifier": {"value": "4"}})
        );
        assert_eq!(got[4], json!({"reference": "#cp"}));
        assert_eq!(got[5], json!("Patient/7"));
        assert_eq!(
            types("Provenance.target.resolve()", &prov),
            [
                Some("Patient"),
                Some("Patient"),
                Some("Patient"),
                Some("Patient"),
                Some("Patient"),
                Some("Practitioner"),
                Some("Organization"),
                Some("Patient"),
            ]
        );
        let absolute_type = json!({"resourceType": "Observation", "subject": {"type": "http://hl7.org/fhir/StructureDefinition/Group"}});
        assert_eq!(
            types("Observation.subject.resolve()", &absolute_type),
            [Some("Group")]
        );
    }

    #[test]
    fn where_on_strings_and_extensions() {
        let p = patient();
        assert_eq!(
            values("Patient.telecom.where(system='email').value", &p),
            [json!("a@x.org"), json!("b@x.org")]
        );
        assert_eq!(
            values("Patient.telecom.where(system = 'phone').value", &p),
            [json!("555")]
        );
        assert!(values("Patient.telecom.where(system='fax')", &p).is_empty());
        assert_eq!(
            values("Patient.name.given.where($this = 'b')", &p),
            [json!("b")]
        );
        assert_eq!(
            values("Patient.name.where(given.exists($this = 'c')).given", &p),
            [json!("c")]
        );
        assert_eq!(
            values("Patient.extension('http://x/race').value", &p),
            [json!({"code": "r"})]
        );
        assert_eq!(
            types("Patient.extension('http://x/other').value", &p),
            [Some("string")]
        );
        assert!(values("Patient.extension('http://x/none')", &p).is_empty());
        let linked = json!({"resourceType": "PlanDefinition", "relatedArtifact": [
            {"type": "predecessor", "resource": "http://x/a"},
            {"type": "successor", "resource": "http://x/b"}
        ]});
        assert_eq!(
            values(
                "PlanDefinition.relatedArtifact.where(type='successor').resource",
                &linked
            ),
            [json!("http://x/b")]
        );
    }

    #[test]
    fn deceased_expression() {
        let e = Expr::parse("Patient.deceased.exists() and Patient.deceased != false").unwrap();
        let run = |extra: Value| {
            let mut p = json!({"resourceType": "Patient"});
            if let (Value::Object(p), Value::Object(extra)) = (&mut p, extra) {
                p.extend(extra);
            }
            let out: Vec<Value> = e
                .eval(&p)
                .into_iter()
                .map(|n| n.value.into_owned())
                .collect();
            out
        };
        assert_eq!(run(json!({"deceasedBoolean": true})), [json!(true)]);
        assert_eq!(run(json!({"deceasedBoolean": false})), [json!(false)]);
        assert_eq!(
            run(json!({"deceasedDateTime": "2020-02-02"})),
            [json!(true)]
        );
        assert_eq!(run(json!({})), [json!(false)]);
    }

    #[test]
    fn logic_is_three_valued() {
        let p = patient();
        let one = |e: &str| values(e, &p);
        assert_eq!(one("true and {}"), Vec::<Value>::new());
        assert_eq!(one("false and {}"), [json!(false)]);
        assert_eq!(one("true or {}"), [json!(true)]);
        assert_eq!(one("false or {}"), Vec::<Value>::new());
        assert_eq!(one("true xor false"), [json!(true)]);
        assert_eq!(one("{} implies false"), Vec::<Value>::new());
        assert_eq!(one("false implies {}"), [json!(true)]);
        assert_eq!(one("Patient.active.not()"), [json!(false)]);
        assert_eq!(one("Patient.birthDate.empty()"), [json!(true)]);
        assert_eq!(one("Patient.birthDate = 'x'"), Vec::<Value>::new());
        assert_eq!(
            one("Patient.gender = 'female' and Patient.active = true"),
            [json!(true)]
        );
        assert_eq!(
            one("Patient.gender != 'female' or Patient.active"),
            [json!(true)]
        );
        assert_eq!(one("1 = 1.0"), [json!(true)]);
        assert_eq!(one("'it\\'s' = 'it' "), [json!(false)]);
        assert_eq!(one("'it\\'s'"), [json!("it's")]);
        assert_eq!(
            one("Patient.name.given = Patient.name.given"),
            [json!(true)]
        );
    }

    #[test]
    fn indexer_union_and_other_roots() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Composition", "id": "c"}},
            {"resource": {"resourceType": "Patient", "id": "p"}}
        ]});
        assert_eq!(values("Bundle.entry[0].resource.id", &bundle), [json!("c")]);
        assert_eq!(
            types("Bundle.entry[1].resource", &bundle),
            [Some("Patient")]
        );
        assert!(values("Bundle.entry[2].resource", &bundle).is_empty());
        assert!(values("Bundle.entry[-1]", &bundle).is_empty());
        assert_eq!(
            values("Bundle.entry.resource.ofType(Patient).id", &bundle),
            [json!("p")]
        );

        let p = patient();
        assert_eq!(
            values("Patient.name.given | Patient.name.given", &p).len(),
            3
        );
        assert_eq!(
            values("Patient.name | Patient.name.first() | Patient.telecom", &p).len(),
            5
        );
        assert_eq!(values("'a' | 'a' | 'b'", &p), [json!("a"), json!("b")]);
        assert_eq!(
            values("Observation.code | Patient.gender", &p),
            [json!("female")]
        );
        assert!(values("Observation.code", &p).is_empty());
        assert_eq!(values("Resource.id", &p), [json!("p")]);
        assert_eq!(values("DomainResource.gender", &p), [json!("female")]);
        assert_eq!(values("%resource.id", &p), [json!("p")]);
        // Union binds tighter than `=`.
        assert_eq!(
            values("Patient.gender | 'x' = 'female' | 'x'", &p),
            [json!(true)]
        );
    }

    #[test]
    fn eval_on_component_focus() {
        let obs = json!({"resourceType": "Observation", "id": "o", "component": [
            {"code": {"text": "sys"}, "valueQuantity": {"value": 120}},
            {"code": {"text": "note"}, "valueString": "x"}
        ]});
        let comps = Expr::parse("Observation.component").unwrap().eval(&obs);
        assert_eq!(comps.len(), 2);
        let code = Expr::parse("code").unwrap();
        let qty = Expr::parse("value.as(Quantity)").unwrap();
        let vq = Expr::parse("valueQuantity").unwrap();
        let root_id = Expr::parse("%resource.id").unwrap();
        assert_eq!(code.eval_on(&obs, &comps[0])[0].value["text"], json!("sys"));
        assert_eq!(qty.eval_on(&obs, &comps[0])[0].value["value"], json!(120));
        assert_eq!(qty.eval_on(&obs, &comps[0])[0].type_name, Some("Quantity"));
        assert_eq!(vq.eval_on(&obs, &comps[0]).len(), 1);
        assert!(qty.eval_on(&obs, &comps[1]).is_empty());
        assert!(vq.eval_on(&obs, &comps[1]).is_empty());
        assert_eq!(
            root_id.eval_on(&obs, &comps[1])[0].value.as_ref(),
            &json!("o")
        );
        // An owned focus works too (its results are owned copies).
        let owned = Node {
            value: Cow::Owned(json!({"code": {"text": "t"}})),
            type_name: None,
        };
        assert_eq!(code.eval_on(&obs, &owned)[0].value["text"], json!("t"));
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
            "-a",
            "99999999999999999999",
            "a | | b",
            "Patient.name.where(",
            deep.as_str(),
            long.as_str(),
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
            "Patient.name.given",
            "Account.subject.where(resolve() is Patient)",
            "(ActivityDefinition.useContext.value as Quantity) | (ActivityDefinition.useContext.value as Range)",
            "Condition.onset.as(Age) | Condition.onset.as(Range)",
            "Observation.value.as(DateTime) | value.as(Period)",
            "CarePlan.activity.detail.scheduled.as(Timing)",
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
        for _ in 0..1000 {
            deep = json!({"resourceType": "Patient", "name": [deep], "contained": [deep.clone()]});
            if deep.to_string().len() > 1_000_000 {
                deep = json!({"name": [[deep]]});
            }
        }
        let odd = [
            json!({"resourceType": "Patient", "name": [[{"given": ["a"]}], "x", 5, null, {"given": [[["b"]]]}]}),
            json!({"resourceType": "Patient", "name": "str", "telecom": {"system": ["email"]}}),
            json!({"resourceType": ["Patient"], "contained": "x", "subject": {"reference": 5, "type": {}}}),
            json!({"resourceType": "Patient", "contained": [5, {"id": 3}], "link": [{"other": {"reference": "#"}}]}),
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
        assert_eq!(values("Patient.name.given", &odd[0]), [json!(["b"])]);
        assert_eq!(
            types("Patient.link.other.resolve()", &odd[3]),
            [Some("Patient")]
        );
    }
}

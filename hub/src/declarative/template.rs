//! ApplicationSet templates: the default fasttemplate syntax (`{{name}}`, unknown parameters
//! left as written, as Argo CD does) and an honest subset of Go's text/template with a few
//! Sprig functions for `goTemplate: true`.
//!
//! The Go subset: field chains (`.a.b`, `$.a`), string/number/bool literals, parentheses,
//! pipelines, `if`/`else if`/`else`/`end`, comments, trim markers, and the functions listed in
//! [`GO_FUNCTIONS`]. Anything else is refused with an error that names it (`sprig function
//! "sha256sum" is not supported`), never rendered differently from Argo CD. A value that is
//! an object or a list cannot be printed into a string field (Go would print `map[…]`).
//! It must not read files, the environment or the network.

use serde_json::{Map, Value};

/// The functions the Go subset implements; every other name is refused.
pub const GO_FUNCTIONS: &[&str] = &[
    "and",
    "contains",
    "default",
    "eq",
    "hasPrefix",
    "hasSuffix",
    "index",
    "len",
    "lower",
    "ne",
    "normalize",
    "not",
    "or",
    "printf",
    "quote",
    "replace",
    "squote",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "trunc",
    "upper",
];

/// Functions of Go's text/template itself (the rest of the names come from Sprig).
const GO_BUILTINS: &[&str] = &[
    "call", "html", "js", "print", "println", "slice", "urlquery", "lt", "le", "gt", "ge",
];

/// Template syntax of one ApplicationSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// fasttemplate: `{{key}}` replaced from flat string parameters.
    Fast,
    /// Go text/template (`goTemplate: true`); `missingkey=error` makes a missing key an error.
    Go { missing_key_error: bool },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("sprig function {0:?} is not supported")]
    UnsupportedFunction(String),
    #[error("template function {0:?} is not supported")]
    UnsupportedBuiltin(String),
    #[error("template action {0:?} is not supported")]
    UnsupportedAction(String),
    #[error("parse template {template:?}: {reason}")]
    Parse { template: String, reason: String },
    #[error("execute template {template:?}: {reason}")]
    Execute { template: String, reason: String },
}

/// A template error with the field of the Application template it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("render {field}: {source}")]
pub struct RenderError {
    pub field: String,
    #[source]
    pub source: TemplateError,
}

/// Renders every string (and every object key) of `template` with `params`; `field` is the
/// path of `template` itself, used to name the failing field.
pub fn render_value(
    template: &Value,
    params: &Map<String, Value>,
    syntax: Syntax,
    field: &str,
) -> Result<Value, RenderError> {
    let wrap = |source| RenderError {
        field: field.to_owned(),
        source,
    };
    Ok(match template {
        Value::String(text) => Value::String(render_str(text, params, syntax).map_err(wrap)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| render_value(item, params, syntax, &format!("{field}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let key = render_str(key, params, syntax).map_err(wrap)?;
                let value = render_value(value, params, syntax, &format!("{field}.{key}"))?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Renders one string.
pub fn render_str(
    text: &str,
    params: &Map<String, Value>,
    syntax: Syntax,
) -> Result<String, TemplateError> {
    match syntax {
        Syntax::Fast => render_fast(text, params),
        Syntax::Go { missing_key_error } => render_go(text, params, missing_key_error),
    }
}

/// fasttemplate as Argo CD calls it: tags are trimmed, unknown tags are written back as they
/// were, and a `{{` without its `}}` is an error.
pub fn render_fast(text: &str, params: &Map<String, Value>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Parse {
                template: text.to_owned(),
                reason: "cannot find end tag \"}}\"".to_owned(),
            });
        };
        let tag = &after[..end];
        match params.get(tag.trim()) {
            Some(value) if !tag.trim().is_empty() => out.push_str(&scalar_text(value)),
            _ => {
                out.push_str("{{");
                out.push_str(tag);
                out.push_str("}}");
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The text of a scalar parameter as fasttemplate parameters are strings.
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Go text/template, the subset described in the module documentation.
pub fn render_go(
    text: &str,
    params: &Map<String, Value>,
    missing_key_error: bool,
) -> Result<String, TemplateError> {
    if !text.contains("{{") {
        return Ok(text.to_owned());
    }
    let parse_error = |reason: String| TemplateError::Parse {
        template: text.to_owned(),
        reason,
    };
    let pieces = split_actions(text).map_err(parse_error)?;
    let mut parser = Parser {
        pieces: pieces.into_iter(),
    };
    let (nodes, stop) = parser.nodes()?;
    if let Some(stop) = stop {
        return Err(parse_error(format!("unexpected {{{{{stop}}}}}")));
    }
    let mut out = String::new();
    let evaluator = Evaluator {
        root: params,
        missing_key_error,
    };
    evaluator
        .nodes(&nodes, &mut out)
        .map_err(|error| match error {
            EvalError::Template(error) => error,
            EvalError::Reason(reason) => TemplateError::Execute {
                template: text.to_owned(),
                reason,
            },
        })?;
    Ok(out)
}

enum Piece {
    Text(String),
    Action(String),
}

/// Splits text into literal text and the inside of actions, applying `{{- ` and ` -}}` trim
/// markers and dropping comments.
fn split_actions(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut literal = &rest[..start];
        if trim_next {
            literal = literal.trim_start();
        }
        let mut inner_start = start + 2;
        let trim_left = rest[inner_start..].starts_with("- ")
            || rest[inner_start..].starts_with("-\t")
            || rest[inner_start..].starts_with("-\n");
        if trim_left {
            literal = literal.trim_end();
            inner_start += 1;
        }
        pieces.push(Piece::Text(literal.to_owned()));
        let end = find_action_end(&rest[inner_start..])
            .ok_or_else(|| "unclosed action".to_owned())?
            + inner_start;
        let mut inner = &rest[inner_start..end];
        trim_next = inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let inner = inner.trim();
        if inner.starts_with("/*") {
            if !inner.ends_with("*/") {
                return Err("unclosed comment".to_owned());
            }
        } else {
            pieces.push(Piece::Action(inner.to_owned()));
        }
        rest = &rest[end + 2..];
    }
    let literal = if trim_next { rest.trim_start() } else { rest };
    pieces.push(Piece::Text(literal.to_owned()));
    Ok(pieces)
}

/// The byte offset of the `}}` closing an action, skipping string literals.
fn find_action_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
}

type Pipeline = Vec<Command>;
type Command = Vec<Arg>;

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.a.b` (empty: `.`) or `$.a.b`, both from the root parameters.
    Field(Vec<String>),
    Literal(Value),
    Function(String),
    Sub(Pipeline),
}

struct Parser<I: Iterator<Item = Piece>> {
    pieces: I,
}

impl<I: Iterator<Item = Piece>> Parser<I> {
    /// Parses nodes until the end or a control word (`else…`, `end`), which is returned.
    fn nodes(&mut self) -> Result<(Vec<Node>, Option<String>), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let action = match piece {
                Piece::Text(text) => {
                    if !text.is_empty() {
                        nodes.push(Node::Text(text));
                    }
                    continue;
                }
                Piece::Action(action) => action,
            };
            let keyword = action
                .split(|c: char| c.is_whitespace() || c == '(')
                .next()
                .unwrap_or_default();
            match keyword {
                "end" | "else" => return Ok((nodes, Some(action))),
                "if" => nodes.push(self.if_node(&action["if".len()..])?),
                "range" | "with" | "define" | "template" | "block" | "break" | "continue" => {
                    return Err(TemplateError::UnsupportedAction(keyword.to_owned()));
                }
                _ => nodes.push(Node::Action(parse_pipeline(&action)?)),
            }
        }
        Ok((nodes, None))
    }

    fn if_node(&mut self, condition: &str) -> Result<Node, TemplateError> {
        let mut branches = Vec::new();
        let mut condition = parse_pipeline(condition)?;
        loop {
            let (body, stop) = self.nodes()?;
            let stop =
                stop.ok_or_else(|| parse_error(condition_text(&condition), "missing {{end}}"))?;
            branches.push((condition, body));
            if stop == "end" {
                return Ok(Node::If {
                    branches,
                    otherwise: Vec::new(),
                });
            }
            let rest = stop["else".len()..].trim();
            if rest.is_empty() {
                let (otherwise, stop) = self.nodes()?;
                if stop.as_deref() != Some("end") {
                    return Err(parse_error(String::new(), "missing {{end}} after {{else}}"));
                }
                return Ok(Node::If {
                    branches,
                    otherwise,
                });
            }
            let Some(next) = rest.strip_prefix("if") else {
                return Err(TemplateError::UnsupportedAction(format!("else {rest}")));
            };
            condition = parse_pipeline(next)?;
        }
    }
}

fn condition_text(pipeline: &Pipeline) -> String {
    format!("{pipeline:?}")
}

fn parse_error(template: String, reason: &str) -> TemplateError {
    TemplateError::Parse {
        template,
        reason: reason.to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(Vec<String>),
    Ident(String),
    Literal(Value),
    Open,
    Close,
    Pipe,
}

fn tokenize(text: &str) -> Result<Vec<Token>, TemplateError> {
    let err = |reason: String| TemplateError::Parse {
        template: format!("{{{{{text}}}}}"),
        reason,
    };
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '|' => {
                tokens.push(Token::Pipe);
                i += 1;
            }
            '.' | '$' => {
                if c == '$' {
                    i += 1;
                    if chars.get(i).is_some_and(|&c| is_ident(c)) {
                        return Err(TemplateError::UnsupportedAction("variables".to_owned()));
                    }
                }
                let mut fields = Vec::new();
                while chars.get(i) == Some(&'.') {
                    i += 1;
                    let start = i;
                    while i < chars.len() && is_ident(chars[i]) {
                        i += 1;
                    }
                    if start == i {
                        if chars
                            .get(i)
                            .is_some_and(|c| !c.is_whitespace() && *c != ')')
                        {
                            return Err(err(format!("bad character {:?}", chars[i])));
                        }
                        break;
                    }
                    fields.push(chars[start..i].iter().collect());
                }
                if chars
                    .get(i)
                    .is_some_and(|&c| !c.is_whitespace() && c != ')' && c != '|')
                {
                    return Err(err(format!("bad character {:?} in field name", chars[i])));
                }
                tokens.push(Token::Field(fields));
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err("unterminated string".to_owned())),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some('\\') => s.push('\\'),
                                Some('"') => s.push('"'),
                                other => {
                                    return Err(err(format!("unsupported escape {other:?}")));
                                }
                            }
                        }
                        Some(&c) => s.push(c),
                    }
                    i += 1;
                }
                i += 1;
                tokens.push(Token::Literal(Value::String(s)));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| err("unterminated raw string".to_owned()))?;
                tokens.push(Token::Literal(Value::String(
                    chars[start..start + end].iter().collect(),
                )));
                i = start + end + 1;
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let value = if let Ok(n) = word.parse::<i64>() {
                    Value::from(n)
                } else if let Ok(f) = word.parse::<f64>() {
                    Value::from(f)
                } else {
                    return Err(err(format!("bad number {word:?}")));
                };
                tokens.push(Token::Literal(value));
            }
            c if is_ident(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                tokens.push(match word.as_str() {
                    "true" => Token::Literal(Value::Bool(true)),
                    "false" => Token::Literal(Value::Bool(false)),
                    "nil" => Token::Literal(Value::Null),
                    _ => Token::Ident(word),
                });
            }
            other => return Err(err(format!("bad character {other:?}"))),
        }
    }
    Ok(tokens)
}

fn parse_pipeline(text: &str) -> Result<Pipeline, TemplateError> {
    let tokens = tokenize(text)?;
    let mut position = 0;
    let pipeline = pipeline_of(&tokens, &mut position, text)?;
    if position != tokens.len() {
        return Err(parse_error(
            format!("{{{{{text}}}}}"),
            "unexpected \")\" in pipeline",
        ));
    }
    Ok(pipeline)
}

fn pipeline_of(
    tokens: &[Token],
    position: &mut usize,
    text: &str,
) -> Result<Pipeline, TemplateError> {
    let mut pipeline = Vec::new();
    let mut command = Vec::new();
    while let Some(token) = tokens.get(*position) {
        *position += 1;
        match token {
            Token::Close => {
                *position -= 1;
                break;
            }
            Token::Pipe => pipeline.push(std::mem::take(&mut command)),
            Token::Open => {
                let sub = pipeline_of(tokens, position, text)?;
                if tokens.get(*position) != Some(&Token::Close) {
                    return Err(parse_error(
                        format!("{{{{{text}}}}}"),
                        "unclosed left paren",
                    ));
                }
                *position += 1;
                command.push(Arg::Sub(sub));
            }
            Token::Field(fields) => command.push(Arg::Field(fields.clone())),
            Token::Literal(value) => command.push(Arg::Literal(value.clone())),
            Token::Ident(name) => command.push(Arg::Function(name.clone())),
        }
    }
    pipeline.push(command);
    if pipeline.iter().any(Vec::is_empty) {
        return Err(parse_error(
            format!("{{{{{text}}}}}"),
            "missing value for command",
        ));
    }
    // Refuse unknown functions when parsing, so the error names the function even on a
    // branch that would not run.
    for command in &pipeline {
        for arg in command {
            if let Arg::Function(name) = arg {
                check_function(name)?;
            }
        }
    }
    Ok(pipeline)
}

fn check_function(name: &str) -> Result<(), TemplateError> {
    if GO_FUNCTIONS.contains(&name) {
        Ok(())
    } else if GO_BUILTINS.contains(&name) {
        Err(TemplateError::UnsupportedBuiltin(name.to_owned()))
    } else {
        Err(TemplateError::UnsupportedFunction(name.to_owned()))
    }
}

enum EvalError {
    Template(TemplateError),
    Reason(String),
}

impl From<String> for EvalError {
    fn from(reason: String) -> Self {
        EvalError::Reason(reason)
    }
}

/// A value during evaluation; `None` is Go's "no value" (a missing map key).
type Val = Option<Value>;

struct Evaluator<'a> {
    root: &'a Map<String, Value>,
    missing_key_error: bool,
}

impl Evaluator<'_> {
    fn nodes(&self, nodes: &[Node], out: &mut String) -> Result<(), EvalError> {
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Action(pipeline) => {
                    let value = self.pipeline(pipeline)?;
                    out.push_str(&print(&value)?);
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mut taken = false;
                    for (condition, body) in branches {
                        if truthy(&self.pipeline(condition)?) {
                            self.nodes(body, out)?;
                            taken = true;
                            break;
                        }
                    }
                    if !taken {
                        self.nodes(otherwise, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pipeline(&self, pipeline: &Pipeline) -> Result<Val, EvalError> {
        let mut previous: Option<Val> = None;
        for command in pipeline {
            previous = Some(self.command(command, previous)?);
        }
        Ok(previous.flatten())
    }

    fn command(&self, command: &Command, previous: Option<Val>) -> Result<Val, EvalError> {
        let (first, rest) = command
            .split_first()
            .ok_or_else(|| "empty command".to_owned())?;
        if let Arg::Function(name) = first {
            let mut args = rest
                .iter()
                .map(|arg| self.arg(arg))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(previous) = previous {
                args.push(previous);
            }
            return call(name, args);
        }
        if !rest.is_empty() || previous.is_some() {
            return Err(format!("can't give argument to non-function {first:?}").into());
        }
        self.arg(first)
    }

    fn arg(&self, arg: &Arg) -> Result<Val, EvalError> {
        match arg {
            Arg::Literal(value) => Ok(Some(value.clone())),
            Arg::Sub(pipeline) => self.pipeline(pipeline),
            Arg::Function(name) => call(name, Vec::new()),
            Arg::Field(fields) => {
                let mut current = Value::Object(self.root.clone());
                for (depth, field) in fields.iter().enumerate() {
                    let walked = format!(".{}", fields[..depth].join("."));
                    let Value::Object(map) = &current else {
                        return Err(format!("can't evaluate field {field} in {walked}").into());
                    };
                    match map.get(field) {
                        Some(value) => current = value.clone(),
                        None if self.missing_key_error => {
                            return Err(format!(
                                "map has no entry for key {field:?} (at .{})",
                                fields[..=depth].join(".")
                            )
                            .into());
                        }
                        None if depth + 1 == fields.len() => return Ok(None),
                        None => {
                            return Err(format!(
                                "nil pointer evaluating .{}",
                                fields[..=depth + 1].join(".")
                            )
                            .into());
                        }
                    }
                }
                Ok(Some(current))
            }
        }
    }
}

/// Go's printing of a value into the output, refusing objects and lists.
fn print(value: &Val) -> Result<String, EvalError> {
    match value {
        None | Some(Value::Null) => Ok("<no value>".to_owned()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Object(map)) => Err(format!(
            "the value is an object (keys {}), not a string; name one of its fields",
            map.keys().cloned().collect::<Vec<_>>().join(", ")
        )
        .into()),
        Some(Value::Array(_)) => Err(
            "the value is a list, not a string; use index to pick an element"
                .to_owned()
                .into(),
        ),
    }
}

/// Go's truth: false, 0, nil, and empty strings, lists and maps are false.
fn truthy(value: &Val) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn text_arg(name: &str, value: &Val) -> Result<String, EvalError> {
    match value {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        _ => Err(format!("{name}: expected a string, got {}", describe(value)).into()),
    }
}

fn describe(value: &Val) -> &'static str {
    match value {
        None | Some(Value::Null) => "no value",
        Some(Value::String(_)) => "a string",
        Some(Value::Number(_)) => "a number",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Array(_)) => "a list",
        Some(Value::Object(_)) => "an object",
    }
}

fn arity(name: &str, args: &[Val], count: usize) -> Result<(), EvalError> {
    if args.len() == count {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {count} got {}",
            args.len()
        )
        .into())
    }
}

fn call(name: &str, args: Vec<Val>) -> Result<Val, EvalError> {
    check_function(name).map_err(EvalError::Template)?;
    let text = |s: String| Ok(Some(Value::String(s)));
    match name {
        "lower" | "upper" | "trim" | "normalize" => {
            arity(name, &args, 1)?;
            let s = text_arg(name, &args[0])?;
            text(match name {
                "lower" => s.to_lowercase(),
                "upper" => s.to_uppercase(),
                "trim" => s.trim().to_owned(),
                _ => normalize(&s),
            })
        }
        "trimPrefix" | "trimSuffix" | "contains" | "hasPrefix" | "hasSuffix" => {
            arity(name, &args, 2)?;
            let affix = text_arg(name, &args[0])?;
            let s = text_arg(name, &args[1])?;
            match name {
                "trimPrefix" => text(s.strip_prefix(affix.as_str()).unwrap_or(&s).to_owned()),
                "trimSuffix" => text(s.strip_suffix(affix.as_str()).unwrap_or(&s).to_owned()),
                "contains" => Ok(Some(Value::Bool(s.contains(affix.as_str())))),
                "hasPrefix" => Ok(Some(Value::Bool(s.starts_with(affix.as_str())))),
                _ => Ok(Some(Value::Bool(s.ends_with(affix.as_str())))),
            }
        }
        "replace" => {
            arity(name, &args, 3)?;
            let old = text_arg(name, &args[0])?;
            let new = text_arg(name, &args[1])?;
            text(text_arg(name, &args[2])?.replace(&old, &new))
        }
        "trunc" => {
            arity(name, &args, 2)?;
            let n = args[0]
                .as_ref()
                .and_then(Value::as_i64)
                .ok_or_else(|| "trunc: expected a number of characters".to_owned())?;
            let chars: Vec<char> = text_arg(name, &args[1])?.chars().collect();
            let len = chars.len() as i64;
            let kept: String = if n < 0 && len + n > 0 {
                chars[(len + n) as usize..].iter().collect()
            } else if n >= 0 && len > n {
                chars[..n as usize].iter().collect()
            } else {
                chars.iter().collect()
            };
            text(kept)
        }
        "quote" | "squote" => {
            let quoted: Vec<String> = args
                .iter()
                .filter(|a| !matches!(a, None | Some(Value::Null)))
                .map(|a| {
                    let s = match a {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    if name == "quote" {
                        Value::String(s).to_string()
                    } else {
                        format!("'{s}'")
                    }
                })
                .collect();
            text(quoted.join(" "))
        }
        "default" => {
            if args.is_empty() || args.len() > 2 {
                return Err(format!("wrong number of args for default: got {}", args.len()).into());
            }
            let given = args.get(1).cloned().flatten();
            if truthy(&given) {
                Ok(given)
            } else {
                Ok(args[0].clone())
            }
        }
        "index" => {
            let mut args = args.into_iter();
            let mut current = args
                .next()
                .ok_or_else(|| "wrong number of args for index".to_owned())?;
            for key in args {
                current = match (&current, &key) {
                    (Some(Value::Object(map)), Some(Value::String(k))) => map.get(k).cloned(),
                    (Some(Value::Array(items)), Some(Value::Number(n))) => {
                        let i = n
                            .as_u64()
                            .ok_or_else(|| format!("index {n} out of range"))?;
                        Some(
                            items
                                .get(i as usize)
                                .cloned()
                                .ok_or_else(|| format!("index {i} out of range"))?,
                        )
                    }
                    (None | Some(Value::Null), _) => {
                        return Err("index of untyped nil".to_owned().into());
                    }
                    (item, key) => {
                        return Err(format!(
                            "can't index {} with {}",
                            describe(item),
                            describe(key)
                        )
                        .into());
                    }
                };
            }
            Ok(current)
        }
        "len" => {
            arity(name, &args, 1)?;
            let n = match &args[0] {
                Some(Value::String(s)) => s.len(),
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(o)) => o.len(),
                other => return Err(format!("len of {}", describe(other)).into()),
            };
            Ok(Some(Value::from(n)))
        }
        "eq" | "ne" => {
            if args.len() < 2 {
                return Err(format!("missing argument for {name}").into());
            }
            let first = &args[0];
            let equal = args[1..].iter().any(|other| other == first);
            Ok(Some(Value::Bool(if name == "eq" { equal } else { !equal })))
        }
        "not" => {
            arity(name, &args, 1)?;
            Ok(Some(Value::Bool(!truthy(&args[0]))))
        }
        "and" | "or" => {
            let want = name == "or";
            let mut last = None;
            for arg in args {
                if truthy(&arg) == want {
                    return Ok(arg);
                }
                last = arg;
            }
            Ok(last)
        }
        "printf" => {
            let mut args = args.into_iter();
            let format = text_arg(
                name,
                &args
                    .next()
                    .ok_or_else(|| "wrong number of args for printf".to_owned())?,
            )?;
            text(printf(&format, args.collect())?)
        }
        _ => Err(EvalError::Template(TemplateError::UnsupportedFunction(
            name.to_owned(),
        ))),
    }
}

/// `printf` with the verbs `%s`, `%v`, `%d`, `%q` and `%%`.
fn printf(format: &str, args: Vec<Val>) -> Result<String, EvalError> {
    let mut out = String::new();
    let mut args = args.into_iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars
            .next()
            .ok_or_else(|| "printf: format ends with %".to_owned())?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .next()
            .ok_or_else(|| format!("printf: missing argument for %{verb}"))?;
        match verb {
            's' | 'v' | 'd' => out.push_str(&print(&arg)?),
            'q' => out.push_str(&Value::String(print(&arg)?).to_string()),
            other => return Err(format!("printf: verb %{other} is not supported").into()),
        }
    }
    Ok(out)
}

/// Argo CD's `normalize` and `*Normalized` parameters: lowercase, every character other than
/// `a-z`, `0-9`, `-` and `.` becomes `-`, at most 253 characters, then `-` and `.` trimmed from
/// both ends.
pub fn normalize(name: &str) -> String {
    let mapped: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    mapped.trim_matches(['-', '.']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "name": "Engineering_Dev",
            "server": "https://1.2.3.4",
            "metadata": {"labels": {"env": "prod", "team-name": "a"}},
            "path": {"path": "apps/web", "basename": "web", "segments": ["apps", "web"]},
            "replicas": 3,
            "enabled": true,
            "empty": "",
        }) else {
            unreachable!()
        };
        map
    }

    fn check(template: &str, expected: &str) {
        assert_eq!(
            render_go(template, &params(), true).as_deref(),
            Ok(expected),
            "{template}"
        );
    }

    fn check_err(template: &str, missing_key_error: bool, expected: &str) {
        let err = render_go(template, &params(), missing_key_error).expect_err(template);
        assert!(err.to_string().contains(expected), "{template}: {err}");
    }

    #[test]
    fn go_fields_index_and_literals() {
        check("{{.name}}-guestbook", "Engineering_Dev-guestbook");
        check("{{ .metadata.labels.env }}", "prod");
        check(r#"{{index .metadata.labels "team-name"}}"#, "a");
        check("{{index .path.segments 1}}", "web");
        check("{{ $.path.basename }}", "web");
        check("{{.replicas}}/{{.enabled}}", "3/true");
        check("no actions", "no actions");
        check("{{/* a comment */}}x", "x");
        check("a  {{- .path.basename -}}  b", "awebb");
    }

    #[test]
    fn go_pipelines_and_sprig_subset() {
        check("{{.name | lower}}", "engineering_dev");
        check("{{ .name | normalize }}", "engineering-dev");
        check("{{ upper .path.basename }}", "WEB");
        check(r#"{{ .empty | default "x" }}"#, "x");
        check(r#"{{ default "x" .path.basename }}"#, "web");
        check(r#"{{ replace "_" "-" .name | lower }}"#, "engineering-dev");
        check("{{ trunc 3 .path.basename }}", "web");
        check("{{ .name | trunc 5 }}", "Engin");
        check("{{ .name | trunc -3 }}", "Dev");
        check("{{ quote .path.basename }}", "\"web\"");
        check("{{ squote .path.basename }}", "'web'");
        check(r#"{{ trimPrefix "apps/" .path.path }}"#, "web");
        check(r#"{{ printf "%s-%d" .path.basename .replicas }}"#, "web-3");
        check(r#"{{ (index .metadata.labels "env") | upper }}"#, "PROD");
        check("{{ len .path.segments }}", "2");
    }

    #[test]
    fn go_conditionals() {
        check(
            r#"{{if eq .metadata.labels.env "prod"}}p{{else}}np{{end}}"#,
            "p",
        );
        check(
            r#"{{if .empty}}a{{else if .enabled}}b{{else}}c{{end}}"#,
            "b",
        );
        check(r#"{{if not .enabled}}a{{end}}z"#, "z");
        check(r#"{{if and .enabled .empty}}a{{else}}b{{end}}"#, "b");
    }

    #[test]
    fn go_missing_keys() {
        check_err("{{.nope}}", true, r#"map has no entry for key "nope""#);
        check_err("{{.metadata.labels.region}}", true, r#"key "region""#);
        assert_eq!(
            render_go("{{.nope}}", &params(), false).as_deref(),
            Ok("<no value>")
        );
        check_err("{{.nope.deeper}}", false, "nil pointer evaluating .nope");
        // `index` never fails on a missing key, as in Go.
        check(
            r#"{{ index .metadata.labels "region" | default "eu" }}"#,
            "eu",
        );
    }

    #[test]
    fn go_refusals_name_what_is_refused() {
        check_err(
            "{{ .name | sha256sum }}",
            true,
            r#"sprig function "sha256sum" is not supported"#,
        );
        check_err(
            "{{ html .name }}",
            true,
            r#"template function "html" is not supported"#,
        );
        check_err(
            "{{range .path.segments}}x{{end}}",
            true,
            r#"template action "range" is not supported"#,
        );
        check_err("{{ $x := .name }}", true, "variable");
        check_err(
            "{{.path}}",
            true,
            "is an object (keys basename, path, segments)",
        );
        check_err("{{.path.segments}}", true, "is a list");
        check_err("{{.name", true, "unclosed action");
        check_err("{{if .name}}x", true, "missing {{end}}");
        check_err("{{ .metadata.labels.team-name }}", true, "bad character");
    }

    fn fast(template: &str, expected: &str) {
        let Value::Object(params) = json!({
            "name": "east",
            "metadata.labels.env": "prod",
            "path[0]": "apps",
        }) else {
            unreachable!()
        };
        assert_eq!(
            render_fast(template, &params).as_deref(),
            Ok(expected),
            "{template}"
        );
    }

    #[test]
    fn fasttemplate_replaces_known_and_keeps_unknown() {
        fast("{{name}}-guestbook", "east-guestbook");
        fast("{{ name }}", "east");
        fast("{{metadata.labels.env}}/{{path[0]}}", "prod/apps");
        fast("{{unknown}}-{{.name}}", "{{unknown}}-{{.name}}");
        fast("{{}}", "{{}}");
        fast("plain", "plain");
        assert!(render_fast("{{name", &Map::new()).is_err());
    }

    #[test]
    fn render_value_walks_every_string_and_names_the_field() {
        let Value::Object(params) = json!({"name": "east"}) else {
            unreachable!()
        };
        let template = json!({"metadata": {"name": "{{name}}", "labels": {"{{name}}": "x"}},
                              "spec": {"syncPolicy": {"automated": {"prune": true}},
                                       "list": ["{{name}}", 1]}});
        let rendered =
            render_value(&template, &params, Syntax::Fast, "spec.template").expect("renders");
        assert_eq!(
            rendered,
            json!({"metadata": {"name": "east", "labels": {"east": "x"}},
                   "spec": {"syncPolicy": {"automated": {"prune": true}}, "list": ["east", 1]}})
        );
        let err = render_value(
            &json!({"spec": {"source": {"path": "{{.nope}}"}}}),
            &params,
            Syntax::Go {
                missing_key_error: true,
            },
            "spec.template",
        )
        .expect_err("missing key");
        assert_eq!(err.field, "spec.template.spec.source.path");
    }

    #[test]
    fn normalize_follows_argo() {
        assert_eq!(normalize("My_Cluster.1"), "my-cluster.1");
        assert_eq!(normalize("-a-"), "a");
        assert_eq!(normalize(&"x".repeat(300)).len(), 253);
    }
}

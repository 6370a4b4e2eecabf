//! The rules people write over a call's arguments, judged without the CEL interpreter: a rule
//! made only of `mcp`'s plain names (`mcp.tool.name`, `mcp.tool.arguments.path`, …), string
//! and boolean literals, `has()` under the arguments, `==`, `!=`, `!`, `&&`, `||`,
//! `startsWith`, `endsWith`, `contains` and `in` a list of strings is also compiled to a
//! [`Fast`] form. Judging a call, the fast form answers when it can decide exactly as CEL would
//! — its operands are strings or booleans and nothing it reads is missing — and otherwise says
//! nothing, and the interpreter runs (its outcome, its errors, its failure log). So the fast
//! form never changes a verdict: it only skips setting up the interpreter's variables (the
//! arguments converted to CEL values) and resolving names, which was most of a judgement.
//!
//! Owns: the fast form and its evaluation. Must not touch: the interpreter's variables.

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Value, value::RawValue};

use crate::mcp::strict::Text;

/// The names of `mcp` a request has as text.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    Server,
    Member,
    Method,
    Tool,
    Prompt,
    Uri,
}

impl Part {
    fn named(path: &[&str]) -> Option<Part> {
        Some(match path {
            ["server"] => Part::Server,
            ["member"] => Part::Member,
            ["method"] => Part::Method,
            ["tool", "name"] => Part::Tool,
            ["prompt", "name"] => Part::Prompt,
            ["resource", "uri"] => Part::Uri,
            _ => return None,
        })
    }
}

/// What the fast form reads of a request.
pub trait Facts {
    fn part(&self, part: Part) -> &str;
    /// A call's arguments; `None` while listing or probing.
    fn arguments(&self) -> Option<Arguments<'_>>;
}

/// A call's arguments (or a part of them) as the rules read them.
#[derive(Debug, Clone, Copy)]
pub enum Arguments<'a> {
    /// Read into a value.
    Value(&'a Value),
    /// Their text as the call carried it, read alike by every parser (see
    /// [`crate::mcp::strict`]): the fast form reads only what it needs of it.
    Text(&'a RawValue),
}

impl<'a> Arguments<'a> {
    /// The value under `key`; `None` when this is no object or has no such key.
    fn get(self, key: &str) -> Option<Arguments<'a>> {
        match self {
            Arguments::Value(v) => v.as_object()?.get(key).map(Arguments::Value),
            Arguments::Text(t) => member(t, key)?.map(Arguments::Text),
        }
    }

    /// Whether this object has `key`; `None` when this is no object.
    fn has(self, key: &str) -> Option<bool> {
        match self {
            Arguments::Value(v) => Some(v.as_object()?.contains_key(key)),
            Arguments::Text(t) => Some(member(t, key)?.is_some()),
        }
    }

    /// As the fast form computes with it; `None` for a string whose text has escapes (the
    /// interpreter reads those).
    fn fact(self) -> Option<V<'a>> {
        Some(match self {
            Arguments::Value(Value::String(s)) => V::Text(s),
            Arguments::Value(Value::Bool(b)) => V::Bool(*b),
            Arguments::Value(_) => V::Other,
            Arguments::Text(t) => match t.get().as_bytes() {
                [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => {
                    V::Text(std::str::from_utf8(inner).ok()?)
                }
                [b'"', ..] => return None,
                b"true" => V::Bool(true),
                b"false" => V::Bool(false),
                _ => V::Other,
            },
        })
    }

    /// As a value (what the interpreter is given).
    pub fn to_value(self) -> Value {
        match self {
            Arguments::Value(v) => v.clone(),
            Arguments::Text(t) => serde_json::from_str(t.get()).unwrap_or(Value::Null),
        }
    }
}

/// The text under `key` of the object `text` is; `None` when it is no object.
fn member<'a>(text: &'a RawValue, key: &str) -> Option<Option<&'a RawValue>> {
    if !text.get().starts_with('{') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(text.get());
    Member(key).deserialize(&mut de).ok()
}

/// Looks one key up in an object, skipping the others unread.
struct Member<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Text(key)) = map.next_key()? {
            match key == self.0 {
                true => found = Some(map.next_value()?),
                false => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// A rule's expression in the subset judged natively.
#[derive(Debug)]
pub enum Fast {
    Text(String),
    Bool(bool),
    /// A name of `mcp` but the arguments.
    Name(Part),
    /// `mcp.tool.arguments` and the keys under it.
    Argument(Vec<String>),
    /// `has(mcp.tool.arguments.….key)`: the keys down to the map, and the key.
    Has(Vec<String>, String),
    Not(Box<Fast>),
    And(Vec<Fast>),
    Or(Vec<Fast>),
    /// `==` (or `!=` when the flag is false).
    Equal(Box<Fast>, Box<Fast>, bool),
    Test(TextTest, Box<Fast>, Box<Fast>),
    In(Box<Fast>, Vec<String>),
}

#[derive(Debug, Clone, Copy)]
pub enum TextTest {
    StartsWith,
    EndsWith,
    Contains,
}

/// A value the fast form computes with; anything else makes it give up.
#[derive(Clone, Copy)]
enum V<'a> {
    Text(&'a str),
    Bool(bool),
    /// A part of the arguments that is neither a string nor a boolean.
    Other,
}

impl Fast {
    /// `e` in the fast form, if it is in the subset.
    pub fn of(e: &IdedExpr) -> Option<Fast> {
        match &e.expr {
            Expr::Literal(LiteralValue::String(s)) => Some(Fast::Text(s.inner().to_string())),
            Expr::Literal(LiteralValue::Boolean(b)) => Some(Fast::Bool(*b.inner())),
            Expr::Select(_) => select(e),
            Expr::Call(call) => {
                let args = || call.args.iter().map(Fast::of).collect::<Option<Vec<_>>>();
                let boxed = |e: &IdedExpr| Fast::of(e).map(Box::new);
                match (call.func_name.as_str(), &call.target, call.args.as_slice()) {
                    (operators::LOGICAL_AND, None, [_, _, ..]) => Some(Fast::And(args()?)),
                    (operators::LOGICAL_OR, None, [_, _, ..]) => Some(Fast::Or(args()?)),
                    (operators::LOGICAL_NOT, None, [a]) => Some(Fast::Not(boxed(a)?)),
                    (operators::EQUALS, None, [a, b]) => {
                        Some(Fast::Equal(boxed(a)?, boxed(b)?, true))
                    }
                    (operators::NOT_EQUALS, None, [a, b]) => {
                        Some(Fast::Equal(boxed(a)?, boxed(b)?, false))
                    }
                    (name @ ("startsWith" | "endsWith" | "contains"), Some(target), [a]) => {
                        let test = match name {
                            "startsWith" => TextTest::StartsWith,
                            "endsWith" => TextTest::EndsWith,
                            _ => TextTest::Contains,
                        };
                        Some(Fast::Test(test, boxed(target)?, boxed(a)?))
                    }
                    (operators::IN, None, [a, list]) => {
                        let Expr::List(list) = &list.expr else {
                            return None;
                        };
                        let texts = list.elements.iter().map(|e| match &e.expr {
                            Expr::Literal(LiteralValue::String(s)) => Some(s.inner().to_string()),
                            _ => None,
                        });
                        let texts = texts.collect::<Option<Vec<_>>>()?;
                        list.optional_indices
                            .is_empty()
                            .then_some(Fast::In(boxed(a)?, texts))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Whether the rule holds for `r`, when this form can tell exactly as CEL would; `None`
    /// when the interpreter must decide.
    pub fn holds(&self, r: &impl Facts) -> Option<bool> {
        match self.eval(r)? {
            V::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn eval<'a>(&'a self, r: &'a impl Facts) -> Option<V<'a>> {
        Some(match self {
            Fast::Text(s) => V::Text(s),
            Fast::Bool(b) => V::Bool(*b),
            Fast::Name(part) => V::Text(r.part(*part)),
            Fast::Argument(keys) => walk(r, keys)?.fact()?,
            Fast::Has(keys, key) => V::Bool(walk(r, keys)?.has(key)?),
            Fast::Not(a) => match a.eval(r)? {
                V::Bool(b) => V::Bool(!b),
                _ => return None,
            },
            // CEL's `&&` is false when any side is, whatever the others (even errors); true
            // when all are; otherwise it is not told here. `||` the other way round.
            Fast::And(parts) => V::Bool(decided(parts, r, false)?),
            Fast::Or(parts) => V::Bool(decided(parts, r, true)?),
            Fast::Equal(a, b, equal) => match (a.eval(r)?, b.eval(r)?) {
                (V::Text(x), V::Text(y)) => V::Bool((x == y) == *equal),
                (V::Bool(x), V::Bool(y)) => V::Bool((x == y) == *equal),
                _ => return None,
            },
            Fast::Test(test, a, b) => match (a.eval(r)?, b.eval(r)?) {
                (V::Text(x), V::Text(y)) => V::Bool(match test {
                    TextTest::StartsWith => x.starts_with(y),
                    TextTest::EndsWith => x.ends_with(y),
                    TextTest::Contains => x.contains(y),
                }),
                _ => return None,
            },
            Fast::In(a, texts) => match a.eval(r)? {
                V::Text(x) => V::Bool(texts.iter().any(|t| t == x)),
                _ => return None,
            },
        })
    }
}

/// `&&` (`short` false) or `||` (`short` true) over `parts`: `short` as soon as one part is,
/// `!short` when every part is, `None` otherwise.
fn decided(parts: &[Fast], r: &impl Facts, short: bool) -> Option<bool> {
    let mut all = true;
    for p in parts {
        match p.eval(r) {
            Some(V::Bool(b)) if b == short => return Some(short),
            Some(V::Bool(_)) => {}
            _ => all = false,
        }
    }
    all.then_some(!short)
}

/// The arguments' value under `keys`; `None` (an error in CEL) when a key is missing or what
/// it is looked up in is not a map, or the request has no arguments.
fn walk<'a>(r: &'a impl Facts, keys: &[String]) -> Option<Arguments<'a>> {
    let mut v = r.arguments()?;
    for k in keys {
        v = v.get(k)?;
    }
    Some(v)
}

/// A chain of selections down to `mcp`, in the fast form.
fn select(e: &IdedExpr) -> Option<Fast> {
    let mut path = vec![];
    let mut at = e;
    while let Expr::Select(s) = &at.expr {
        path.push((s.field.as_str(), s.test));
        at = &s.operand;
    }
    if !matches!(&at.expr, Expr::Ident(name) if name == "mcp") {
        return None;
    }
    path.reverse();
    let (&(_, test), above) = path.split_last()?;
    if above.iter().any(|(_, test)| *test) {
        return None;
    }
    let names: Vec<&str> = path.iter().map(|(name, _)| *name).collect();
    match names.as_slice() {
        ["tool", "arguments", under @ ..] => {
            let keys: Vec<String> = under.iter().map(|k| k.to_string()).collect();
            match test {
                // `has(mcp.tool.arguments)` tests `mcp.tool`, not the arguments.
                true if keys.is_empty() => None,
                true => {
                    let (key, keys) = keys.split_last()?;
                    Some(Fast::Has(keys.to_vec(), key.clone()))
                }
                false => Some(Fast::Argument(keys)),
            }
        }
        _ if test => None,
        _ => Part::named(&names).map(Fast::Name),
    }
}

#[cfg(test)]
mod tests {
    use cel::{Context, Program, Value as Cel};
    use serde_json::{Value, json, value::RawValue};

    use super::{Arguments, Facts, Fast, Part};

    /// A call as the fast form and CEL see it; its arguments read into a value, or as text.
    struct Call {
        tool: &'static str,
        arguments: Option<Value>,
        text: Option<Box<RawValue>>,
    }

    impl Facts for Call {
        fn part(&self, part: Part) -> &str {
            match part {
                Part::Server => "files",
                Part::Method => "tools/call",
                Part::Tool => self.tool,
                _ => "",
            }
        }

        fn arguments(&self) -> Option<Arguments<'_>> {
            match &self.text {
                Some(text) => Some(Arguments::Text(text)),
                None => self.arguments.as_ref().map(Arguments::Value),
            }
        }
    }

    /// CEL's own outcome (`mcp` converted as the gateway converts it: `cel::to_value`'s
    /// forms): `Some(b)` for a boolean, `None` for an error or another value.
    fn interpreted(program: &Program, c: &Call) -> Option<bool> {
        let mut tool = json!({"name": c.tool});
        if let Some(a) = &c.arguments {
            tool["arguments"] = a.clone();
        }
        let mcp = json!({"server": "files", "member": "", "method": "tools/call", "tool": tool,
                         "prompt": {"name": ""}, "resource": {"uri": ""}});
        let mut ctx = Context::default();
        ctx.add_variable_from_value("mcp", cel::to_value(mcp).unwrap());
        match program.execute(&ctx) {
            Ok(Cel::Bool(b)) => Some(b),
            _ => None,
        }
    }

    #[test]
    fn the_fast_form_decides_as_cel_does_or_not_at_all() {
        let rules = [
            "mcp.tool.name == 'echo' && has(mcp.tool.arguments.path) && mcp.tool.arguments.path.startsWith('/etc/')",
            "mcp.tool.name != 'read_file' || mcp.tool.arguments.path.startsWith('/srv/')",
            "mcp.tool.arguments.path.endsWith('.key') || mcp.tool.arguments.path.contains('..')",
            "!(mcp.tool.arguments.path == '/etc/passwd')",
            "mcp.tool.arguments.recursive == true && mcp.server in ['files', 'disk']",
            "has(mcp.tool.arguments.options.force) && mcp.tool.arguments.options.force",
            "mcp.tool.arguments.path.startsWith('/etc/') || mcp.tool.arguments.path.startsWith('/root/')",
            "mcp.method == 'tools/call' && mcp.member == '' && mcp.prompt.name == '' && mcp.resource.uri == ''",
            "mcp.tool.arguments.recursive != false && !has(mcp.tool.arguments.options)",
            "mcp.tool.arguments.path",
            "mcp.tool.name == true",
        ];
        let arguments = [
            None,
            Some(json!(null)),
            Some(json!({})),
            Some(json!({"path": "/etc/passwd"})),
            Some(json!({"path": "/srv/a/../../etc/x.key"})),
            Some(json!({"path": "/srv/ok", "recursive": true})),
            Some(json!({"path": 7, "recursive": "yes"})),
            Some(json!({"path": null, "options": {"force": true}})),
            Some(json!({"options": {"force": "no"}, "count": 3})),
            Some(json!({"options": [1], "path": ["/etc"]})),
            Some(json!("/etc/passwd")),
            Some(json!({"path": "/etc/\"q\"", "options": {"force": true, "x\ny": 1}})),
            Some(json!({"path": "/etc/p", "options": {"force": "a\tb"}, "recursive": false})),
        ];
        let (mut decided, mut total) = (0, 0);
        for rule in rules {
            let program = Program::compile(rule).unwrap();
            let fast =
                Fast::of(program.expression()).unwrap_or_else(|| panic!("{rule} has a fast form"));
            for tool in ["echo", "read_file"] {
                for args in &arguments {
                    let c = Call {
                        tool,
                        arguments: args.clone(),
                        text: None,
                    };
                    // The same arguments as their text: decided alike, or (a string with
                    // escapes on the way) left to the interpreter.
                    let text = args.as_ref().map(|a| RawValue::from_string(a.to_string()));
                    let as_text = Call {
                        text: text.map(Result::unwrap),
                        ..Call {
                            tool,
                            arguments: args.clone(),
                            text: None,
                        }
                    };
                    let escaped = as_text
                        .text
                        .as_ref()
                        .is_some_and(|t| t.get().contains('\\'));
                    match (fast.holds(&c), fast.holds(&as_text)) {
                        (a, b) if a == b => {}
                        (Some(_), None) if escaped => {}
                        (a, b) => {
                            panic!("{rule} on {args:?}: {a:?} from the value, {b:?} from the text")
                        }
                    }
                    total += 1;
                    let Some(b) = fast.holds(&c) else {
                        // Left to the interpreter: its errors (a missing key, a number), and
                        // equality of values of different types (false in CEL).
                        let missed = interpreted(&program, &c).is_some();
                        assert!(
                            !missed || rule.contains("==") || rule.contains("!="),
                            "{rule} on {tool} {args:?} is not decided fast"
                        );
                        continue;
                    };
                    decided += 1;
                    assert_eq!(
                        Some(b),
                        interpreted(&program, &c),
                        "{rule} on {tool} {args:?}: the fast form says {b}"
                    );
                }
            }
        }
        assert!(decided * 3 > total, "{decided} of {total} decided");
    }

    #[test]
    fn the_common_argument_rules_are_decided_fast() {
        let program = Program::compile(
            "mcp.tool.name == 'echo' && has(mcp.tool.arguments.path) && mcp.tool.arguments.path.startsWith('/etc/0')",
        )
        .unwrap();
        let fast = Fast::of(program.expression()).unwrap();
        let call = |tool, arguments| Call {
            tool,
            arguments: Some(arguments),
            text: None,
        };
        assert_eq!(
            fast.holds(&call("echo", json!({"text": "hi"}))),
            Some(false)
        );
        assert_eq!(
            fast.holds(&call("echo", json!({"path": "/etc/0/x"}))),
            Some(true)
        );
        assert_eq!(
            fast.holds(&call("other", json!({"path": "/etc/0/x"}))),
            Some(false)
        );
    }

    #[test]
    fn what_is_outside_the_subset_has_no_fast_form() {
        for rule in [
            "'admins' in jwt.groups",
            "mcp.tool.arguments.path.matches('^/etc')",
            "size(mcp.tool.arguments) > 2",
            "mcp['tool'].name == 'x'",
            "has(mcp.tool.arguments)",
            "has(mcp.server)",
            "mcp.tool.name in ['a', 1]",
            "mcp.tool.arguments.n > 3",
            "mcp.tool.arguments.count == 3",
            "mcp.tool == {}",
        ] {
            let program = Program::compile(rule).unwrap();
            assert!(Fast::of(program.expression()).is_none(), "{rule}");
        }
    }
}

//! Rules compiled: a CEL program per rule, checked at load for what it may name — a rule that
//! does not parse, or reads a variable the gateway does not provide, refuses the file with the
//! rule's name and the column.
//!
//! Owns: compiling and checking rules. Must not touch: evaluating them (see [`super`]).

use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicBool, Ordering},
};

use cel::{
    Program,
    common::ast::{EntryExpr, Expr, IdedExpr},
};

use crate::config::{Effect, RuleSource};

/// The variables a rule may read (see the README's "Policies").
pub const VARIABLES: &[&str] = &[
    "jwt", "subject", "key", "scopes", "source", "request", "mcp",
];

/// One compiled rule.
pub struct Rule {
    pub name: String,
    pub effect: Effect,
    pub source: String,
    /// Its place among the rules in force (for a session's memo of outcomes).
    pub id: usize,
    /// Whether it may read a call's arguments: if not, its outcome for a caller and a name
    /// never changes, and a session remembers it.
    pub reads_arguments: bool,
    /// The [`FLAT`] names it reads (a bit each), if it reads `mcp` by those alone: it then
    /// runs without `mcp` built whole, the names it reads given as variables of their own
    /// (CEL resolves `a.b.c` from the longest name a scope has).
    pub(super) flat: Option<u8>,
    pub(super) program: Program,
    /// Its form judged without the interpreter, if it has one (see [`super::fast`]).
    pub(super) fast: Option<super::fast::Fast>,
    /// Set once its first run-time failure has been logged.
    failed_once: AtomicBool,
}

impl Rule {
    /// Whether, reading the arguments, it reads `mcp` by [`FLAT`] names only: then if it
    /// gives an outcome without the arguments (a call's arguments missing make every read of
    /// them an error, and CEL's `&&`, `||` and comprehensions keep an error unless the other
    /// side decides alone), that outcome holds for every call of the same name — e.g.
    /// `mcp.tool.name != 'read_file' || …` for every other tool — and a session remembers it.
    pub fn probes(&self) -> bool {
        self.reads_arguments && self.flat.is_some()
    }

    /// True the first time only: a rule that fails at run time is logged once.
    pub fn first_failure(&self) -> bool {
        !self.failed_once.swap(true, Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:?}: {}", self.name, self.effect, self.source)
    }
}

/// The rules of one level (the gateway's, or one server's or group's), in file order.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub deny: Vec<Rule>,
    pub allow: Vec<Rule>,
}

impl RuleSet {
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty()
    }

    /// Compiles `sources`; the first bad rule's error names it and the column.
    pub fn compile(sources: &[RuleSource]) -> Result<RuleSet, String> {
        Self::numbered(sources, &mut 0)
    }

    /// As [`RuleSet::compile`], numbering the rules from `next` on.
    pub fn numbered(sources: &[RuleSource], next: &mut usize) -> Result<RuleSet, String> {
        let mut set = RuleSet::default();
        for s in sources {
            let mut rule = compile(s)?;
            rule.id = *next;
            *next += 1;
            match s.effect {
                Effect::Allow => set.allow.push(rule),
                Effect::Deny => set.deny.push(rule),
            }
        }
        Ok(set)
    }
}

/// Compiles one rule and checks the variables it reads.
pub fn compile(source: &RuleSource) -> Result<Rule, String> {
    let what = |column: usize, message: &str| {
        format!(
            "rule {:?}: {message} at column {column} of `{}`",
            source.name, source.expr
        )
    };
    if source.expr.trim().is_empty() {
        return Err(format!("rule {:?}: the expression is empty", source.name));
    }
    let program = Program::compile(&source.expr).map_err(|e| match e.errors.first() {
        Some(first) => what(first.pos.1.max(1) as usize, first_line(&first.msg)),
        None => what(1, "does not parse"),
    })?;
    let mut free = vec![];
    free_idents(program.expression(), &mut BTreeSet::new(), &mut free);
    if let Some((name, id)) = free
        .into_iter()
        .find(|(name, _)| !VARIABLES.contains(&name.as_str()))
    {
        let column = program
            .source_info()
            .offset_for(id)
            .map_or(1, |(start, _)| start as usize + 1);
        let message = format!(
            "unknown variable {name:?} (a rule may read {})",
            VARIABLES.join(", ")
        );
        return Err(what(column, &message));
    }
    let reads_arguments = reads_arguments(program.expression());
    let flat = flat_reads(program.expression());
    Ok(Rule {
        name: source.name.clone(),
        effect: source.effect,
        source: source.expr.clone(),
        id: 0,
        reads_arguments,
        flat,
        fast: super::fast::Fast::of(program.expression()),
        program,
        failed_once: AtomicBool::new(false),
    })
}

/// Whether `e` may read anything of `mcp` but the parts that never depend on a call's
/// arguments ([`FLAT`] but `mcp.tool.arguments`; conservative: `mcp` alone, `mcp.tool`, an
/// index into it, or `arguments` count as reading the arguments).
fn reads_arguments(e: &IdedExpr) -> bool {
    if let Some(p) = mcp_path(e) {
        return flat_bit(&p).is_none_or(|bit| 1 << bit == ARGUMENTS);
    }
    let mut reads = false;
    visit(e, &mut |child| reads |= reads_arguments(child));
    reads
}

/// A chain of field selections down to `mcp`: its path, outermost last, and whether the
/// selection of each part is a `has()` test.
fn mcp_path(e: &IdedExpr) -> Option<Vec<(&str, bool)>> {
    match &e.expr {
        Expr::Ident(name) if name == "mcp" => Some(vec![]),
        Expr::Select(s) => {
            let mut p = mcp_path(&s.operand)?;
            p.push((&s.field, s.test));
            Some(p)
        }
        _ => None,
    }
}

/// The place in [`FLAT`] of the name `path` spells, if it is one.
fn flat_bit(path: &[(&str, bool)]) -> Option<usize> {
    let names: Vec<&str> = path.iter().map(|(name, _)| *name).collect();
    let name = format!("mcp.{}", names.join("."));
    FLAT.iter().position(|f| *f == name)
}

/// The names of `mcp` a rule may read as variables of their own (see [`Rule::flat`]), in the
/// order of their bits.
pub const FLAT: &[&str] = &[
    "mcp.server",
    "mcp.member",
    "mcp.method",
    "mcp.tool.name",
    "mcp.tool.arguments",
    "mcp.prompt.name",
    "mcp.resource.uri",
];
/// The bit of `mcp.tool.arguments` in [`Rule::flat`].
pub const ARGUMENTS: u8 = 1 << 4;

/// Which of [`FLAT`] `e` reads (a bit each), if it reads `mcp` by those names only: a
/// part of [`FLAT`] selected plainly (not `has(mcp.server)`, whose operand is `mcp`), or
/// `mcp.tool.arguments` and what is under it (not `has(mcp.tool.arguments)`).
fn flat_reads(e: &IdedExpr) -> Option<u8> {
    if let Some(p) = mcp_path(e) {
        if let [("tool", false), ("arguments", false), ..] = p.as_slice() {
            return Some(ARGUMENTS);
        }
        let plain = p.iter().all(|(_, test)| !test);
        return plain.then_some(1 << flat_bit(&p)?);
    }
    let mut reads = Some(0);
    visit(e, &mut |child| {
        reads = match (reads, flat_reads(child)) {
            (Some(a), Some(b)) => Some(a | b),
            _ => None,
        }
    });
    reads
}

/// Calls `f` on each direct child of `e`.
fn visit(e: &IdedExpr, f: &mut dyn FnMut(&IdedExpr)) {
    match &e.expr {
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                f(t);
            }
            call.args.iter().for_each(&mut *f);
        }
        Expr::Select(select) => f(&select.operand),
        Expr::List(list) => list.elements.iter().for_each(&mut *f),
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(m) = &entry.expr {
                    f(&m.key);
                    f(&m.value);
                }
            }
        }
        Expr::Struct(st) => {
            for entry in &st.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    f(&field.value);
                }
            }
        }
        Expr::Comprehension(c) => {
            for part in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                f(part);
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

/// The identifiers `e` reads that no comprehension around them binds, with their node ids.
fn free_idents(e: &IdedExpr, bound: &mut BTreeSet<String>, out: &mut Vec<(String, u64)>) {
    match &e.expr {
        Expr::Ident(name) => {
            if !bound.contains(name) {
                out.push((name.clone(), e.id));
            }
        }
        Expr::Comprehension(c) => {
            free_idents(&c.iter_range, bound, out);
            free_idents(&c.accu_init, bound, out);
            let mut inner = bound.clone();
            inner.insert(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                inner.insert(v.clone());
            }
            inner.insert(c.accu_var.clone());
            free_idents(&c.loop_cond, &mut inner, out);
            free_idents(&c.loop_step, &mut inner, out);
            free_idents(&c.result, &mut inner, out);
        }
        _ => visit(e, &mut |child| free_idents(child, bound, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(expr: &str) -> Result<Rule, String> {
        compile(&RuleSource {
            name: "r".into(),
            effect: Effect::Deny,
            expr: expr.into(),
        })
    }

    #[test]
    fn rules_that_do_not_parse_name_the_rule_and_the_column() {
        let e = rule("mcp.tool.name == ").unwrap_err();
        assert!(e.starts_with("rule \"r\": Syntax error"), "{e}");
        assert!(e.contains("at column 18 of `mcp.tool.name == `"), "{e}");
        assert!(rule("  ").unwrap_err().contains("empty"));
    }

    #[test]
    fn unknown_variables_are_refused_where_they_stand() {
        let e = rule("mcp.tool.name == 'x' && tool.name == 'y'").unwrap_err();
        assert!(e.contains("unknown variable \"tool\""), "{e}");
        assert!(e.contains("at column 25"), "{e}");
        // Comprehension variables are bound, not free; inside, outer names still count.
        rule("jwt.groups.exists(g, g == 'staff')").unwrap();
        rule("jwt.groups.all(g, g != subject) && [1, 2].map(x, x * 2)[0] == 2").unwrap();
        let e = rule("jwt.groups.exists(g, g == team)").unwrap_err();
        assert!(e.contains("unknown variable \"team\""), "{e}");
        // Every documented variable is accepted.
        rule(
            "jwt.sub == subject && key.name != '' && 'a' in scopes && source.address != '' \
             && request.headers['x-team'] == 'a' && mcp.server == 'x'",
        )
        .unwrap();
    }

    #[test]
    fn rules_that_may_read_arguments_are_told_apart() {
        for fixed in [
            "mcp.tool.name == 'x' && 'a' in jwt.groups",
            "has(mcp.tool.name) && mcp.member == 'm' && mcp.resource.uri.startsWith('file:')",
            "jwt.groups.exists(g, g == mcp.server)",
        ] {
            assert!(!rule(fixed).unwrap().reads_arguments, "{fixed}");
        }
        for reading in [
            "mcp.tool.arguments.path == '/'",
            "has(mcp.tool.arguments.path)",
            "mcp.tool['arguments'].path == '/'",
            "mcp['tool'].name == 'x'",
            "mcp.tool.name == 'x' || size(mcp) > 0",
            "[mcp.tool].all(t, t.name == 'x')",
        ] {
            assert!(rule(reading).unwrap().reads_arguments, "{reading}");
        }
    }

    #[test]
    fn rules_whose_outcome_without_arguments_holds_for_every_call_are_told_apart() {
        for probing in [
            "mcp.tool.name != 'read_file' || mcp.tool.arguments.path.startsWith('/srv/')",
            "has(mcp.tool.arguments.path) && mcp.server == 'fs'",
            "mcp.tool.arguments['path'] == '/' && jwt.groups.exists(g, g == mcp.member)",
            "mcp.tool.arguments.all(k, k != 'x')",
        ] {
            let r = rule(probing).unwrap();
            assert!(r.reads_arguments && r.probes(), "{probing}");
        }
        for whole in [
            "mcp.tool.name == 'x'",
            "has(mcp.tool.arguments)",
            "!has(mcp.tool.arguments) || mcp.tool.arguments.p == 1",
            "'arguments' in mcp.tool",
            "size(mcp.tool) == 1",
            "mcp.tool['arguments'].path == '/'",
            "[mcp].all(m, m.tool.arguments.p == 1)",
            "mcp.tool.name == 'x' || size(mcp) > 0",
        ] {
            assert!(!rule(whole).unwrap().probes(), "{whole}");
        }
    }
}

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
    pub(super) program: Program,
    /// Set once its first run-time failure has been logged.
    failed_once: AtomicBool,
}

impl Rule {
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
        let mut set = RuleSet::default();
        for s in sources {
            let rule = compile(s)?;
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
    Ok(Rule {
        name: source.name.clone(),
        effect: source.effect,
        source: source.expr.clone(),
        program,
        failed_once: AtomicBool::new(false),
    })
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
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                free_idents(t, bound, out);
            }
            for a in &call.args {
                free_idents(a, bound, out);
            }
        }
        Expr::Select(select) => free_idents(&select.operand, bound, out),
        Expr::List(list) => {
            for el in &list.elements {
                free_idents(el, bound, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(m) = &entry.expr {
                    free_idents(&m.key, bound, out);
                    free_idents(&m.value, bound, out);
                }
            }
        }
        Expr::Struct(st) => {
            for entry in &st.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    free_idents(&f.value, bound, out);
                }
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
        Expr::Literal(_) | Expr::Unspecified => {}
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
}

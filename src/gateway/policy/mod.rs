//! Who may call what: rules in CEL (the language Envoy, agentgateway and Kubernetes use),
//! compiled when the servers file is read and judged by a pure function of the caller and the
//! request. A level (the gateway's rules, a server's, a group's) lets a request through when no
//! deny rule holds and, if it has allow rules, one of them holds; every level must let it
//! through. A rule that fails at run time denies (and is logged once by whoever applies it).
//!
//! Listing is judged the same way item by item, with one difference: the arguments of a call
//! are not known yet, so a rule that cannot be decided without them neither hides nor shows —
//! a tool is listed when some call of it may be allowed, and each call is judged with its
//! arguments.
//!
//! Owns: what rules mean. Must not touch: transports, sessions, backends (it gets a caller and
//! a request, both plain data).

pub mod book;
pub mod keys;
pub mod rules;

use std::sync::{Arc, LazyLock};

use cel::{
    Context, Env, Value as Cel,
    common::{
        types::{
            CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
        },
        value::Val,
    },
};
use serde_json::{Value, json};
use std::collections::HashMap;

pub use self::rules::{Rule, RuleSet};
use super::caller::Caller;

/// CEL's standard functions, built once (a context of its own would build them per request).
static STDLIB: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// What is asked, as the rules see it (`mcp.*`); "" where a request has no such part.
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    pub server: &'a str,
    pub member: &'a str,
    pub method: &'a str,
    pub tool: &'a str,
    /// A call's arguments; `None` while listing (not known yet).
    pub arguments: Option<&'a Value>,
    pub prompt: &'a str,
    pub uri: &'a str,
}

/// Judging a call, or an item of a list (see the module's notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Call,
    List,
}

/// The verdict, with the rule that decided a denial.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

/// A rule that could not be evaluated this time, and why.
pub struct Failure<'r> {
    pub rule: &'r Rule,
    pub error: String,
}

/// The caller's part of the variables, converted once per caller: a context each request's
/// own (`mcp`) is a scope of.
pub struct Prepared {
    ctx: Context<'static, 'static>,
}

impl Prepared {
    pub fn of(caller: &Caller) -> Prepared {
        let claims = match &*caller.claims {
            Value::Object(_) => (*caller.claims).clone(),
            _ => json!({}),
        };
        let key = match &caller.key {
            Some(k) => json!({"name": k.name, "labels": k.labels}),
            None => json!({"name": "", "labels": {}}),
        };
        let headers: serde_json::Map<String, Value> = caller
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let address = caller.address.map(|a| a.to_string()).unwrap_or_default();
        let vars = [
            ("jwt", claims),
            ("subject", Value::String(caller.subject.clone())),
            ("key", key),
            ("scopes", json!(caller.scopes)),
            ("source", json!({"address": address})),
            ("request", json!({"headers": headers})),
        ];
        let mut ctx = Context::with_env(STDLIB.clone());
        for (name, v) in vars {
            ctx.add_variable_from_value(name, cel::to_value(v).unwrap_or(Cel::Null));
        }
        Prepared { ctx }
    }
}

/// What a session remembers of the rules that cannot read a call's arguments: each one's
/// outcome for one caller and one request's fixed parts (server, member, method, names). The
/// holder keeps one per such key and drops it when the caller or the rules change.
#[derive(Default)]
pub struct Outcomes(Vec<u8>);

impl Outcomes {
    fn get(&self, rule: &Rule) -> Option<Option<bool>> {
        match self.0.get(rule.id).copied().unwrap_or(0) {
            1 => Some(Some(true)),
            2 => Some(Some(false)),
            3 => Some(None),
            _ => None,
        }
    }

    fn put(&mut self, rule: &Rule, outcome: Option<bool>) {
        if self.0.len() <= rule.id {
            self.0.resize(rule.id + 1, 0);
        }
        self.0[rule.id] = match outcome {
            Some(true) => 1,
            Some(false) => 2,
            None => 3,
        };
    }
}

/// `request` by `caller` through `levels` (each level's rules, outermost first): the verdict,
/// and the rules that failed on the way (for the caller to log once each). Rules that cannot
/// read arguments are taken from `memo` when it knows them, and put there when evaluated.
pub fn judge<'r>(
    levels: &[&'r RuleSet],
    caller: &Prepared,
    request: &Request<'_>,
    mode: Mode,
    memo: &mut Outcomes,
) -> (Decision, Vec<Failure<'r>>) {
    let mut eval = Eval {
        caller,
        request,
        mode,
        ctx: None,
        memo,
        failures: vec![],
    };
    for level in levels {
        if let Some(denied) = level_verdict(level, &mut eval, mode) {
            return (Decision::Deny(denied), eval.failures);
        }
    }
    (Decision::Allow, eval.failures)
}

/// One judgement's evaluations: the variables are set up only if a rule must run.
struct Eval<'a, 'r> {
    caller: &'a Prepared,
    request: &'a Request<'a>,
    mode: Mode,
    ctx: Option<Context<'a, 'static>>,
    memo: &'a mut Outcomes,
    failures: Vec<Failure<'r>>,
}

impl<'r> Eval<'_, 'r> {
    /// Whether `rule` holds; `None` when it cannot be evaluated (or is not a boolean).
    fn holds(&mut self, rule: &'r Rule) -> Option<bool> {
        if !rule.reads_arguments
            && let Some(known) = self.memo.get(rule)
        {
            return known;
        }
        let (caller, request) = (self.caller, self.request);
        let ctx = self.ctx.get_or_insert_with(|| {
            let mut ctx = caller.ctx.new_inner_scope();
            ctx.add_variable_as_val("mcp", mcp(request));
            ctx
        });
        let outcome = match rule.program.execute(ctx) {
            Ok(Cel::Bool(b)) => Some(b),
            Ok(other) => {
                self.failures.push(Failure {
                    rule,
                    error: format!("the expression gave {other:?}, not a boolean"),
                });
                None
            }
            Err(e) => {
                self.failures.push(Failure {
                    rule,
                    error: e.to_string(),
                });
                None
            }
        };
        // A failure met while listing is not kept: a call then evaluates it, and logs it.
        if !rule.reads_arguments && (outcome.is_some() || self.mode == Mode::Call) {
            self.memo.put(rule, outcome);
        }
        outcome
    }
}

/// The name of the rule that denies at this level, if one does.
fn level_verdict<'r>(level: &'r RuleSet, eval: &mut Eval<'_, 'r>, mode: Mode) -> Option<String> {
    for rule in &level.deny {
        match eval.holds(rule) {
            Some(true) => return Some(rule.name.clone()),
            Some(false) => {}
            None if mode == Mode::Call => return Some(rule.name.clone()),
            None => {}
        }
    }
    if level.allow.is_empty() {
        return None;
    }
    let mut undecided = false;
    for rule in &level.allow {
        match eval.holds(rule) {
            Some(true) => return None,
            Some(false) => {}
            None => undecided = true,
        }
    }
    if undecided && mode == Mode::List {
        return None;
    }
    let names: Vec<&str> = level.allow.iter().map(|r| r.name.as_str()).collect();
    Some(format!("no allow rule ({})", names.join(", ")))
}

/// `mcp`: the request's part of the variables.
fn mcp(r: &Request<'_>) -> Box<dyn Val> {
    let text = |s: &str| -> Box<dyn Val> { Box::new(CelString::from(s.to_string())) };
    let map = |entries: Vec<(&str, Box<dyn Val>)>| -> Box<dyn Val> {
        Box::new(CelMap::from(
            entries
                .into_iter()
                .map(|(k, v)| (CelMapKey::String(CelString::from(k.to_string())), v))
                .collect::<HashMap<_, _>>(),
        ))
    };
    let mut tool = vec![("name", text(r.tool))];
    if let Some(args) = r.arguments {
        tool.push(("arguments", json_val(args)));
    }
    map(vec![
        ("server", text(r.server)),
        ("member", text(r.member)),
        ("method", text(r.method)),
        ("tool", map(tool)),
        ("prompt", map(vec![("name", text(r.prompt))])),
        ("resource", map(vec![("uri", text(r.uri))])),
    ])
}

/// A JSON value as CEL sees it, built directly (as `cel::to_value` would make it, without its
/// intermediate tree): a positive integer is a `uint`, a negative one an `int`, a fraction a
/// `double`.
fn json_val(v: &Value) -> Box<dyn Val> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Box::new(CelUInt::from(u)),
            (None, Some(i)) => Box::new(CelInt::from(i)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => Box::new(CelString::from(s.clone())),
        Value::Array(items) => Box::new(CelList::from(
            items.iter().map(json_val).collect::<Vec<_>>(),
        )),
        Value::Object(fields) => Box::new(CelMap::from(
            fields
                .iter()
                .map(|(k, v)| (CelMapKey::String(CelString::from(k.clone())), json_val(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

#[cfg(test)]
mod tests;

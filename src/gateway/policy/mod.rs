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
mod fast;
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

pub use self::{
    fast::Arguments,
    rules::{Rule, RuleSet},
};
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
    pub arguments: Option<Arguments<'a>>,
    pub prompt: &'a str,
    pub uri: &'a str,
}

impl fast::Facts for Request<'_> {
    fn part(&self, part: fast::Part) -> &str {
        match part {
            fast::Part::Server => self.server,
            fast::Part::Member => self.member,
            fast::Part::Method => self.method,
            fast::Part::Tool => self.tool,
            fast::Part::Prompt => self.prompt,
            fast::Part::Uri => self.uri,
        }
    }

    fn arguments(&self) -> Option<Arguments<'_>> {
        self.arguments
    }
}

/// Judging a call, or an item of a list (see the module's notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Call,
    List,
    /// A call by its name, before its arguments are read: decided as [`Mode::Call`] would
    /// decide it, or [`Decision::NeedsArguments`] when a rule in the way must read them.
    Name,
}

/// The verdict, with the rule that decided a denial.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    /// Only in [`Mode::Name`]: judge the call again with its arguments.
    NeedsArguments,
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

/// What a session remembers of the rules for one caller and one request's fixed parts (server,
/// member, method, names): the outcome of each rule that cannot read a call's arguments, and
/// of each rule that can, its outcome without them when that holds for every call (see
/// [`Rule::probes`]) or that it needs them. The holder keeps one per such key and drops it
/// when the caller or the rules change.
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
/// and the rules that failed on the way (for the caller to log once each). What `memo` knows
/// is taken from it, and what it may know is put there.
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
        full: None,
        bare: None,
        memo,
        failures: vec![],
    };
    for level in levels {
        match level_verdict(level, &mut eval, mode) {
            Ok(None) => {}
            Ok(Some(denied)) => return (Decision::Deny(denied), eval.failures),
            Err(NeedsArguments) => return (Decision::NeedsArguments, eval.failures),
        }
    }
    (Decision::Allow, eval.failures)
}

/// A rule in the way must read the call's arguments ([`Mode::Name`] only).
struct NeedsArguments;

/// One judgement's evaluations: the variables are set up only if a rule must run.
struct Eval<'a, 'r> {
    caller: &'a Prepared,
    request: &'a Request<'a>,
    mode: Mode,
    /// The request's variables as it has them.
    full: Option<Scope<'a>>,
    /// The same without the arguments (a probe's).
    bare: Option<Scope<'a>>,
    memo: &'a mut Outcomes,
    failures: Vec<Failure<'r>>,
}

impl<'r> Eval<'_, 'r> {
    /// Whether `rule` holds; `Ok(None)` when it cannot be evaluated (or is not a boolean).
    fn holds(&mut self, rule: &'r Rule) -> Result<Option<bool>, NeedsArguments> {
        if !rule.reads_arguments {
            if let Some(known) = self.memo.get(rule) {
                return Ok(known);
            }
            let outcome = self.run(rule, false, true);
            // A failure met while listing is not kept: a call then evaluates it, and logs it.
            if outcome.is_some() || self.mode != Mode::List {
                self.memo.put(rule, outcome);
            }
            return Ok(outcome);
        }
        if rule.probes() {
            // Its outcome without the arguments, if it has one, is its outcome for every call.
            let probed = match self.memo.get(rule) {
                Some(known) => known,
                None => {
                    let outcome = self.run(rule, true, false);
                    self.memo.put(rule, outcome);
                    outcome
                }
            };
            match (probed, self.mode) {
                (Some(b), _) => return Ok(Some(b)),
                (None, Mode::List) => return Ok(None),
                (None, Mode::Name) => return Err(NeedsArguments),
                (None, Mode::Call) => {}
            }
        }
        match self.mode {
            Mode::Name => Err(NeedsArguments),
            Mode::Call | Mode::List => Ok(self.run(rule, false, true)),
        }
    }

    /// Runs `rule` with the arguments or without (`bare`); a failure is kept if `report`.
    fn run(&mut self, rule: &'r Rule, bare: bool, report: bool) -> Option<bool> {
        let (caller, request) = (self.caller, self.request);
        let bare = bare && request.arguments.is_some();
        let r = match bare {
            true => Request {
                arguments: None,
                ..*request
            },
            false => *request,
        };
        // Decided natively when the rule's fast form can (the same outcome, without the
        // interpreter's variables); the interpreter otherwise, errors and all.
        if let Some(b) = rule.fast.as_ref().and_then(|f| f.holds(&r)) {
            return Some(b);
        }
        let slot = if bare { &mut self.bare } else { &mut self.full };
        let scope = slot.get_or_insert_with(|| Scope {
            ctx: caller.ctx.new_inner_scope(),
            flat: 0,
            whole: false,
        });
        match rule.flat {
            // Without arguments, `mcp` whole says why `mcp.tool.arguments` fails.
            Some(reads) if r.arguments.is_some() || reads & rules::ARGUMENTS == 0 => {
                let missing = reads & !scope.flat;
                for (bit, name) in rules::FLAT.iter().enumerate() {
                    if missing & (1 << bit) != 0 {
                        scope.ctx.add_variable_as_val(*name, flat(&r, bit));
                    }
                }
                scope.flat |= reads;
            }
            _ if !scope.whole => {
                scope.ctx.add_variable_as_val("mcp", mcp(&r));
                scope.whole = true;
            }
            _ => {}
        }
        let error = match rule.program.execute(&scope.ctx) {
            Ok(Cel::Bool(b)) => return Some(b),
            Ok(other) => format!("the expression gave {other:?}, not a boolean"),
            Err(e) => e.to_string(),
        };
        if report {
            self.failures.push(Failure { rule, error });
        }
        None
    }
}

/// The request's variables as far as the rules run so far needed them: `mcp` whole, or some
/// of its [`rules::FLAT`] names as variables of their own (a bit each).
struct Scope<'a> {
    ctx: Context<'a, 'static>,
    flat: u8,
    whole: bool,
}

/// The value of [`rules::FLAT`]'s name number `bit` for `r` (which has arguments if asked).
fn flat(r: &Request<'_>, bit: usize) -> Box<dyn Val> {
    match bit {
        0 => text(r.server),
        1 => text(r.member),
        2 => text(r.method),
        3 => text(r.tool),
        4 => arguments_val(r.arguments.unwrap_or(Arguments::Value(&Value::Null))),
        5 => text(r.prompt),
        _ => text(r.uri),
    }
}

/// The name of the rule that denies at this level, if one does.
fn level_verdict<'r>(
    level: &'r RuleSet,
    eval: &mut Eval<'_, 'r>,
    mode: Mode,
) -> Result<Option<String>, NeedsArguments> {
    let call = mode != Mode::List;
    for rule in &level.deny {
        match eval.holds(rule)? {
            Some(true) => return Ok(Some(rule.name.clone())),
            Some(false) => {}
            None if call => return Ok(Some(rule.name.clone())),
            None => {}
        }
    }
    if level.allow.is_empty() {
        return Ok(None);
    }
    let mut undecided = false;
    for rule in &level.allow {
        match eval.holds(rule)? {
            Some(true) => return Ok(None),
            Some(false) => {}
            None => undecided = true,
        }
    }
    if undecided && !call {
        return Ok(None);
    }
    let names: Vec<&str> = level.allow.iter().map(|r| r.name.as_str()).collect();
    Ok(Some(format!("no allow rule ({})", names.join(", "))))
}

/// `mcp`: the request's part of the variables.
fn mcp(r: &Request<'_>) -> Box<dyn Val> {
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
        tool.push(("arguments", arguments_val(args)));
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

/// A string as CEL sees it.
fn text(s: &str) -> Box<dyn Val> {
    Box::new(CelString::from(s.to_string()))
}

/// A call's arguments as CEL sees them.
fn arguments_val(a: Arguments<'_>) -> Box<dyn Val> {
    match a {
        Arguments::Value(v) => json_val(v),
        Arguments::Text(_) => json_val(&a.to_value()),
    }
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

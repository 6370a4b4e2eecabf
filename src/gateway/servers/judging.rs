//! How the rules layer judges: which levels apply to a request on this server (the gateway's,
//! the server's or group's, a member's through a group), what a session remembers of rules
//! that cannot read arguments, and how a denied call is answered.
//!
//! Owns: the judgement of one request. Must not touch: sessions, HTTP.

use parking_lot::Mutex;
use std::{collections::HashMap, sync::Arc};

use serde_json::Value;

use crate::{
    config::{DeniedAs, GroupConfig},
    gateway::{
        caller::Caller,
        federation::catalog::Naming,
        metrics::ServerMetrics,
        policy::{
            self, Arguments, Decision, Mode, Outcomes, Prepared, Request, RuleSet,
            book::{Book, Compiled},
        },
    },
    mcp::jsonrpc,
};

/// What a layer needs to know of the server it wraps.
#[derive(Clone)]
pub struct Subject {
    pub name: String,
    /// A group's naming and members, to tell `mcp.member` from a namespaced name.
    pub group: Option<(Naming, Vec<String>)>,
}

impl Subject {
    pub fn of(name: &str, group: Option<&GroupConfig>) -> Subject {
        Subject {
            name: name.to_string(),
            group: group.map(|g| {
                let naming = Naming {
                    prefix: g.prefix,
                    separator: g.separator.clone(),
                    members: g.members.len(),
                };
                (naming, g.members.clone())
            }),
        }
    }

    /// The member a group's name (of a tool or prompt) belongs to, when names carry it, and
    /// the name the member knows it by.
    pub(super) fn split(&self, name: &str) -> Option<(&str, String)> {
        let (naming, members) = self.group.as_ref()?;
        let all = members.iter().enumerate().map(|(i, m)| (i, m.as_str()));
        let (i, rest) = naming.split(all, name)?;
        Some((members[i].as_str(), rest))
    }
}

pub(super) struct Judge {
    pub subject: Subject,
    pub book: Arc<Book>,
    pub metrics: ServerMetrics,
}

impl Judge {
    /// The levels that judge here and their verdict; failures counted and logged. Through a
    /// group whose names tell the member, the member's own rules judge too (on the member's
    /// own name), so a refusal names what the client asked for.
    pub(super) fn decide(
        &self,
        book: &Arc<Compiled>,
        caller: &Arc<Caller>,
        prepared: &Prepared,
        request: Request<'_>,
        mode: Mode,
        memo: &Mutex<Memo>,
    ) -> Decision {
        let mut memo = memo.lock();
        memo.follow(book, caller);
        let named = if request.tool.is_empty() {
            request.prompt
        } else {
            request.tool
        };
        let split = self.subject.split(named);
        let request = Request {
            server: &self.subject.name,
            member: split.as_ref().map_or("", |(m, _)| m),
            ..request
        };
        let gateway = caller.via.is_none().then_some(&book.gateway);
        let own = book.servers.get(&self.subject.name);
        let (both, single);
        let levels: &[&RuleSet] = match (gateway, own) {
            (Some(g), Some(o)) => {
                both = [g, o];
                &both
            }
            (Some(one), None) | (None, Some(one)) => {
                single = [one];
                &single
            }
            (None, None) => &[],
        };
        let decision = self.verdict(levels, prepared, &request, mode, &mut memo);
        let Some((member, rest)) = &split else {
            return decision;
        };
        match (decision, book.servers.get(*member)) {
            (Decision::Allow, Some(rules)) => {
                let inner = Request {
                    server: member,
                    member: "",
                    tool: if request.tool.is_empty() { "" } else { rest },
                    prompt: if request.prompt.is_empty() { "" } else { rest },
                    ..request
                };
                self.verdict(&[rules], prepared, &inner, mode, &mut memo)
            }
            (decision, _) => decision,
        }
    }

    fn verdict(
        &self,
        levels: &[&RuleSet],
        prepared: &Prepared,
        request: &Request<'_>,
        mode: Mode,
        memo: &mut Memo,
    ) -> Decision {
        let outcomes = memo.of(request);
        let (decision, failures) = policy::judge(levels, prepared, request, mode, outcomes);
        if mode != Mode::List {
            for f in failures {
                self.metrics.rule_failed(&f.rule.name);
                if f.rule.first_failure() {
                    tracing::warn!(
                        server = %self.subject.name,
                        rule = %f.rule.name,
                        error = %f.error,
                        "a rule failed to evaluate; the call it judged is denied (logged once per rule)"
                    );
                }
            }
        }
        decision
    }
}

/// What a session remembers of the rules (see [`policy::Outcomes`]), for the rules and the
/// caller it was made with.
#[derive(Default)]
pub(super) struct Memo {
    book: Option<Arc<Compiled>>,
    caller: Option<Arc<Caller>>,
    /// Where each request's outcomes are in `outcomes`, by its key.
    by_request: HashMap<String, usize>,
    outcomes: Vec<Outcomes>,
    /// The key being looked up, and the last one found with where (a session calling the
    /// same tool again finds it without hashing).
    key: String,
    last: Option<(String, usize)>,
}

/// Requests a session remembers outcomes for; past that it starts again.
const MEMO_REQUESTS: usize = 512;

impl Memo {
    /// Forgets everything if the rules or the caller changed.
    fn follow(&mut self, book: &Arc<Compiled>, caller: &Arc<Caller>) {
        let same = self.book.as_ref().is_some_and(|b| Arc::ptr_eq(b, book))
            && self.caller.as_ref().is_some_and(|c| Arc::ptr_eq(c, caller));
        if !same {
            self.book = Some(book.clone());
            self.caller = Some(caller.clone());
            self.forget();
        }
    }

    fn forget(&mut self) {
        self.by_request.clear();
        self.outcomes.clear();
        self.last = None;
    }

    /// The outcomes remembered for `r`'s fixed parts (its key written into a buffer the memo
    /// keeps: no allocation for a request seen before).
    fn of(&mut self, r: &Request<'_>) -> &mut Outcomes {
        let key = &mut self.key;
        key.clear();
        for part in [r.server, r.member, r.method, r.tool, r.prompt, r.uri] {
            key.push_str(part);
            key.push('\0');
        }
        let at = match &mut self.last {
            Some((last, at)) if last == key => *at,
            _ => {
                let at = match self.by_request.get(key.as_str()) {
                    Some(at) => *at,
                    None => {
                        if self.outcomes.len() >= MEMO_REQUESTS {
                            self.forget();
                        }
                        self.outcomes.push(Outcomes::default());
                        let at = self.outcomes.len() - 1;
                        self.by_request.insert(self.key.clone(), at);
                        at
                    }
                };
                // The key's buffer becomes the last one's, and the last one's the next key's.
                let mut last = self.last.take().map(|(k, _)| k).unwrap_or_default();
                std::mem::swap(&mut last, &mut self.key);
                self.last = Some((last, at));
                at
            }
        };
        &mut self.outcomes[at]
    }
}

/// The parts of a call the rules judge, from its params.
pub(super) fn call_request<'a>(method: &'a str, params: &'a Value) -> Request<'a> {
    let name = params["name"].as_str().unwrap_or_default();
    match method {
        "tools/call" => Request {
            method,
            tool: name,
            arguments: Some(Arguments::Value(
                params.get("arguments").unwrap_or(&Value::Null),
            )),
            ..Request::default()
        },
        "prompts/get" => Request {
            method,
            prompt: name,
            ..Request::default()
        },
        "completion/complete" => {
            let r = &params["ref"];
            Request {
                method,
                prompt: r["name"].as_str().unwrap_or_default(),
                uri: r["uri"].as_str().unwrap_or_default(),
                ..Request::default()
            }
        }
        _ => Request {
            method,
            uri: params["uri"].as_str().unwrap_or_default(),
            ..Request::default()
        },
    }
}

/// The answer to a denied call: as if what it names did not exist, or a clear refusal.
pub(super) fn refusal(
    id: &str,
    method: &str,
    params: &Value,
    rule: &str,
    denied: DeniedAs,
) -> String {
    if denied == DeniedAs::Error {
        let message = format!("denied by the gateway's rule {rule:?}");
        return jsonrpc::error_response(id, DENIED, &message);
    }
    let name = params["name"].as_str().unwrap_or_default();
    match method {
        "tools/call" => jsonrpc::error_response(
            id,
            jsonrpc::INVALID_PARAMS,
            &format!("Unknown tool: {name}"),
        ),
        "prompts/get" => jsonrpc::error_response(
            id,
            jsonrpc::INVALID_PARAMS,
            &format!("Unknown prompt: {name}"),
        ),
        "completion/complete" => {
            jsonrpc::error_response(id, jsonrpc::INVALID_PARAMS, "Unknown reference")
        }
        _ => {
            let uri = params["uri"].as_str().unwrap_or_default();
            jsonrpc::error_response(
                id,
                RESOURCE_NOT_FOUND,
                &format!("Resource not found: {uri}"),
            )
        }
    }
}

/// The MCP error for a resource that does not exist.
const RESOURCE_NOT_FOUND: i64 = -32002;
/// The gateway's error for a call its rules deny (with `denied: "error"`).
pub const DENIED: i64 = -32003;

pub(super) const JUDGED: &[&str] = &[
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "completion/complete",
];
pub(super) const LISTS: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Each request's fixed parts have outcomes of their own, found again whether the last
    /// lookup was of the same request or another; past the bound the memo starts again.
    #[test]
    fn the_memo_keeps_one_outcome_set_per_request() {
        let mut memo = Memo::default();
        let tool = |tool| Request {
            server: "s",
            method: "tools/call",
            tool,
            ..Request::default()
        };
        // Parts that would run together without their separators are apart.
        let (a, b) = (
            tool("ab"),
            Request {
                member: "a",
                ..tool("b")
            },
        );
        memo.of(&a);
        memo.of(&b);
        let at = |memo: &mut Memo, r: &Request<'_>| memo.of(r) as *const Outcomes;
        let a1 = at(&mut memo, &a);
        let a2 = at(&mut memo, &a);
        let b1 = at(&mut memo, &b);
        let b2 = at(&mut memo, &b);
        assert_eq!((a1, b1), (a2, b2));
        assert_ne!(a1, b1);
        assert_eq!(at(&mut memo, &a), a1);
        assert_eq!(memo.outcomes.len(), 2);
        let names: Vec<String> = (0..MEMO_REQUESTS).map(|i| format!("t{i}")).collect();
        for name in &names {
            memo.of(&tool(name));
        }
        // 510 more fill it; the 511th starts it again, the 512th joins that one.
        assert_eq!(memo.outcomes.len(), 2);
        assert!(memo.last.as_ref().is_some_and(|(_, at)| *at == 1));
        assert_eq!(memo.by_request.len(), memo.outcomes.len());
    }
}

//! Property: under any interleaving of sessions joining and leaving, their requests (with ids
//! that collide across sessions), cancellations, progress, the child answering in any order and
//! the child dying and restarting, every reply reaches the session that sent the request — or
//! nobody — at most once, and every request of a session that stays gets exactly one answer.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Mux, Out};
use crate::mcp::jsonrpc::{self, Kind};

/// Client ids: the same texts in every session, numbers and strings that look alike.
const IDS: [&str; 6] = ["1", "\"1\"", "2", "-7", "\"a\\\"b\"", "1.5e3"];
/// Progress tokens, colliding across sessions too.
const TOKENS: [&str; 3] = ["\"t\"", "1", "\"1\""];
const INIT_ID: &str = "\"init\"";

#[derive(Debug, Clone)]
enum Op {
    Attach,
    Request {
        s: usize,
        id: usize,
        token: Option<usize>,
    },
    Answer {
        pick: usize,
    },
    Progress {
        pick: usize,
    },
    /// The child answers an id the gateway never used, and writes a line that is not JSON.
    Junk {
        n: u64,
    },
    Cancel {
        s: usize,
        id: usize,
    },
    Detach {
        s: usize,
    },
    ChildDies,
    ChildStarts,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Attach),
        8 => (any::<usize>(), 0..IDS.len(), proptest::option::of(0..TOKENS.len()))
            .prop_map(|(s, id, token)| Op::Request { s, id, token }),
        8 => any::<usize>().prop_map(|pick| Op::Answer { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Progress { pick }),
        1 => (1_000_000u64..1_000_040).prop_map(|n| Op::Junk { n }),
        2 => (any::<usize>(), 0..IDS.len()).prop_map(|(s, id)| Op::Cancel { s, id }),
        1 => any::<usize>().prop_map(|s| Op::Detach { s }),
        1 => Just(Op::ChildDies),
        1 => Just(Op::ChildStarts),
    ]
}

/// A request the model child has read and not answered.
struct ChildRequest {
    id: String,
    method: String,
    marker: Option<u64>,
    token: Option<Value>,
}

#[derive(Default)]
struct Model {
    mux: Mux,
    sessions: Vec<Uuid>,
    live: HashSet<Uuid>,
    /// Marker → (session, raw client id, original progress token).
    markers: HashMap<u64, (Uuid, String, Option<String>)>,
    /// (session, raw id) → marker, for requests that still expect an answer.
    outstanding: HashMap<(Uuid, String), u64>,
    /// Markers whose answer may still come, or not (cancelled, or their session left).
    excused: HashSet<u64>,
    answered: HashSet<u64>,
    next_marker: u64,
    child_alive: bool,
    child: Vec<ChildRequest>,
    child_ids: HashSet<String>,
}

impl Model {
    fn new() -> Model {
        Model {
            mux: Mux::new(),
            child_alive: true,
            next_marker: 1,
            ..Default::default()
        }
    }

    fn pick_live(&self, s: usize) -> Option<Uuid> {
        let live: Vec<Uuid> = self
            .sessions
            .iter()
            .copied()
            .filter(|s| self.live.contains(s))
            .collect();
        (!live.is_empty()).then(|| live[s % live.len()])
    }

    fn client(&mut self, s: Uuid, line: String) -> Result<(), TestCaseError> {
        let kind = jsonrpc::classify(line.as_bytes()).map_err(TestCaseError::fail)?;
        let mut out = vec![];
        self.mux.from_client(s, line.as_bytes(), &kind, &mut out);
        self.deliver(out)
    }

    fn child_writes(&mut self, line: Value) -> Result<(), TestCaseError> {
        let mut out = vec![];
        self.mux.from_child(line.to_string().as_bytes(), &mut out);
        self.deliver(out)
    }

    fn deliver(&mut self, out: Vec<Out>) -> Result<(), TestCaseError> {
        for o in out {
            match o {
                Out::Child(line) => self.child_reads(&line)?,
                Out::Session(s, text) => self.session_gets(s, &text)?,
            }
        }
        Ok(())
    }

    fn child_reads(&mut self, line: &[u8]) -> Result<(), TestCaseError> {
        if !self.child_alive {
            // Written to a dead pipe: lost, as in life.
            return Ok(());
        }
        let v: Value =
            serde_json::from_slice(line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let kind = jsonrpc::classify(line).map_err(TestCaseError::fail)?;
        if let Kind::Request { id, method } = kind {
            prop_assert!(
                self.child_ids.insert(id.clone()),
                "child-side id {id} reused while the child lives"
            );
            self.child.push(ChildRequest {
                id,
                method,
                marker: v["params"]["marker"].as_u64(),
                token: v["params"]["_meta"].get("progressToken").cloned(),
            });
        }
        Ok(())
    }

    fn session_gets(&mut self, s: Uuid, text: &str) -> Result<(), TestCaseError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match jsonrpc::classify(text.as_bytes()).map_err(TestCaseError::fail)? {
            Kind::Response { id } if id == INIT_ID => {}
            Kind::Response { id } => {
                if let Some(marker) = v["result"]["marker"].as_u64() {
                    let (owner, raw, _) =
                        self.markers.get(&marker).cloned().ok_or_else(|| {
                            TestCaseError::fail(format!("unknown marker {marker}"))
                        })?;
                    prop_assert_eq!(owner, s, "reply for marker {} to the wrong session", marker);
                    prop_assert_eq!(&raw, &id, "reply for marker {} under the wrong id", marker);
                    prop_assert!(
                        self.answered.insert(marker),
                        "marker {} answered twice",
                        marker
                    );
                    self.outstanding.remove(&(s, id));
                } else {
                    // An error from the gateway (the child died, or is restarting): it must
                    // answer a request this session has in flight.
                    prop_assert!(v.get("error").is_some(), "unexpected response {}", text);
                    let marker = self.outstanding.remove(&(s, id.clone()));
                    prop_assert!(
                        marker.is_some(),
                        "error for id {} that session {} has not in flight: {}",
                        id,
                        s,
                        text
                    );
                    self.answered.insert(marker.unwrap_or_default());
                }
            }
            Kind::Notification { method } if method == "notifications/progress" => {
                let marker = v["params"]["message"].as_str().and_then(|m| m.parse().ok());
                let (owner, _, token) = marker
                    .and_then(|m| self.markers.get(&m).cloned())
                    .ok_or_else(|| {
                        TestCaseError::fail(format!("progress without marker: {text}"))
                    })?;
                prop_assert_eq!(owner, s, "progress to the wrong session");
                prop_assert_eq!(
                    token,
                    Some(v["params"]["progressToken"].to_string()),
                    "progress under the wrong token"
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Attach => {
                let s = Uuid::new_v4();
                self.mux.attach(s);
                self.sessions.push(s);
                self.live.insert(s);
                let init = json!({"jsonrpc": "2.0", "id": "init", "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "p", "version": "1"}}});
                self.client(s, init.to_string())?;
            }
            Op::Request { s, id, token } => {
                let Some(s) = self.pick_live(s) else {
                    return Ok(());
                };
                let id = IDS[id].to_string();
                if self.outstanding.contains_key(&(s, id.clone())) {
                    // A client never reuses an id it has in flight.
                    return Ok(());
                }
                let marker = self.next_marker;
                self.next_marker += 1;
                let token = token.map(|t| TOKENS[t].to_string());
                self.markers.insert(marker, (s, id.clone(), token.clone()));
                self.outstanding.insert((s, id.clone()), marker);
                let meta = token.as_ref().map_or(String::new(), |t| {
                    format!(r#","_meta":{{"progressToken":{t}}}"#)
                });
                self.client(
                    s,
                    format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","marker":{marker}{meta}}}}}"#
                    ),
                )?;
            }
            Op::Answer { pick } => {
                if self.child.is_empty() || !self.child_alive {
                    return Ok(());
                }
                let r = self.child.remove(pick % self.child.len());
                let result = match (r.method.as_str(), r.marker) {
                    ("initialize", _) => json!({"protocolVersion": "2025-11-25",
                        "capabilities": {"tools": {}}, "serverInfo": {"name": "c", "version": "1"}}),
                    (_, Some(m)) => json!({"marker": m}),
                    _ => json!({}),
                };
                let id: Value = serde_json::from_str(&r.id).unwrap_or(Value::Null);
                self.child_writes(json!({"jsonrpc": "2.0", "id": id, "result": result}))?;
            }
            Op::Progress { pick } => {
                let with_token: Vec<usize> = (0..self.child.len())
                    .filter(|i| self.child[*i].token.is_some())
                    .collect();
                if with_token.is_empty() || !self.child_alive {
                    return Ok(());
                }
                let r = &self.child[with_token[pick % with_token.len()]];
                let note = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": r.token, "progress": 1,
                               "message": r.marker.unwrap_or_default().to_string()}});
                self.child_writes(note)?;
            }
            Op::Junk { n } => {
                if self.child_alive {
                    self.child_writes(json!({"jsonrpc": "2.0", "id": n, "result": {"marker": 0}}))?;
                    let mut out = vec![];
                    self.mux.from_child(b"{not json", &mut out);
                    self.deliver(out)?;
                }
            }
            Op::Cancel { s, id } => {
                let Some(s) = self.pick_live(s) else {
                    return Ok(());
                };
                let id = IDS[id].to_string();
                if let Some(marker) = self.outstanding.remove(&(s, id.clone())) {
                    self.excused.insert(marker);
                }
                self.client(
                    s,
                    format!(
                        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id}}}}}"#
                    ),
                )?;
            }
            Op::Detach { s } => {
                let Some(s) = self.pick_live(s) else {
                    return Ok(());
                };
                self.live.remove(&s);
                let gone: Vec<(Uuid, String)> = self
                    .outstanding
                    .keys()
                    .filter(|(o, _)| *o == s)
                    .cloned()
                    .collect();
                for k in gone {
                    if let Some(m) = self.outstanding.remove(&k) {
                        self.excused.insert(m);
                    }
                }
                let mut out = vec![];
                self.mux.detach(s, &mut out);
                self.deliver(out)?;
            }
            Op::ChildDies => {
                if self.child_alive {
                    self.child_alive = false;
                    self.child.clear();
                    self.child_ids.clear();
                    let mut out = vec![];
                    self.mux.child_died("killed", &mut out);
                    self.deliver(out)?;
                }
            }
            Op::ChildStarts => {
                if !self.child_alive {
                    self.child_alive = true;
                    let mut out = vec![];
                    self.mux.child_started(&mut out);
                    self.deliver(out)?;
                }
            }
        }
        Ok(())
    }

    /// The child comes back if it must and answers everything; then every request of a session
    /// that stayed has its one answer.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        self.apply(Op::ChildStarts)?;
        for _ in 0..10_000 {
            if self.child.is_empty() {
                break;
            }
            self.apply(Op::Answer { pick: 0 })?;
        }
        prop_assert!(self.child.is_empty(), "the child never ran out of requests");
        prop_assert!(
            self.outstanding.is_empty(),
            "requests never answered: {:?}",
            self.outstanding
        );
        prop_assert_eq!(self.mux.in_flight(), 0);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_reply_reaches_its_sender_or_nobody(ops in proptest::collection::vec(op(), 1..120)) {
        let mut m = Model::new();
        m.apply(Op::Attach)?;
        for op in ops {
            m.apply(op)?;
        }
        m.settle()?;
    }
}

//! Where a federated session sends a request that names something: a tool or prompt by its
//! group name (known from the last merged list, else by its prefix, else listed first), a
//! resource by its URI (listed, else a template's literal start, else the only member with
//! resources), a completion by what it completes; and the client's notifications (a
//! cancellation by the id its request carries at the member).
//!
//! Owns: name and URI routing. Must not touch: sending (see [`super::session`]).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde_json::Value;

use super::{
    catalog::{self, ListKind, Route},
    session::{FedSession, Pending},
};
use crate::mcp::jsonrpc::{Envelope, Kind};

impl FedSession {
    /// Which member serves a request by name or URI, with the params (raw JSON) it gets there:
    /// only the name is rewritten, the rest (a call's arguments) is copied as it came. `None`:
    /// the method is not one a group routes; `Some(Err)`: nothing of that name.
    pub async fn route(&self, method: &str, raw: &str) -> Option<Result<(usize, String), String>> {
        let (kind, key) = match method {
            "tools/call" => (ListKind::Tools, "name"),
            "prompts/get" => (ListKind::Prompts, "name"),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                (ListKind::Resources, "uri")
            }
            "completion/complete" => return Some(self.completion(raw).await),
            _ => return None,
        };
        let Some(params) = Envelope::parse(raw.as_bytes()) else {
            return Some(Err(format!("{method}: params must be an object")));
        };
        let name: String = params
            .get(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .unwrap_or_default();
        Some(if kind == ListKind::Resources {
            self.resource(&name).await.map(|i| (i, raw.to_string()))
        } else {
            self.lookup(kind, &name).await.map(|(i, own)| {
                let own = Value::String(own).to_string();
                let params = String::from_utf8(params.render(&[(key, &own)])).unwrap_or_default();
                (i, params)
            })
        })
    }

    /// `completion/complete` goes where its prompt or resource template is.
    async fn completion(&self, raw: &str) -> Result<(usize, String), String> {
        let mut params: Value = serde_json::from_str(raw).unwrap_or_default();
        let r = params.get("ref").cloned().unwrap_or_default();
        let routed = match r.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                self.lookup(ListKind::Prompts, name).await.map(|(i, own)| {
                    params["ref"]["name"] = Value::String(own);
                    i
                })
            }
            _ => {
                let uri = r.get("uri").and_then(Value::as_str).unwrap_or("");
                self.resource(uri).await
            }
        };
        routed.map(|i| (i, params.to_string()))
    }

    fn known(&self, kind: ListKind, name: &str) -> Option<Route> {
        self.routing.lock().routes.get(&kind)?.get(name).cloned()
    }

    /// The member and own name of the group's `name`: from the last merged list, else by the
    /// member its prefix names, else from a fresh list. A prefixed name routes without asking
    /// every member for its list (a client that calls before listing — every 2026-07-28
    /// stateless call, which is a group session of its own — costs the group one member's work,
    /// not ten); the member's own filter and renames, a layer around its backend, answer a name
    /// it does not have. Member names that prefix each other (`a`, `a__b`): the longest wins.
    pub async fn lookup(&self, kind: ListKind, name: &str) -> Result<Route, String> {
        if let Some(r) = self.known(kind, name).or_else(|| self.by_prefix(name)) {
            return Ok(r);
        }
        // Boxed: the rare path keeps its state out of every call's future.
        Box::pin(self.merged(kind)).await;
        self.known(kind, name).ok_or_else(|| {
            format!(
                "{} {name:?} is not served by group {:?} (or its member is down)",
                &kind.field()[..kind.field().len() - 1],
                self.group.name
            )
        })
    }

    /// The current member `name` carries as its prefix, and the rest of it (prefixed naming).
    fn by_prefix(&self, name: &str) -> Option<Route> {
        let places = self.places.read();
        let members = places
            .active
            .iter()
            .map(|&i| (i, places.all[i].member.name.as_str()));
        self.group.naming(places.active.len()).split(members, name)
    }

    /// The member that serves resource `uri`: by its list, else by a template, else the only
    /// member with resources.
    async fn resource(&self, uri: &str) -> Result<usize, String> {
        let find = |s: &Self| {
            let r = s.routing.lock();
            let exact = r.routes.get(&ListKind::Resources).and_then(|m| m.get(uri));
            exact.map(|(i, _)| *i).or_else(|| {
                r.routes
                    .get(&ListKind::Templates)
                    .and_then(|t| catalog::template_for(t, uri))
            })
        };
        if let Some(i) = find(self) {
            return Ok(i);
        }
        Box::pin(self.merged(ListKind::Resources)).await;
        Box::pin(self.merged(ListKind::Templates)).await;
        if let Some(i) = find(self) {
            return Ok(i);
        }
        let with: Vec<usize> = self
            .active()
            .into_iter()
            .filter(|(_, s)| s.has(ListKind::Resources))
            .map(|(i, _)| i)
            .collect();
        match with[..] {
            [only] => Ok(only),
            _ => Err(format!(
                "resource {uri:?} is not served by group {:?} (no member lists it)",
                self.group.name
            )),
        }
    }

    /// A notification from the client: `initialized` and `roots/list_changed` reach every
    /// member, a cancellation the member its request went to (under the id it carries there).
    pub(super) async fn notification(&self, line: Bytes, method: &str) {
        match method {
            "notifications/initialized" => {
                self.initialized.store(true, Ordering::Relaxed);
                for (_, slot) in self.active() {
                    slot.tell_initialized().await;
                }
            }
            "notifications/cancelled" => {
                let Some(env) = Envelope::parse(&line) else {
                    return;
                };
                let Some(mut params) = env.params() else {
                    return;
                };
                let theirs = params
                    .get("requestId")
                    .map(Value::to_string)
                    .unwrap_or_default();
                let relayed = {
                    let mut r = self.routing.lock();
                    let found = r
                        .pending
                        .iter()
                        .find(|(_, p)| {
                            matches!(p, Pending::Relay { client_id, .. } if *client_id == theirs)
                        })
                        .map(|(key, _)| *key);
                    found.inspect(|key| {
                        r.pending.remove(key);
                    })
                };
                if let Some((index, ours)) = relayed {
                    params["requestId"] = Value::from(ours);
                    let line = Bytes::from(env.render(&[("params", &params.to_string())]));
                    let kind = Kind::Notification {
                        method: method.to_string(),
                    };
                    self.slot(index).send(line, &kind).await;
                }
            }
            "notifications/roots/list_changed" => {
                let kind = Kind::Notification {
                    method: method.to_string(),
                };
                for (_, slot) in self.active() {
                    slot.send(line.clone(), &kind).await;
                }
            }
            _ => {}
        }
    }
}

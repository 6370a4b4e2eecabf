//! What a federated session answers itself, asking every member at once: `initialize` (the
//! union, with the members' own capabilities), the lists (merged, each member's cached until it
//! says the list changed) and `logging/setLevel`. A member later than the group's member
//! timeout is left out of the answer; it is announced with `list_changed` when it arrives.
//!
//! Owns: fan-out and merging per session. Must not touch: names (see [`super::catalog`]).

use std::sync::{Arc, atomic::Ordering};

use futures::future::join_all;
use serde_json::{Value, json};

use super::{
    catalog::{self, ListKind, Merged},
    session::{Answer, FedSession},
};
use crate::mcp::jsonrpc;

/// Pages of one member's list followed at most (a member that pages forever is cut there).
const MAX_PAGES: usize = 64;

impl FedSession {
    /// Answers the client's `initialize` once every member is up or late.
    pub async fn initialize(&self, id: &str) {
        let group = &self.group;
        let active = self.active();
        let waits = active.iter().map(|(i, _)| async move {
            match tokio::time::timeout(group.timeout, self.ensure_up(*i)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(why)) => Err(why),
                Err(_) => Err(format!("no answer within {:?}", group.timeout)),
            }
        });
        let outcomes = join_all(waits).await;
        for ((_, slot), outcome) in active.iter().zip(&outcomes) {
            if let (true, Err(why)) = (slot.member.required, outcome) {
                let message = format!(
                    "group {:?} cannot serve without its member {:?}: {why}",
                    self.group.name, slot.member.name
                );
                return self.fail(id, jsonrpc::INTERNAL_ERROR, &message);
            }
        }
        let infos: Vec<(&str, Value)> = active
            .iter()
            .filter_map(|(_, slot)| slot.info().map(|info| (slot.member.name.as_str(), info)))
            .collect();
        let asked = self
            .init
            .lock()
            .as_ref()
            .and_then(|p| p.get("protocolVersion").and_then(Value::as_str))
            .map(str::to_string);
        // The oldest revision any member speaks: the client then speaks it to all of them.
        let version = infos
            .iter()
            .filter_map(|(_, info)| info.get("protocolVersion").and_then(Value::as_str))
            .min()
            .map(str::to_string)
            .or(asked)
            .unwrap_or_else(|| crate::mcp::version::HANDSHAKE[3].to_string());
        let instructions: Vec<String> = infos
            .iter()
            .filter_map(|(name, info)| {
                let text = info.get("instructions").and_then(Value::as_str)?;
                Some(format!("## {name}\n{text}"))
            })
            .collect();
        let mut result = json!({
            "protocolVersion": version,
            // Every list a member may have: members that arrive later are announced, so the
            // capabilities cannot depend on who answered first.
            "capabilities": {
                "tools": {"listChanged": true},
                "prompts": {"listChanged": true},
                "resources": {"subscribe": true, "listChanged": true},
                "completions": {},
                "logging": {},
            },
            "serverInfo": {"name": self.group.name, "version": env!("CARGO_PKG_VERSION")},
        });
        if !instructions.is_empty() {
            result["instructions"] = Value::String(instructions.join("\n\n"));
        }
        self.introduced.store(true, Ordering::SeqCst);
        self.to_client(jsonrpc::result_response(id, &result.to_string()));
    }

    /// Answers a list request with every member's items, merged, a page at a time when the
    /// group has a `pageSize` (the cursor names the last item given, so it survives members
    /// coming and going). The same answer again while no member changed (opened, closed, or
    /// said its list did).
    pub async fn list(&self, id: &str, kind: ListKind, cursor: Option<String>) {
        let stamp: Vec<_> = self.active().iter().map(|(i, s)| (*i, s.stamp())).collect();
        let cached = match self.routing.lock().answers.get(&kind) {
            Some(a) if a.stamps == stamp => Some(a.clone()),
            _ => None,
        };
        let answer = match cached {
            Some(a) => a,
            None => {
                let items = Arc::new(self.merged(kind).await.items);
                // Written from the items in place (no copy of them as a `Value`).
                let body = std::collections::BTreeMap::from([(kind.field(), items.as_slice())]);
                let answer = Answer {
                    // Stamped as before the members were asked: a change meanwhile is seen
                    // next time.
                    stamps: stamp,
                    body: serde_json::to_string(&body).unwrap_or_default().into(),
                    items,
                };
                self.routing.lock().answers.insert(kind, answer.clone());
                answer
            }
        };
        let size = self.group.page_size;
        if size == 0 && cursor.is_none() {
            return self.to_client(jsonrpc::result_response(id, &answer.body));
        }
        match catalog::page(kind, &answer.items, cursor.as_deref(), size) {
            Ok((items, next)) => {
                let mut result = json!({ kind.field(): items });
                if let Some(next) = next {
                    result["nextCursor"] = Value::String(next);
                }
                self.to_client(jsonrpc::result_response(id, &result.to_string()));
            }
            Err(e) => self.fail(
                id,
                jsonrpc::INVALID_PARAMS,
                &format!("{}: {e}", kind.method()),
            ),
        }
    }

    /// Every member's `kind` list (from its cache, else asked), merged; the routes are kept.
    pub async fn merged(&self, kind: ListKind) -> Merged {
        let active = self.active();
        let lists = join_all(active.iter().map(|(i, _)| self.items(*i, kind))).await;
        let members: Vec<(usize, &str, &[Value])> = active
            .iter()
            .zip(&lists)
            .filter_map(|((i, slot), items)| {
                Some((*i, slot.member.name.as_str(), items.as_deref()?))
            })
            .collect();
        let merged = catalog::merge(kind, &self.group.naming(active.len()), &members);
        self.group.report(&merged.problems);
        self.routing
            .lock()
            .routes
            .insert(kind, merged.routes.clone());
        merged
    }

    /// Member `index`'s `kind` list, or `None` when it is down, late, or has no such list.
    async fn items(&self, index: usize, kind: ListKind) -> Option<Vec<Value>> {
        let timeout = self.group.timeout;
        let fetch = async {
            let link = self.ensure_up(index).await.ok()?;
            let slot = self.slot(index);
            if !slot.has(kind) {
                return None;
            }
            let (cached, version) = slot.cached(kind);
            if cached.is_some() {
                return cached;
            }
            let mut items = vec![];
            let mut cursor: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let params = match &cursor {
                    Some(c) => json!({"cursor": c}),
                    None => json!({}),
                };
                let result = match self.ask(index, &link, kind.method(), params, timeout).await {
                    Ok(r) => r,
                    Err(e) => {
                        let member = &slot.member.name;
                        tracing::warn!(group = %self.group.name, %member, error = %e, "{} failed; the member is left out", kind.method());
                        return None;
                    }
                };
                if let Some(page) = result.get(kind.field()).and_then(Value::as_array) {
                    items.extend(page.iter().cloned());
                }
                cursor = result
                    .get("nextCursor")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if cursor.is_none() {
                    break;
                }
            }
            slot.store(kind, version, items.clone());
            Some(items)
        };
        tokio::time::timeout(timeout, fetch).await.ok().flatten()
    }

    /// `logging/setLevel`, to every member that logs.
    pub async fn set_level(&self, id: &str, params: Value) {
        let timeout = self.group.timeout;
        join_all(self.active().into_iter().map(|(i, slot)| {
            let params = params.clone();
            async move {
                let Ok(link) = self.up(i).await else { return };
                let logs = slot
                    .info()
                    .is_some_and(|info| info["capabilities"].get("logging").is_some());
                if logs {
                    let _ = self
                        .ask(i, &link, "logging/setLevel", params, timeout)
                        .await;
                }
            }
        }))
        .await;
        self.to_client(jsonrpc::result_response(id, "{}"));
    }
}

//! One member within a federated session: opened through its backend on first use,
//! initialized with the client's own `initialize` params, left out while it is down and
//! reopened after a backoff (1 s, doubling to 30 s) for as long as the session lives. A member
//! that comes back is announced to the client with `list_changed`.
//!
//! Each opening is a *generation*: messages and endings from an earlier one are ignored, so a
//! child that dies after its replacement started cannot take the replacement down.
//!
//! Owns: a member's life within a session. Must not touch: routing (see [`super::session`]).

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    catalog::ListKind,
    session::{FedSession, Pending, error_text},
    slot::{Phase, capabilities},
};
use crate::{
    gateway::backend::{Client, CloseCause, Link},
    mcp::jsonrpc::{self, Kind},
};

/// How long a member's server may take to answer `initialize` at all (npx and uvx servers
/// download on first start); callers stop waiting after the group's member timeout.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl FedSession {
    /// Member `index`'s link once it is up, waiting at most the group's member timeout.
    pub async fn up(&self, index: usize) -> Result<Arc<dyn Link>, String> {
        if let Some(link) = self.slot(index).link_if_up() {
            return Ok(link);
        }
        let timeout = self.group.timeout;
        // Boxed: the rare path keeps its state out of every call's future.
        Box::pin(tokio::time::timeout(timeout, self.ensure_up(index)))
            .await
            .unwrap_or_else(|_| Err(format!("not up within {timeout:?} (memberTimeout)")))
    }

    /// Member `index`'s link, opening it if it is not open (and not in its backoff).
    pub async fn ensure_up(&self, index: usize) -> Result<Arc<dyn Link>, String> {
        let slot = self.slot(index);
        loop {
            let notified = slot.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let start = {
                let mut s = slot.state.lock();
                match &s.phase {
                    Phase::Up => match &s.link {
                        Some(link) => return Ok(link.clone()),
                        None => return Err("no link".into()),
                    },
                    Phase::Starting => None,
                    Phase::Down { until, why } if Instant::now() < *until => {
                        return Err(why.clone());
                    }
                    Phase::Idle | Phase::Down { .. } => {
                        s.generation += 1;
                        s.phase = Phase::Starting;
                        slot.told.store(false, Ordering::SeqCst);
                        Some(s.generation)
                    }
                }
            };
            if let Some(generation) = start {
                let Some(me) = self.me.upgrade() else {
                    return Err("the session has ended".into());
                };
                // On a task of its own: a slow member keeps starting after a caller gave up.
                tokio::spawn(async move { me.start(index, generation).await });
            }
            tokio::select! {
                _ = notified => {}
                _ = self.closed.cancelled() => return Err("the session has ended".into()),
            }
        }
    }

    async fn start(&self, index: usize, generation: u64) {
        let slot = self.slot(index);
        let member = &slot.member;
        let (id, name) = match self.client() {
            Some(c) => (c.id(), c.name().to_string()),
            None => return,
        };
        let client = Arc::new(MemberClient {
            session: self.me.clone(),
            index,
            generation,
            id,
            name,
        });
        let env = match own_env(&self.env, &member.name, member.per_session_env) {
            Ok(env) => env,
            Err(why) => {
                let why = format!(
                    "member {:?} is left out of this session: {why}",
                    member.name
                );
                tracing::info!(group = %self.group.name, member = %member.name, "{why}");
                slot.close(self.group.grace, &why);
                return;
            }
        };
        let link: Arc<dyn Link> = match member.backend.open(client, &env) {
            Ok(link) => Arc::from(link),
            Err(e) => return self.down(index, generation, format!("cannot be opened: {e}")),
        };
        {
            let mut s = slot.state.lock();
            if s.generation != generation {
                drop(s);
                link.release(self.group.grace);
                return;
            }
            s.link = Some(link.clone());
        }
        let params = self.init.lock().clone().unwrap_or_else(|| {
            json!({"protocolVersion": crate::mcp::version::HANDSHAKE.last(),
                   "capabilities": {},
                   "clientInfo": {"name": "aareguru-mcp", "version": env!("CARGO_PKG_VERSION")}})
        });
        let info = match self
            .ask(index, &link, "initialize", params, START_TIMEOUT)
            .await
        {
            Ok(info) => info,
            Err(e) => return self.down(index, generation, format!("initialize: {e}")),
        };
        let kinds = changed_lists(capabilities(&info));
        {
            let mut s = slot.state.lock();
            if s.generation != generation {
                return;
            }
            s.phase = Phase::Up;
            s.info = info;
            s.failures = 0;
            s.lists.clear();
            s.version += 1;
        }
        member.count_up(1);
        tracing::debug!(group = %self.group.name, member = %member.name, "member up");
        slot.changed.notify_waiters();
        if self.initialized.load(Ordering::SeqCst) {
            slot.tell_initialized().await;
        }
        // One that arrives after the client's `initialize` was answered is news to it.
        self.announce(&kinds);
    }

    /// Member `index` (of `generation`) stopped or could not start: it is left out, what waits
    /// on it fails, and it is tried again after a backoff.
    pub fn down(&self, index: usize, generation: u64, why: String) {
        let slot = self.slot(index);
        let member = &slot.member;
        let (link, was_up, info, backoff) = {
            let mut s = slot.state.lock();
            if s.generation != generation || matches!(s.phase, Phase::Down { .. }) {
                return;
            }
            let was_up = matches!(s.phase, Phase::Up);
            s.failures += 1;
            let backoff = Duration::from_secs(1 << (s.failures - 1).min(5)).min(MAX_BACKOFF);
            s.phase = Phase::Down {
                until: Instant::now() + backoff,
                why: format!("member {:?} is down: {why}", member.name),
            };
            s.lists.clear();
            s.version += 1;
            (s.link.take(), was_up, std::mem::take(&mut s.info), backoff)
        };
        if was_up {
            member.count_up(-1);
        }
        slot.changed.notify_waiters();
        let session = self.client().map(|c| c.name().to_string());
        tracing::warn!(group = %self.group.name, member = %member.name, session, %why, retry_in = ?backoff, "member down; left out until it is back");
        let message = format!(
            "member {:?} of group {:?} stopped: {why}",
            member.name, self.group.name
        );
        self.fail_pending(index, &message);
        if let Some(link) = link {
            let grace = self.group.grace;
            tokio::spawn(async move { link.release(grace) });
        }
        if was_up {
            self.announce(&changed_lists(capabilities(&info)));
        }
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            tokio::select! {
                _ = me.closed.cancelled() => {}
                _ = tokio::time::sleep(backoff) => { let _ = me.ensure_up(index).await; }
            }
        });
    }

    /// What waits on member `index` fails with `message`: the client's requests get an error,
    /// the gateway's own see their sender dropped.
    pub fn fail_pending(&self, index: usize, message: &str) {
        let slot = self.slot(index);
        let relays: Vec<String> = {
            let mut r = self.routing.lock();
            let keys: Vec<(usize, u64)> = r
                .pending
                .keys()
                .filter(|(i, _)| *i == index)
                .copied()
                .collect();
            r.asks.retain(|_, (i, _)| *i != index);
            keys.into_iter()
                .filter_map(|k| match r.pending.remove(&k) {
                    Some(Pending::Relay { client_id, since }) => {
                        slot.member.metrics.answered(false, since.elapsed());
                        Some(client_id)
                    }
                    // Dropping the sender tells the waiter.
                    _ => None,
                })
                .collect()
        };
        for id in relays {
            self.fail(&id, jsonrpc::INTERNAL_ERROR, message);
        }
    }

    /// Sends member `index` a request of the gateway's own and waits for its result.
    pub async fn ask(
        &self,
        index: usize,
        link: &Arc<dyn Link>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.routing
            .lock()
            .pending
            .insert((index, id), Pending::Ask(tx));
        let raw = id.to_string();
        let line = jsonrpc::message(Some(&raw), method, Some(&params));
        let kind = Kind::Request {
            id: raw,
            method: method.to_string(),
        };
        let answer = match link.forward(line, &kind).await {
            Ok(()) => tokio::time::timeout(timeout, rx).await,
            Err(e) => {
                self.routing.lock().pending.remove(&(index, id));
                return Err(e.to_string());
            }
        };
        match answer {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(error_text(&error)),
            Ok(Err(_)) => Err("the member stopped".into()),
            Err(_) => {
                self.routing.lock().pending.remove(&(index, id));
                Err(format!("no answer within {timeout:?}"))
            }
        }
    }
}

/// Member `name`'s own variables from a group session's environment (see [`super::scoped`]);
/// `Err` when it takes settings from headers and this session cannot give them.
fn own_env(
    env: &[(String, String)],
    name: &str,
    per_session_env: bool,
) -> Result<Vec<(String, String)>, String> {
    let marker = super::scoped(name, "");
    let mut given = None;
    let mut own = vec![];
    for (k, v) in env {
        match k.strip_prefix(&marker) {
            Some("") => given = Some(v.as_str()),
            Some(var) => own.push((var.to_string(), v.clone())),
            None => {}
        }
    }
    match (per_session_env, given) {
        (false, _) => Ok(vec![]),
        (true, Some("")) => Ok(own),
        (true, Some(why)) => Err(why.to_string()),
        (true, None) => Err(
            "it takes settings from each session's headers (envFromHeaders), so it is served only in sessions".into(),
        ),
    }
}

/// The `list_changed` notifications that concern a member with `capabilities`.
pub(super) fn changed_lists(capabilities: &Value) -> Vec<&'static str> {
    [ListKind::Tools, ListKind::Prompts, ListKind::Resources]
        .into_iter()
        .filter(|k| capabilities.get(k.capability()).is_some())
        .map(ListKind::changed)
        .collect()
}

/// The session, as one member's backend sees it.
struct MemberClient {
    session: Weak<FedSession>,
    index: usize,
    generation: u64,
    id: Uuid,
    name: String,
}

impl Client for MemberClient {
    fn id(&self) -> Uuid {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, message: String) -> bool {
        self.session
            .upgrade()
            .is_none_or(|s| s.member_wrote(self.index, self.generation, message))
    }

    fn send_unbounded(&self, message: String) {
        if let Some(s) = self.session.upgrade() {
            s.member_wrote(self.index, self.generation, message);
        }
    }

    /// The group session's caller, marked as reaching the member through the group.
    fn caller(&self) -> Option<Arc<crate::gateway::caller::Caller>> {
        let session = self.session.upgrade()?;
        let caller = session.client()?.caller()?;
        Some(Arc::new(caller.through(&session.group.name)))
    }

    fn end(&self, cause: CloseCause) {
        let Some(s) = self.session.upgrade() else {
            return;
        };
        match cause {
            // The member's own server ended: only it is left out.
            CloseCause::ChildExited | CloseCause::ChildStartTimeout | CloseCause::Shutdown => {
                s.down(self.index, self.generation, cause.as_str().to_string())
            }
            // The client is the problem (or the session is another replica's): the session ends.
            _ => {
                if let Some(c) = s.client() {
                    c.end(cause);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::own_env;

    #[test]
    fn a_member_gets_only_its_own_variables_from_the_sessions_headers() {
        let env: Vec<(String, String)> = [
            ("gh/", ""),
            ("gh/GITHUB_TOKEN", "t1"),
            ("gh2/", ""),
            ("gh2/GITHUB_TOKEN", "t2"),
            ("slack/", "it needs the x-slack header for each session"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let pair = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(own_env(&env, "gh", true), Ok(pair("GITHUB_TOKEN", "t1")));
        assert_eq!(own_env(&env, "gh2", true), Ok(pair("GITHUB_TOKEN", "t2")));
        // A member without envFromHeaders gets none of them.
        assert_eq!(own_env(&env, "gh", false), Ok(vec![]));
        assert!(
            own_env(&env, "slack", true)
                .unwrap_err()
                .contains("x-slack")
        );
        // A session opened without headers (a stateless request) cannot serve it.
        assert!(
            own_env(&[], "gh", true)
                .unwrap_err()
                .contains("envFromHeaders")
        );
    }
}

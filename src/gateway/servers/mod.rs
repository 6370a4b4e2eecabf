//! The registry: which servers the gateway serves, each with its backend, its session table and
//! its policies — the room the router asks "who serves `/servers/x`?".
//!
//! - The command line's server is served at `/mcp` and `/sse` (unless `--default-server` names
//!   one of the file's), each server of `--config FILE` at `/servers/<name>/mcp` and
//!   `/servers/<name>/sse`.
//! - A reload (SIGHUP, or the file changed) is all or nothing: a file with errors leaves the
//!   running set as it was. Added servers start serving; removed ones take no new sessions and
//!   end when their open sessions have; changed ones serve new sessions with the new settings
//!   while open sessions finish on the old (each setting is a *generation*).
//! - Policies live here as layers around a backend ([`tools`]); backends never learn names.
//!
//! Owns: the set of served servers and its changes. Must not touch: HTTP.

mod calls;
mod checks;
mod judging;
mod layer;
mod layers;
mod limits;
pub mod reload;
pub mod rules;
pub mod search;
pub mod tools;

use parking_lot::{Mutex, RwLock};
use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    backend::{self, Limits},
    federation::{Federation, Member, Roster},
    metrics::{Metrics, ServerMetrics},
    policy::keys::{Keys, Source},
    session::{CloseCause, Session, Sessions},
    stateless::Stateless,
};
use crate::config::{Backend as BackendKind, GatewayConfig, ServerConfig};

/// Told of every session that ends, on every server (the cluster keeps its directory by it).
pub type CloseHook = Arc<dyn Fn(&Session, CloseCause) + Send + Sync>;

/// One generation of one server: its settings, its backend's sessions.
pub struct Served {
    pub config: Arc<ServerConfig>,
    pub sessions: Arc<Sessions>,
    /// Requests of the stateless revision (2026-07-28), served without sessions.
    pub stateless: Arc<Stateless>,
    pub metrics: ServerMetrics,
    pub generation: u64,
    /// Why it could not be started; its sessions are then refused.
    pub failed: Option<String>,
    /// Set when it takes no new sessions (removed or replaced by a newer generation).
    draining: AtomicBool,
    /// A group's members, shared by the group's generations.
    pub members: Option<Arc<GroupMembers>>,
}

/// A group's members, shared by all its generations: a reload that changes them reaches the
/// open sessions of the older generations too.
#[derive(Default)]
pub struct GroupMembers {
    /// The members' generations the group's sessions use, in the group's order.
    pub served: Mutex<Vec<Arc<Served>>>,
    pub roster: Arc<Roster>,
}

impl Served {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Opens a session on this server; `env` comes from its `envFromHeaders`.
    pub fn open(
        &self,
        client: IpAddr,
        env: &[(String, String)],
    ) -> Result<(Arc<Session>, tokio::sync::mpsc::UnboundedReceiver<String>), backend::OpenError>
    {
        self.sessions.open(client, env)
    }

    /// `serving`, `draining` or `failed`.
    fn state(&self) -> &'static str {
        match (&self.failed, self.is_draining()) {
            (Some(_), _) => "failed",
            (None, true) => "draining",
            (None, false) => "serving",
        }
    }

    fn status(&self) -> Value {
        let backend = self.sessions.backend_status();
        let state = self.state();
        let mut v = json!({
            "name": self.config.name,
            "state": state,
            "generation": self.generation,
            "backend": self.config.backend.as_str(),
            "sessions": self.sessions.len(),
            "max_sessions": self.config.max_sessions,
            "children_alive": backend.children_alive,
        });
        if let Some(e) = &self.failed {
            v["error"] = e.clone().into();
        }
        if let Some(spec) = &self.config.child.sandbox {
            v["sandbox"] = backend::sandbox::describe(spec);
        }
        if let Some(search) = &self.config.tool_search {
            v["tool_search"] = json!({
                "mode": if search.activate { "activate" } else { "search" },
                "always_list": search.always_list,
                "max_active": search.max_active,
            });
        }
        if !backend.slots.is_empty() {
            v["shared_children"] = Value::Array(backend.slots);
        }
        if let Some(pool) = backend.pool {
            v["pool"] = pool;
        }
        if let Some(mut group) = backend.members {
            if let Some(list) = group.get_mut("members").and_then(Value::as_array_mut) {
                let served = self
                    .members
                    .as_ref()
                    .map(|g| g.served.lock().clone())
                    .unwrap_or_default();
                for (m, served) in list.iter_mut().zip(&served) {
                    m["state"] = served.state().into();
                    m["generation"] = served.generation.into();
                }
            }
            let key = if self.config.group.is_some() {
                "group"
            } else {
                "remote"
            };
            v[key] = group;
        }
        v["stateless"] = self.stateless.status();
        v
    }
}

#[derive(Default)]
struct Inner {
    /// The command line's server (absent when `--default-server` names a file's server).
    command_line: Option<Arc<Served>>,
    /// The current generation of each of the file's servers.
    by_name: BTreeMap<String, Arc<Served>>,
    /// Earlier generations and removed servers, until their last session ends.
    draining: Vec<Arc<Served>>,
}

/// What `/health` reports of the servers file.
#[derive(Default)]
struct FileState {
    loaded: Option<jiff::Timestamp>,
    error: Option<String>,
    notes: Vec<String>,
}

/// Every server the gateway serves.
pub struct Registry {
    gateway: Arc<GatewayConfig>,
    metrics: Arc<Metrics>,
    on_close: Mutex<Option<CloseHook>>,
    inner: RwLock<Inner>,
    next_generation: AtomicU64,
    file: Mutex<FileState>,
    /// Serializes reloads.
    reloading: tokio::sync::Mutex<()>,
    /// The rules in force (replaced by a reload).
    pub book: Arc<crate::gateway::policy::book::Book>,
    /// The audit log (`--audit-log`).
    pub audit: Option<Arc<crate::gateway::audit::Audit>>,
    /// The limits per caller in force (replaced by a reload).
    pub limits: Arc<limits::Limits>,
    /// The named API keys in force (replaced when their file changes).
    pub keys: Arc<Keys>,
    keys_file: Mutex<reload::KeysFile>,
}

impl Registry {
    /// Starts the command line's server (a failure stops the gateway, as before) and the file's
    /// servers (a failure is reported and leaves that server failed, the others served).
    pub fn start(
        gateway: Arc<GatewayConfig>,
        metrics: Arc<Metrics>,
        on_close: Option<CloseHook>,
    ) -> anyhow::Result<Arc<Registry>> {
        let audit = crate::gateway::audit::Audit::of_gateway(&gateway, &metrics)?;
        let registry = Arc::new(Registry {
            gateway: gateway.clone(),
            metrics,
            on_close: Mutex::new(on_close),
            inner: RwLock::default(),
            next_generation: AtomicU64::new(1),
            file: Mutex::default(),
            reloading: tokio::sync::Mutex::new(()),
            book: Arc::new(
                crate::gateway::policy::book::Book::new(&gateway.policy)
                    .map_err(anyhow::Error::msg)?,
            ),
            keys: Arc::new(Keys::new(
                gateway.api_keys_file.is_some() || gateway.policy.keys.is_some(),
            )),
            keys_file: Mutex::default(),
            audit,
            limits: Arc::new(limits::Limits::new(&gateway.policy.limits)),
        });
        registry.keys.replace(Source::KeysFile, &gateway.named_keys);
        registry.keys_file.lock().loaded = Some(jiff::Timestamp::now());
        let file_keys = gateway.policy.keys.as_deref().unwrap_or_default();
        registry.keys.replace(Source::ServersFile, file_keys);
        if gateway.default_server.is_none() {
            let served = registry.build(Arc::new(gateway.server.clone()), false);
            if let Some(e) = &served.failed {
                anyhow::bail!("{e}");
            }
            registry.inner.write().command_line = Some(served);
        }
        for config in &gateway.servers {
            let served = registry.build(Arc::new(config.clone()), true);
            registry
                .inner
                .write()
                .by_name
                .insert(config.name.clone(), served);
        }
        if let Some(path) = &gateway.servers_file {
            let mut f = registry.file.lock();
            f.loaded = Some(jiff::Timestamp::now());
            f.notes = gateway.servers_notes.clone();
            for note in &f.notes {
                tracing::warn!(file = %path.display(), "{note}");
            }
        }
        Ok(registry)
    }

    /// Sets the close hook (the cluster's) for servers started from now on and existing ones.
    pub fn on_close(&self, hook: CloseHook) {
        for s in self.all() {
            let hook = hook.clone();
            s.sessions
                .on_close(Box::new(move |session, cause| hook(session, cause)));
        }
        *self.on_close.lock() = Some(hook);
    }

    /// Builds and starts one generation of `config`. A file's server whose command is missing
    /// is marked failed at once (the command line's reports it per session, as it always did).
    /// `backend` inside the server's layers: its tool filter, then the rules.
    fn layered(
        &self,
        backend: Arc<dyn backend::Backend>,
        config: &ServerConfig,
        metrics: &ServerMetrics,
    ) -> Arc<dyn backend::Backend> {
        layers::layers(backend, config, metrics, &self.guards())
    }

    fn guards(&self) -> layers::Guards {
        layers::Guards {
            book: self.book.clone(),
            limits: self.limits.clone(),
            audit: self.audit.clone(),
        }
    }

    fn build(&self, config: Arc<ServerConfig>, from_file: bool) -> Arc<Served> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let metrics = ServerMetrics::new(self.metrics.clone(), &config.name);
        let limits = Limits {
            max_line_bytes: self.gateway.max_line_bytes,
            input_bytes: self.gateway.session_buffer_bytes,
            start_timeout: self.gateway.child_start_timeout,
            shutdown_grace: self.gateway.shutdown_grace,
        };
        let mut failed = if from_file && config.group.is_none() && config.remote.is_none() {
            checks::missing_command(&config)
        } else {
            None
        };
        let mut shared = None;
        let built = match &config.group {
            Some(group) => {
                let (members, earlier) = {
                    let inner = self.inner.read();
                    let found: Vec<Arc<Served>> = group
                        .members
                        .iter()
                        .filter_map(|m| inner.by_name.get(m).cloned())
                        .collect();
                    let earlier = inner
                        .by_name
                        .get(&config.name)
                        .and_then(|s| s.members.clone());
                    (found, earlier)
                };
                let g = earlier.unwrap_or_default();
                *g.served.lock() = members.clone();
                let federated = members
                    .iter()
                    .map(|s| {
                        let required = group.required.contains(&s.config.name);
                        let per_session_env = !s.config.env_from_headers.is_empty();
                        Member::new(
                            s.config.name.clone(),
                            s.sessions.backend(),
                            required,
                            per_session_env,
                            metrics.member(&s.config.name),
                        )
                    })
                    .collect();
                let grace = limits.shutdown_grace.min(Duration::from_secs(2));
                let f: Arc<dyn backend::Backend> =
                    Federation::new(&config.name, group, federated, grace, g.roster.clone());
                shared = Some(g);
                Ok(f)
            }
            None => backend::build(config.clone(), limits, metrics.clone()),
        };
        let backend = match built {
            Ok(b) => Some(b),
            Err(e) => {
                failed.get_or_insert_with(|| format!("cannot set up {:?}: {e:#}", config.name));
                None
            }
        };
        let backend = backend.map(|b| self.layered(b, &config, &metrics));
        if failed.is_none()
            && let Some(b) = &backend
            && let Err(e) = b.clone().start()
        {
            failed = Some(format!("{e:#}"));
        }
        let backend = backend.unwrap_or_else(|| Arc::new(checks::NoBackend));
        let stateless = Arc::new(layers::stateless_lane(
            &config,
            &backend,
            limits,
            &metrics,
            self.gateway.input_wait_timeout,
            self.guards(),
        ));
        if let Some(e) = &failed {
            tracing::error!(server = %config.name, error = %e, "server not started; the others are served");
        } else {
            tracing::info!(
                server = %config.name,
                generation,
                backend = config.backend.as_str(),
                command = %match (&config.remote, &config.group, config.backend) {
                    (Some(r), _, _) => r.url.as_str(),
                    (_, Some(_), _) => "(group)",
                    (_, _, BackendKind::InProcess) => "(in-process)",
                    _ => config.child.program.as_str(),
                },
                "server ready"
            );
        }
        let sessions = Sessions::new(
            self.gateway.clone(),
            config.max_sessions,
            metrics.clone(),
            backend,
        );
        if let Some(hook) = self.on_close.lock().clone() {
            sessions.on_close(Box::new(move |session, cause| hook(session, cause)));
        }
        Arc::new(Served {
            config,
            sessions,
            stateless,
            metrics,
            generation,
            failed,
            draining: AtomicBool::new(false),
            members: shared,
        })
    }

    /// The server taking new sessions under `name` (`None`: the one of `/mcp` and `/sse`).
    pub fn serving(&self, name: Option<&str>) -> Option<Arc<Served>> {
        let inner = self.inner.read();
        match name.or(self.gateway.default_server.as_deref()) {
            Some(n) => inner.by_name.get(n).cloned(),
            None => inner.command_line.clone(),
        }
    }

    /// The name of the server at `name`'s path (`None`: the one of `/mcp` and `/sse`).
    pub fn name_at(&self, name: Option<&str>) -> String {
        name.or(self.gateway.default_server.as_deref())
            .unwrap_or(&self.gateway.server.name)
            .to_string()
    }

    /// The server (of any generation, draining ones included) holding session `id` under
    /// `name`.
    pub fn holding(&self, name: Option<&str>, id: &Uuid) -> Option<(Arc<Served>, Arc<Session>)> {
        let wanted = self.name_at(name);
        let inner = self.inner.read();
        let current = match name.or(self.gateway.default_server.as_deref()) {
            Some(n) => inner.by_name.get(n),
            None => inner.command_line.as_ref(),
        };
        current
            .into_iter()
            .chain(inner.draining.iter().filter(|d| d.name() == wanted))
            .find_map(|s| s.sessions.get(id).map(|session| (s.clone(), session)))
    }

    /// Every generation of every server.
    pub fn all(&self) -> Vec<Arc<Served>> {
        let inner = self.inner.read();
        inner
            .command_line
            .iter()
            .chain(inner.by_name.values())
            .chain(inner.draining.iter())
            .cloned()
            .collect()
    }

    /// The names served at `/servers/<name>/`.
    pub fn names(&self) -> Vec<String> {
        self.inner.read().by_name.keys().cloned().collect()
    }

    /// Idle sessions closed everywhere; drained generations stopped and forgotten.
    pub fn reap_idle(&self) {
        for s in self.all() {
            s.sessions.reap_idle();
        }
        let done: Vec<Arc<Served>> = {
            let mut inner = self.inner.write();
            // A generation a group's open sessions still use is kept, even if it has none.
            let in_use: Vec<Arc<Served>> = inner
                .by_name
                .values()
                .chain(inner.draining.iter())
                .filter(|g| !g.sessions.is_empty())
                .filter_map(|g| g.members.as_ref())
                .flat_map(|g| g.served.lock().clone())
                .collect();
            let (done, keep) = std::mem::take(&mut inner.draining)
                .into_iter()
                .partition(|s| s.sessions.is_empty() && !in_use.iter().any(|m| Arc::ptr_eq(m, s)));
            inner.draining = keep;
            done
        };
        for s in done {
            tracing::info!(server = %s.name(), generation = s.generation, "drained; stopped");
            tokio::spawn(async move {
                s.stateless.shutdown().await;
                s.sessions.close_all(Duration::from_secs(2)).await
            });
        }
    }

    /// Closes every session of every server and stops every backend.
    pub async fn close_all(&self, grace: Duration) {
        let all = self.all();
        futures::future::join_all(all.iter().map(|s| async move {
            s.stateless.shutdown().await;
            s.sessions.close_all(grace).await
        }))
        .await;
    }

    /// The servers part of `/health`, and the names of servers that failed to start.
    pub fn status(&self) -> (Value, Vec<String>) {
        let all = self.all();
        let failed = all
            .iter()
            .filter(|s| s.failed.is_some() && !s.is_draining())
            .map(|s| s.name().to_string())
            .collect();
        let servers: Vec<Value> = all.iter().map(|s| s.status()).collect();
        (Value::Array(servers), failed)
    }

    /// What the kernel gives the children's sandboxes, and the children its limits ended.
    pub fn sandbox_status(&self) -> Value {
        backend::sandbox::health()
    }

    /// The servers file part of `/health`.
    pub fn file_status(&self) -> Option<Value> {
        let path = self.gateway.servers_file.as_ref()?;
        let f = self.file.lock();
        Some(json!({
            "path": path.display().to_string(),
            "loaded": f.loaded.map(|t| t.to_string()),
            "last_error": f.error,
            "notes": f.notes,
        }))
    }
}

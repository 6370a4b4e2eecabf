//! The streams of a Streamable HTTP session: which stream each message from the server goes on,
//! and the bounded buffers that let a client resume a stream it lost.
//!
//! A session has logical *streams*: one per POST that carries requests (it ends when their
//! responses are sent) and the listen stream (id 0) for messages unrelated to any request,
//! opened by GET. Every message from the session's server goes on exactly one stream — a
//! response on the stream of its request, a progress notification on the stream of the request
//! that asked for it, anything else on the newest stream still waiting for a response, or else
//! on the listen stream. Each stream keeps a bounded buffer of its events with ids
//! `<stream>-<seq>`; an HTTP connection is just a cursor into that buffer.
//!
//! Owns: routing messages to streams and buffering them. Must not touch: HTTP requests or
//! responses, or the backend.

use parking_lot::{Mutex, RwLock};
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    gateway::{
        servers::search,
        session::{Session, Sessions},
    },
    mcp::{
        jsonrpc::{self, Kind},
        version,
    },
};

/// Events a stream keeps for resumption.
const REPLAY_EVENTS: usize = 1024;
/// Finished POST streams kept for resumption.
const RETIRED_STREAMS: usize = 32;
pub const LISTEN: u64 = 0;

/// One buffered event.
struct Buffered {
    seq: u64,
    response: bool,
    text: Arc<str>,
}

#[derive(Default)]
struct StreamBuf {
    events: VecDeque<Buffered>,
    next_seq: u64,
    /// Responses still expected (POST streams).
    awaiting: usize,
    /// Connections reading it (the POST's own, resumptions). A stream nobody reads gets its
    /// responses (for a later resumption) but no message that names no request.
    readers: usize,
    /// The client's requested/negotiated version says it takes a priming event.
    priming: bool,
}

impl StreamBuf {
    fn done(&self, id: u64) -> bool {
        id != LISTEN && self.awaiting == 0
    }
}

#[derive(Default)]
struct Routes {
    next_stream: u64,
    streams: HashMap<u64, StreamBuf>,
    /// Raw request id → stream waiting for its response.
    waiting: HashMap<String, u64>,
    /// Raw progress token → stream of the request that asked for progress.
    tokens: HashMap<String, u64>,
    retired: VecDeque<u64>,
    /// Listen-stream events not yet sent on any connection.
    listen_cursor: u64,
    /// Set once the session has ended: streams end after what they hold.
    ended: bool,
    /// The raw id of the `initialize` request, to learn the negotiated version.
    init_id: Option<String>,
    version: Option<String>,
    bytes: usize,
    /// Raw ids of `resources/subscribe` (true) and `unsubscribe` (false) requests in flight,
    /// with their URI: a success changes the session's subscriptions.
    subscribing: HashMap<String, (String, bool)>,
    /// The resource URIs the client is subscribed to (kept for a roaming session).
    subscriptions: std::collections::BTreeSet<String>,
    /// Set when `subscriptions` changed since last asked.
    subscriptions_changed: bool,
    /// The tools tool search activated for the session, when they changed since last asked.
    active_changed: Option<Vec<String>>,
}

/// A Streamable HTTP session: the transport state around a gateway [`Session`].
pub struct McpSession {
    pub session: Arc<Session>,
    /// The table holding it (its server's generation).
    pub sessions: Arc<Sessions>,
    /// The name of its server: a request at another server's path does not find it.
    pub server: Arc<str>,
    routes: Mutex<Routes>,
    changed: Notify,
    /// A GET listen connection is open (a second one is refused with 409).
    listening: AtomicBool,
    /// Restored from the directory: the gateway replayed the handshake itself, so the client's
    /// own `notifications/initialized` (if it arrives here) is not passed on again.
    pub restored: bool,
}

/// Every Streamable HTTP session of the gateway.
#[derive(Default)]
pub struct Registry {
    map: RwLock<HashMap<Uuid, Arc<McpSession>>>,
}

impl Registry {
    pub fn get(&self, id: &Uuid) -> Option<Arc<McpSession>> {
        self.map.read().get(id).cloned()
    }

    pub fn insert(&self, mcp: Arc<McpSession>) {
        self.map.write().insert(mcp.session.id, mcp);
    }

    pub fn remove(&self, id: &Uuid) {
        self.map.write().remove(id);
    }
}

impl McpSession {
    /// The transport state of a session opened by the `initialize` request with raw id
    /// `init_id` (its response tells the negotiated version).
    pub fn new(
        session: Arc<Session>,
        sessions: Arc<Sessions>,
        server: &str,
        init_id: &str,
    ) -> Arc<McpSession> {
        Arc::new(McpSession {
            session,
            sessions,
            server: server.into(),
            routes: Mutex::new(Routes {
                init_id: Some(init_id.to_string()),
                ..Default::default()
            }),
            changed: Notify::new(),
            listening: AtomicBool::new(false),
            restored: false,
        })
    }

    /// The state of a roaming session restored here: its negotiated version and subscriptions
    /// are known, its handshake was replayed by the gateway.
    pub fn restored(
        session: Arc<Session>,
        sessions: Arc<Sessions>,
        server: &str,
        version: Option<String>,
        subscriptions: &[String],
    ) -> Arc<McpSession> {
        Arc::new(McpSession {
            session,
            sessions,
            server: server.into(),
            routes: Mutex::new(Routes {
                version,
                subscriptions: subscriptions.iter().cloned().collect(),
                ..Default::default()
            }),
            changed: Notify::new(),
            listening: AtomicBool::new(false),
            restored: true,
        })
    }

    /// The protocol version the session negotiated, once its `initialize` was answered.
    pub fn version(&self) -> Option<String> {
        self.routes.lock().version.clone()
    }

    /// The session's subscriptions, if they changed since the last call.
    pub fn subscriptions_changed(&self) -> Option<Vec<String>> {
        let mut r = self.routes.lock();
        if !std::mem::take(&mut r.subscriptions_changed) {
            return None;
        }
        Some(r.subscriptions.iter().cloned().collect())
    }

    /// The session's active tools (tool search), if they changed since the last call.
    pub fn active_changed(&self) -> Option<Vec<String>> {
        self.routes.lock().active_changed.take()
    }

    /// Notified whenever a stream gets an event or the session ends.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// The session has ended: its streams end after what they hold.
    pub fn end(&self) {
        self.routes.lock().ended = true;
        self.changed.notify_waiters();
    }

    /// A new stream for a POST carrying `requests` (raw ids) among `messages`; their responses,
    /// and progress for their tokens, will go on it. The POST reads it through the returned
    /// [`Reader`]: dropped before [`Reader::forwarded`], the stream is given up; after, the
    /// stream is left to its responses.
    pub fn open_stream(
        self: &Arc<Self>,
        requests: &[String],
        messages: &[(Bytes, Kind)],
    ) -> Reader {
        let id = self.new_stream(requests, messages);
        Reader {
            mcp: self.clone(),
            stream: id,
            forwarded: false,
        }
    }

    fn new_stream(&self, requests: &[String], messages: &[(Bytes, Kind)]) -> u64 {
        let mut r = self.routes.lock();
        r.next_stream += 1;
        let id = r.next_stream;
        for req in requests {
            r.waiting.insert(req.clone(), id);
        }
        for (line, kind) in messages {
            if let Some(token) = progress_token(line) {
                r.tokens.insert(token, id);
            }
            if let Kind::Request { id, method } = kind
                && let Some(subscribe) = match method.as_str() {
                    "resources/subscribe" => Some(true),
                    "resources/unsubscribe" => Some(false),
                    _ => None,
                }
                && let Some(uri) = uri_param(line)
            {
                r.subscribing.insert(id.clone(), (uri, subscribe));
            }
        }
        let version = r.version.clone().or_else(|| init_version(messages));
        r.streams.insert(
            id,
            StreamBuf {
                awaiting: requests.len(),
                readers: 1,
                priming: version.is_some_and(|v| v.as_str() >= version::PRIMING_FROM),
                ..Default::default()
            },
        );
        id
    }

    /// Whether `stream` starts with a priming event (the client is on 2025-11-25 or later).
    pub fn priming(&self, stream: u64) -> bool {
        let r = self.routes.lock();
        r.streams.get(&stream).is_some_and(|b| b.priming)
            || r.version
                .as_deref()
                .is_some_and(|v| v >= version::PRIMING_FROM)
    }

    /// A connection resuming POST stream `stream`, while it is still buffered.
    pub fn resume(self: &Arc<Self>, stream: u64) -> Option<Reader> {
        let mut r = self.routes.lock();
        let buf = r.streams.get_mut(&stream).filter(|_| stream != LISTEN)?;
        buf.readers += 1;
        Some(Reader {
            mcp: self.clone(),
            stream,
            forwarded: true,
        })
    }

    /// Claims the listen stream; `None` when a listen connection is already open. The cursor
    /// starts after `last_seq` when resuming, else after what an earlier listener was sent.
    pub fn listen(self: &Arc<Self>, last_seq: Option<u64>) -> Option<(u64, Reader)> {
        if self.listening.swap(true, Ordering::SeqCst) {
            return None;
        }
        let mut r = self.routes.lock();
        r.streams.entry(LISTEN).or_default();
        let cursor = last_seq.unwrap_or(r.listen_cursor);
        let reader = Reader {
            mcp: self.clone(),
            stream: LISTEN,
            forwarded: true,
        };
        Some((cursor, reader))
    }

    /// A connection stopped reading `stream`.
    fn detach(&self, stream: u64) {
        let mut r = self.routes.lock();
        if let Some(buf) = r.streams.get_mut(&stream) {
            buf.readers = buf.readers.saturating_sub(1);
        }
    }

    /// Forgets `stream` whose requests never reached the server: nothing will answer them.
    fn give_up(&self, stream: u64) {
        let mut r = self.routes.lock();
        let Some(gone) = r.streams.remove(&stream) else {
            return;
        };
        r.bytes -= gone.events.iter().map(|e| e.text.len()).sum::<usize>();
        let ids: Vec<String> = r
            .waiting
            .iter()
            .filter(|(_, s)| **s == stream)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            r.waiting.remove(&id);
            r.subscribing.remove(&id);
        }
        r.tokens.retain(|_, s| *s != stream);
        drop(r);
        self.changed.notify_waiters();
    }

    /// Listen-stream events up to `seq` have been sent on a connection.
    pub fn listen_sent(&self, seq: u64) {
        let mut r = self.routes.lock();
        r.listen_cursor = r.listen_cursor.max(seq);
    }

    /// Routes one message from the server to its stream; false when the session now buffers
    /// more than `limit` bytes (its client is not reading).
    pub fn route(&self, text: String, limit: usize) -> bool {
        let kind = jsonrpc::classify(text.as_bytes()).ok();
        let mut r = self.routes.lock();
        if matches!(&kind, Some(Kind::Notification { method }) if method == "notifications/tools/list_changed")
            && let Some(active) = search::active_of(&text)
        {
            r.active_changed = Some(active);
        }
        let (stream, response) = match &kind {
            Some(Kind::Response { id }) => {
                if r.init_id.as_deref() == Some(id.as_str()) {
                    r.init_id = None;
                    r.version = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["result"]["protocolVersion"].as_str().map(str::to_string));
                }
                if let Some((uri, subscribe)) = r.subscribing.remove(id)
                    && !is_error(&text)
                {
                    let changed = if subscribe {
                        r.subscriptions.insert(uri)
                    } else {
                        r.subscriptions.remove(&uri)
                    };
                    r.subscriptions_changed |= changed;
                }
                match r.waiting.remove(id) {
                    Some(s) => (s, true),
                    None => {
                        tracing::debug!(session = %self.session.id_str, id, "response for no waiting request; dropped");
                        return true;
                    }
                }
            }
            Some(Kind::Notification { method }) if method == "notifications/progress" => {
                let token = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .map(|v| v["params"]["progressToken"].to_string());
                match token.and_then(|t| r.tokens.get(&t).copied()) {
                    Some(s) if r.streams.contains_key(&s) => (s, false),
                    _ => (related(&r), false),
                }
            }
            _ => (related(&r), false),
        };
        let len = text.len();
        r.bytes += len;
        let buf = r.streams.entry(stream).or_default();
        buf.next_seq += 1;
        let seq = buf.next_seq;
        buf.events.push_back(Buffered {
            seq,
            response,
            text: text.into(),
        });
        if response {
            buf.awaiting = buf.awaiting.saturating_sub(1);
        }
        let mut trimmed = 0;
        while buf.events.len() > REPLAY_EVENTS {
            if let Some(old) = buf.events.pop_front() {
                trimmed += old.text.len();
            }
        }
        if buf.done(stream) && stream != LISTEN {
            r.tokens.retain(|_, s| *s != stream);
            r.retired.push_back(stream);
            while r.retired.len() > RETIRED_STREAMS {
                if let Some(old) = r.retired.pop_front()
                    && let Some(gone) = r.streams.remove(&old)
                {
                    trimmed += gone.events.iter().map(|e| e.text.len()).sum::<usize>();
                }
            }
        }
        r.bytes -= trimmed;
        let within = r.bytes <= limit;
        drop(r);
        self.changed.notify_waiters();
        within
    }

    /// Events of `stream` after `cursor`, and whether the stream is finished after them.
    pub fn after(&self, stream: u64, cursor: u64) -> (Vec<(u64, bool, Arc<str>)>, bool) {
        let r = self.routes.lock();
        let Some(buf) = r.streams.get(&stream) else {
            return (vec![], true);
        };
        let events: Vec<_> = buf
            .events
            .iter()
            .filter(|e| e.seq > cursor)
            .map(|e| (e.seq, e.response, e.text.clone()))
            .collect();
        let done = r.ended || buf.done(stream);
        (events, done)
    }
}

/// The stream for a message that names no request: the newest stream still waiting for a
/// response that a connection reads (the request that most likely caused it), else the listen
/// stream — never a stream its client left, where nobody would read it.
fn related(r: &Routes) -> u64 {
    r.streams
        .iter()
        .filter(|(id, b)| **id != LISTEN && b.awaiting > 0 && b.readers > 0)
        .map(|(id, _)| *id)
        .max()
        .unwrap_or(LISTEN)
}

/// A connection reading one stream of a session. However the connection ends — the answer
/// delivered, the client gone, an error returned before the requests reached the server — its
/// drop tells the session: the GET slot is freed, a POST stream whose requests were never
/// forwarded is given up, any other stream loses a reader.
pub struct Reader {
    mcp: Arc<McpSession>,
    pub stream: u64,
    forwarded: bool,
}

impl Reader {
    /// The stream's requests reached the server: from now on their responses are awaited.
    pub fn forwarded(&mut self) {
        self.forwarded = true;
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.stream == LISTEN {
            self.mcp.listening.store(false, Ordering::SeqCst);
        } else if self.forwarded {
            self.mcp.detach(self.stream);
        } else {
            self.mcp.give_up(self.stream);
        }
    }
}

/// The raw `params._meta.progressToken` of a request line.
fn progress_token(line: &[u8]) -> Option<String> {
    if !line.windows(13).any(|w| w == b"progressToken") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let t = &v["params"]["_meta"]["progressToken"];
    (!t.is_null()).then(|| t.to_string())
}

/// `params.uri` of a request line.
fn uri_param(line: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v["params"]["uri"].as_str().map(str::to_string)
}

/// Whether a response is an error (without parsing its result).
fn is_error(text: &str) -> bool {
    jsonrpc::Envelope::parse(text.as_bytes()).is_some_and(|e| e.get("error").is_some())
}

/// The version an `initialize` among `messages` asks for.
fn init_version(messages: &[(Bytes, Kind)]) -> Option<String> {
    messages.iter().find_map(|(line, kind)| match kind {
        Kind::Request { method, .. } if method == "initialize" => {
            let v: serde_json::Value = serde_json::from_slice(line).ok()?;
            v["params"]["protocolVersion"].as_str().map(str::to_string)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session whose backend swallows everything: the streams are driven by hand.
    fn session() -> (Arc<Session>, Arc<Sessions>) {
        use std::time::Duration;

        use futures::future::BoxFuture;

        use crate::gateway::{
            backend::{Backend, Client, ForwardError, Link, OpenError, Status},
            metrics::Metrics,
            session::Sessions,
        };
        struct Sink;
        impl Link for Sink {
            fn forward<'a>(
                &'a self,
                _: Bytes,
                _: &'a Kind,
            ) -> BoxFuture<'a, Result<(), ForwardError>> {
                Box::pin(async { Ok(()) })
            }
            fn release(&self, _: Duration) {}
        }
        struct Swallow;
        impl Backend for Swallow {
            fn kind(&self) -> crate::config::Backend {
                crate::config::Backend::InProcess
            }
            fn start(self: Arc<Self>) -> anyhow::Result<()> {
                Ok(())
            }
            fn open(
                &self,
                _: Arc<dyn Client>,
                _: &[(String, String)],
            ) -> Result<Box<dyn Link>, OpenError> {
                Ok(Box::new(Sink))
            }
            fn status(&self) -> Status {
                Status::default()
            }
            fn shutdown(&self) -> BoxFuture<'_, ()> {
                Box::pin(async {})
            }
        }
        use clap::Parser as _;
        let config = crate::cli::Cli::try_parse_from(["aareguru-mcp", "--sse"])
            .unwrap()
            .into_config()
            .unwrap();
        let crate::config::Mode::Sse(config) = config.mode else {
            unreachable!()
        };
        let metrics = crate::gateway::metrics::ServerMetrics::new(Arc::new(Metrics::new()), "t");
        let sessions = Sessions::new(Arc::new(*config), 10, metrics, Arc::new(Swallow));
        let session = sessions.open("127.0.0.1".parse().unwrap(), &[]).unwrap().0;
        (session, sessions)
    }

    fn request(id: u32, method: &str, uri: &str) -> (Bytes, Kind) {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{"uri":"{uri}"}}}}"#
        );
        let kind = jsonrpc::classify(line.as_bytes()).unwrap();
        (Bytes::from(line), kind)
    }

    #[test]
    fn successful_subscriptions_are_remembered_for_roaming() {
        let (one, sessions) = session();
        let mcp = McpSession::new(one, sessions, "t", "0");
        let msgs = [
            request(1, "resources/subscribe", "a://x"),
            request(2, "resources/subscribe", "a://y"),
        ];
        let mut a = mcp.open_stream(&["1".into(), "2".into()], &msgs);
        a.forwarded();
        assert!(mcp.route(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.into(), usize::MAX));
        assert!(mcp.route(
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"no"}}"#.into(),
            usize::MAX
        ));
        assert_eq!(mcp.subscriptions_changed(), Some(vec!["a://x".to_string()]));
        assert_eq!(mcp.subscriptions_changed(), None);
        let msgs = [request(3, "resources/unsubscribe", "a://x")];
        let mut b = mcp.open_stream(&["3".into()], &msgs);
        b.forwarded();
        mcp.route(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#.into(), usize::MAX);
        assert_eq!(mcp.subscriptions_changed(), Some(vec![]));
        // A restored session starts from what the directory kept.
        let (session, sessions) = session();
        let restored = McpSession::restored(
            session,
            sessions,
            "t",
            Some("2025-06-18".into()),
            &["a://z".into()],
        );
        assert_eq!(restored.version().as_deref(), Some("2025-06-18"));
        assert!(!restored.priming(LISTEN));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// However POSTs, answers and unrelated messages interleave while nobody reads, what a
        /// session keeps for resumption stays bounded — events per stream, finished streams
        /// kept — and its byte count is exactly what it holds (so the slow-client limit is
        /// enforced on the truth).
        #[test]
        fn what_is_kept_for_resumption_is_bounded(
            ops in proptest::collection::vec((0u8..4, 1usize..3000), 1..80)
        ) {
            let (one, sessions) = session();
            let mcp = McpSession::new(one, sessions, "t", "0");
            let mut next_id = 1u32;
            let mut waiting: Vec<u32> = vec![];
            let mut readers: Vec<(Reader, Vec<u32>, bool)> = vec![];
            for (op, n) in ops {
                match op {
                    0 => {
                        let k = n % 4 + 1;
                        let msgs: Vec<_> = (0..k)
                            .map(|i| request(next_id + i as u32, "tools/call", "u"))
                            .collect();
                        let ids: Vec<String> =
                            (0..k).map(|i| (next_id + i as u32).to_string()).collect();
                        let mut reader = mcp.open_stream(&ids, &msgs);
                        // Most POSTs reach the server; some fail before (given up on drop).
                        let sent = n % 5 != 0;
                        let mine: Vec<u32> = (next_id..next_id + k as u32).collect();
                        if sent {
                            reader.forwarded();
                            waiting.extend(&mine);
                        }
                        readers.push((reader, mine, sent));
                        next_id += k as u32;
                    }
                    // A connection goes away (answered, client gone, or refused).
                    3 if !readers.is_empty() => {
                        let (reader, ids, sent) = readers.remove(n % readers.len());
                        let stream = reader.stream;
                        drop(reader);
                        let r = mcp.routes.lock();
                        if !sent {
                            proptest::prop_assert!(!r.streams.contains_key(&stream));
                            for id in ids {
                                proptest::prop_assert!(!r.waiting.contains_key(&id.to_string()));
                            }
                        } else if let Some(b) = r.streams.get(&stream) {
                            proptest::prop_assert_eq!(b.readers, 0);
                        }
                    }
                    1 if !waiting.is_empty() => {
                        let id = waiting.remove(n % waiting.len());
                        mcp.route(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#), usize::MAX);
                    }
                    _ => {
                        for i in 0..n {
                            mcp.route(
                                format!(r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"n":{i}}}}}"#),
                                usize::MAX,
                            );
                        }
                    }
                }
                let r = mcp.routes.lock();
                let held: usize = r
                    .streams
                    .values()
                    .flat_map(|b| b.events.iter().map(|e| e.text.len()))
                    .sum();
                proptest::prop_assert_eq!(r.bytes, held);
                for b in r.streams.values() {
                    proptest::prop_assert!(b.events.len() <= REPLAY_EVENTS);
                }
                let finished = r.streams.iter().filter(|(id, b)| b.done(**id)).count();
                proptest::prop_assert!(finished <= RETIRED_STREAMS, "{} finished streams kept", finished);
            }
        }
    }

    /// A POST stream its client left (or whose requests never reached the server) takes no
    /// message that names no request: those go on the listen stream, where a GET reads them.
    #[test]
    fn a_stream_nobody_reads_takes_no_unrelated_message() {
        let (one, sessions) = session();
        let mcp = McpSession::new(one, sessions, "t", "0");
        let note = || r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#.into();
        let mut left = mcp.open_stream(&["1".into()], &[request(1, "tools/call", "u")]);
        left.forwarded();
        let refused = mcp.open_stream(&["2".into()], &[request(2, "tools/call", "u")]);
        let (r1, r2) = (left.stream, refused.stream);
        mcp.route(note(), usize::MAX);
        assert_eq!(
            mcp.after(r2, 0).0.len(),
            1,
            "the newest read stream takes it"
        );
        drop(refused);
        assert!(mcp.after(r2, 0).1, "given up: finished, nothing kept");
        mcp.route(note(), usize::MAX);
        assert_eq!(mcp.after(r1, 0).0.len(), 1, "the older stream still read");
        drop(left);
        mcp.route(note(), usize::MAX);
        assert_eq!(
            mcp.after(r1, 0).0.len(),
            1,
            "left: no more unrelated messages"
        );
        assert_eq!(
            mcp.after(LISTEN, 0).0.len(),
            1,
            "it went to the listen stream"
        );
        // Its response still lands on it, for a client that resumes it.
        mcp.route(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.into(), usize::MAX);
        let (events, done) = mcp.after(r1, 0);
        assert!(events.last().unwrap().1 && done);
        assert!(mcp.resume(r1).is_some());
        // The refused request's late answer is dropped, and no byte is counted twice.
        mcp.route(r#"{"jsonrpc":"2.0","id":2,"result":{}}"#.into(), usize::MAX);
        let r = mcp.routes.lock();
        let held: usize = r
            .streams
            .values()
            .flat_map(|b| b.events.iter().map(|e| e.text.len()))
            .sum();
        assert_eq!(r.bytes, held);
    }

    #[test]
    fn progress_tokens() {
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":"t"}}}"#;
        assert_eq!(progress_token(line).as_deref(), Some("\"t\""));
        assert_eq!(progress_token(br#"{"id":1}"#), None);
    }
}

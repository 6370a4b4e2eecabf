//! Where a request for a session goes when the session is not held here — and whether a session
//! held here is still this replica's to serve. Pure decisions from what the directory says, so
//! the rules are tested without Redis or sockets.
//!
//! Owns: the routing rules of the cluster. Must not touch: Redis, HTTP, sessions.

use super::entry::{Entry, Peer, RoamState};

/// This replica, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Me<'a> {
    pub replica: &'a str,
    pub incarnation: &'a str,
}

/// Where a request for a session that is not held here goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// Any replica may serve it: restore it here from its roaming state.
    Adopt(RoamState),
    /// Its owner is alive: forward the request there.
    Forward(Peer),
    /// It exists nowhere any more (never did, ended, expired, or its replica is gone): 404, the
    /// client's signal to start a new session.
    Gone(&'static str),
    /// The directory cannot be read right now: 503, try again.
    Unknown,
}

/// Decides for a session not held here, asked for at `server` (`None`: the default one).
/// `entry` is its directory entry, `owner` the owner's heartbeat if it is alive, `forwarded`
/// whether another replica already forwarded the request.
pub fn place(
    entry: Option<&Entry>,
    server: Option<&str>,
    owner: Option<&Peer>,
    me: Me,
    forwarded: bool,
) -> Placement {
    let Some(entry) = entry else {
        return Placement::Gone("no such session");
    };
    if entry.server.as_deref() != server {
        // A session of another server: it does not exist at this path.
        return Placement::Gone("a session of another server");
    }
    if let Some(state) = &entry.roam {
        // Roaming sessions are served wherever the request lands; nothing is forwarded.
        return Placement::Adopt(state.clone());
    }
    if entry.owner == me.replica {
        // Ours by name but not held here: an earlier life of this replica held it.
        return Placement::Gone("the replica that held it restarted");
    }
    if forwarded {
        // A peer sent it here believing this replica owns it; forwarding again could loop.
        return Placement::Gone("a forwarded request is never forwarded again");
    }
    match owner {
        Some(peer) if peer.incarnation == entry.incarnation => Placement::Forward(peer.clone()),
        Some(_) => Placement::Gone("the replica that held it restarted"),
        None => Placement::Gone("the replica that held it is gone"),
    }
}

/// Whether a session held here may still be served here. A roaming session may be served by
/// anyone while it exists; a pinned one only by the incarnation the directory names — a replica
/// that was presumed dead (and whose sessions were given up) must not serve them on its return.
pub fn still_ours(entry: Option<&Entry>, me: Me) -> bool {
    match entry {
        None => false,
        Some(e) if e.roam.is_some() => true,
        Some(e) => e.owner == me.replica && e.incarnation == me.incarnation,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::cluster::entry::Transport;

    const ME: Me = Me {
        replica: "a",
        incarnation: "a-2",
    };

    fn pinned(owner: &str, incarnation: &str) -> Entry {
        Entry {
            owner: owner.into(),
            incarnation: incarnation.into(),
            transport: Transport::Mcp,
            server: None,
            roam: None,
        }
    }

    fn peer(replica: &str, incarnation: &str) -> Peer {
        Peer {
            replica: replica.into(),
            incarnation: incarnation.into(),
            url: format!("http://{replica}"),
            version: "0".into(),
            started: 0,
        }
    }

    #[test]
    fn unknown_sessions_are_gone() {
        assert!(matches!(
            place(None, None, None, ME, false),
            Placement::Gone(_)
        ));
    }

    #[test]
    fn roaming_sessions_are_adopted_wherever_they_land() {
        let state = RoamState {
            initialize: json!({"protocolVersion": "2025-11-25"}),
            version: Some("2025-11-25".into()),
            subscriptions: vec![],
            active: vec![],
            owner: None,
        };
        let e = Entry {
            roam: Some(state.clone()),
            ..pinned("b", "b-1")
        };
        // Whatever the owner's state, and even when forwarded.
        for (owner, fwd) in [(None, false), (Some(peer("b", "b-1")), false), (None, true)] {
            assert_eq!(
                place(Some(&e), None, owner.as_ref(), ME, fwd),
                Placement::Adopt(state.clone())
            );
        }
        assert!(still_ours(Some(&e), ME));
    }

    #[test]
    fn pinned_sessions_go_to_their_live_owner_only() {
        let e = pinned("b", "b-1");
        let b = peer("b", "b-1");
        assert_eq!(
            place(Some(&e), None, Some(&b), ME, false),
            Placement::Forward(b)
        );
        // The owner came back as another incarnation: its children (and the session) are gone.
        assert!(matches!(
            place(Some(&e), None, Some(&peer("b", "b-2")), ME, false),
            Placement::Gone(_)
        ));
        // The owner's heartbeat expired.
        assert!(matches!(
            place(Some(&e), None, None, ME, false),
            Placement::Gone(_)
        ));
    }

    #[test]
    fn a_session_is_only_found_at_its_own_server() {
        let mut e = pinned("b", "b-1");
        e.server = Some("time".into());
        let b = peer("b", "b-1");
        assert_eq!(
            place(Some(&e), Some("time"), Some(&b), ME, false),
            Placement::Forward(b.clone())
        );
        for other in [None, Some("github")] {
            assert!(matches!(
                place(Some(&e), other, Some(&b), ME, false),
                Placement::Gone(_)
            ));
        }
    }

    #[test]
    fn forwarding_never_loops() {
        let e = pinned("b", "b-1");
        assert!(matches!(
            place(Some(&e), None, Some(&peer("b", "b-1")), ME, true),
            Placement::Gone(_)
        ));
    }

    #[test]
    fn a_restarted_replica_does_not_claim_its_predecessors_sessions() {
        // Same replica id, earlier incarnation: the session died with the old process.
        let e = pinned("a", "a-1");
        assert!(matches!(
            place(Some(&e), None, Some(&peer("a", "a-2")), ME, false),
            Placement::Gone(_)
        ));
        assert!(!still_ours(Some(&e), ME));
        assert!(still_ours(Some(&pinned("a", "a-2")), ME));
        assert!(!still_ours(Some(&pinned("b", "a-2")), ME));
        assert!(!still_ours(None, ME));
    }
}

//! What the transports read from requests: `Accept` lists, header values, `Last-Event-ID`
//! positions and the session id of a query string — small parsers of untrusted input, tested
//! with any input.
//!
//! Owns: parsing request headers and queries. Must not touch: sessions, replies.

use warp::http::HeaderMap;

/// Whether an Accept header admits `mime` (`*/*` and `type/*` count).
pub(super) fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    let Some(accept) = headers.get("accept").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let major = mime.split('/').next().unwrap_or("");
    accept.split(',').any(|part| {
        let t = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        t == mime || t == "*/*" || t == format!("{major}/*")
    })
}

/// The stream and position a `Last-Event-ID` names: `[<tag>.]<stream>-<seq>`.
pub(super) fn event_position(value: &str) -> Option<(u64, u64)> {
    let v = value.trim();
    let v = v.rsplit_once('.').map_or(v, |(_, id)| id);
    let (stream, seq) = v.split_once('-')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `session_id` or `sessionId` from a query string.
pub(super) fn session_param(query: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        matches!(k, "session_id" | "sessionId").then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use warp::http::HeaderValue;

    use super::*;

    #[test]
    fn accept_headers() {
        let mut h = HeaderMap::new();
        assert!(!accepts(&h, "application/json"));
        h.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream;q=0.9"),
        );
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        assert!(accepts(&h, "text/event-stream"));
        h.insert("accept", HeaderValue::from_static("text/*"));
        assert!(accepts(&h, "text/event-stream") && !accepts(&h, "application/json"));
    }

    proptest::proptest! {
        #[test]
        fn event_ids_read_back_and_nothing_panics(
            tag in "[a-z0-9.]{0,12}",
            stream: u64,
            seq: u64,
            junk in ".{0,40}",
        ) {
            let id = if tag.is_empty() { format!("{stream}-{seq}") } else { format!("{tag}.{stream}-{seq}") };
            proptest::prop_assert_eq!(event_position(&id), Some((stream, seq)));
            proptest::prop_assert_eq!(event_position(&format!(" {id} ")), Some((stream, seq)));
            let _ = event_position(&junk);
        }

        #[test]
        fn accept_lists_in_any_order(
            others in proptest::collection::vec("[a-z]{1,8}/[a-z+.-]{1,12}(;q=0\\.[0-9])?", 0..5),
            at: usize,
            junk in ".{0,60}",
        ) {
            let mut parts = others.clone();
            parts.insert(at % (parts.len() + 1), "Text/Event-Stream;q=0.5".into());
            let mut h = HeaderMap::new();
            h.insert("accept", HeaderValue::from_str(&parts.join(" , ")).unwrap());
            proptest::prop_assert!(accepts(&h, "text/event-stream"));
            if let Ok(v) = HeaderValue::from_str(&junk) {
                h.insert("accept", v);
                let _ = accepts(&h, "application/json");
            }
        }
    }
    #[test]
    fn session_params() {
        let id = "5e1b7a8e-0000-4000-8000-000000000000";
        assert_eq!(
            session_param(&format!("session_id={id}")).as_deref(),
            Some(id)
        );
        assert_eq!(
            session_param(&format!("x=1&sessionId={id}")).as_deref(),
            Some(id)
        );
        assert_eq!(session_param("x=1"), None);
    }

    proptest::proptest! {
        #[test]
        fn session_params_are_found_among_any_others(
            others in proptest::collection::vec("[a-zA-Z_]{0,8}=?[^&]{0,12}", 0..6),
            at: usize,
            camel: bool,
            junk in ".{0,80}",
        ) {
            let id = "5e1b7a8e-0000-4000-8000-000000000000";
            let others: Vec<String> = others
                .into_iter()
                .filter(|kv| !kv.starts_with("session_id=") && !kv.starts_with("sessionId="))
                .collect();
            let mut parts = others.clone();
            let key = if camel { "sessionId" } else { "session_id" };
            parts.insert(at % (parts.len() + 1), format!("{key}={id}"));
            let found = session_param(&parts.join("&"));
            proptest::prop_assert_eq!(found.as_deref(), Some(id));
            proptest::prop_assert_eq!(session_param(&others.join("&")), None);
            let _ = session_param(&junk);
        }
    }
}

//! `text/event-stream` bodies as a stream of events, parsed by `eventsource-stream` (spec
//! behaviour: comments and unknown fields skipped, `\r\n` and `\r` line ends, UTF-8 split across
//! chunks, the last event id carried forward).
//!
//! Owns: turning bytes into events. Must not touch: what the events mean.

use futures::{Stream, StreamExt, future};

/// One event of an SSE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Event {
    /// `message` unless the event named another type (`endpoint`).
    pub event: String,
    /// The last event id seen on the stream so far, if any (what `Last-Event-ID` resumes from).
    pub id: Option<String>,
    pub data: String,
    /// The `retry:` the server asked for: how long to wait before reconnecting.
    pub retry: Option<std::time::Duration>,
}

/// The events of `body`, ending when the body ends or fails (a broken stream and a closed one
/// mean the same to the bridge: resume or reconnect).
pub(super) fn events<S, B, E>(body: S) -> impl Stream<Item = Event> + Send + Unpin + 'static
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: Send + 'static,
{
    use eventsource_stream::Eventsource;
    Box::pin(
        body.eventsource()
            .take_while(|e| future::ready(e.is_ok()))
            .filter_map(|e| {
                future::ready(e.ok().map(|e| Event {
                    event: e.event,
                    id: (!e.id.is_empty()).then_some(e.id),
                    data: e.data,
                    retry: e.retry,
                }))
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(chunks: &[&'static [u8]]) -> Vec<Event> {
        let body = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        );
        events(body).collect().await
    }

    #[tokio::test]
    async fn events_across_chunks() {
        let e = parse(&[
            b"event: endpoint\ndata: /messages?session_id=1",
            b"\n\n: ping\n\nid: 1-0\ndata:\n\nid: 1-1\nevent: message\ndata: {\"a\":\n",
            b"data: 1}\r\n\r\n",
        ])
        .await;
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].event, "endpoint");
        assert_eq!(e[0].data, "/messages?session_id=1");
        // The priming event: an id and empty data.
        assert_eq!((e[1].id.as_deref(), e[1].data.as_str()), (Some("1-0"), ""));
        assert_eq!(e[2].event, "message");
        assert_eq!(e[2].data, "{\"a\":\n1}");
        assert_eq!(e[2].id.as_deref(), Some("1-1"));
    }

    #[tokio::test]
    async fn unknown_fields_and_split_characters_are_fine() {
        let e = parse(&[b"retry: 100\nfoo: bar\ndata: B\xc3", b"\xa4rn\n\n"]).await;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].data, "Bärn");
        assert_eq!(e[0].event, "message");
        assert_eq!(e[0].retry, Some(std::time::Duration::from_millis(100)));
    }

    #[tokio::test]
    async fn a_failing_body_ends_the_events() {
        let body = futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"data: 1\n\n")),
            Err(std::io::Error::other("reset")),
            Ok(bytes::Bytes::from_static(b"data: 2\n\n")),
        ]);
        let e: Vec<Event> = events(body).collect().await;
        assert_eq!(e.len(), 1);
    }

    fn parse_cut(body: &[u8], cuts: &[usize]) -> Vec<Event> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        at.sort_unstable();
        at.push(body.len());
        let mut from = 0;
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = at
            .into_iter()
            .map(|cut| {
                let c = bytes::Bytes::copy_from_slice(&body[from..cut]);
                from = cut;
                Ok(c)
            })
            .collect();
        futures::executor::block_on(events(futures::stream::iter(chunks)).collect())
    }

    proptest::proptest! {
        /// Whatever the events hold and however the body is cut into reads (through a multibyte
        /// character, between `\r` and `\n`), the same events come out; any bytes at all never
        /// panic.
        #[test]
        fn events_do_not_depend_on_how_the_body_is_cut(
            sent in proptest::collection::vec(
                (proptest::option::of("[a-z]{1,8}"), proptest::option::of("[0-9]{1,3}-[0-9]{1,4}"),
                 proptest::collection::vec("[^\r\n]{0,20}", 1..3), proptest::prelude::any::<bool>()),
                0..6),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..12),
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut body = String::new();
            let mut last_id = None;
            let mut expected = vec![];
            for (event, id, lines, crlf) in &sent {
                let nl = if *crlf { "\r\n" } else { "\n" };
                body.push_str(&format!(": comment{nl}"));
                if let Some(e) = event {
                    body.push_str(&format!("event: {e}{nl}"));
                }
                if let Some(i) = id {
                    body.push_str(&format!("id: {i}{nl}"));
                    last_id = Some(i.clone());
                }
                for l in lines {
                    body.push_str(&format!("data: {l}{nl}"));
                }
                body.push_str(nl);
                expected.push(Event {
                    event: event.clone().unwrap_or_else(|| "message".into()),
                    id: last_id.clone(),
                    data: lines.join("\n"),
                    retry: None,
                });
            }
            let whole = parse_cut(body.as_bytes(), &[]);
            proptest::prop_assert_eq!(&whole, &expected);
            proptest::prop_assert_eq!(parse_cut(body.as_bytes(), &cuts), expected);
            let _ = parse_cut(&junk, &cuts);
        }
    }
}

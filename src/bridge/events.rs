//! Parsing `text/event-stream` bodies into events.

#[derive(Debug, Default, PartialEq)]
pub(super) struct SseEvent {
    pub(super) event: Option<String>,
    pub(super) id: Option<String>,
    pub(super) data: String,
}

/// An incremental `text/event-stream` parser.
#[derive(Default)]
pub(super) struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    pub(super) fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = vec![];
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.has_data || self.current.id.is_some() || self.current.event.is_some() {
                    events.push(std::mem::take(&mut self.current));
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
                None => (line.clone(), String::new()),
            };
            match field.as_str() {
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(&value);
                    self.has_data = true;
                }
                "event" => self.current.event = Some(value),
                "id" => self.current.id = Some(value),
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parsing_across_chunks() {
        let mut p = SseParser::default();
        assert!(
            p.push(b"event: endpoint\ndata: /messages?session_id=1")
                .is_empty()
        );
        let e = p.push(b"\n\n: ping\n\nid: 1-0\ndata:\n\nid: 1-1\nevent: message\ndata: {\"a\":\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].event.as_deref(), Some("endpoint"));
        assert_eq!(e[0].data, "/messages?session_id=1");
        assert_eq!((e[1].id.as_deref(), e[1].data.as_str()), (Some("1-0"), ""));
        let e = p.push(b"data: 1}\r\n\r\n");
        assert_eq!(e[0].data, "{\"a\":\n1}");
        assert_eq!(e[0].id.as_deref(), Some("1-1"));
    }
}

//! The audit log's own checks: canonical hashing, redaction, outcomes, rotation.

use super::*;
use serde_json::json;

/// A fresh directory of this test's own.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("aareguru-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(file: Option<std::path::PathBuf>, max_bytes: u64) -> AuditConfig {
    AuditConfig {
        file,
        max_bytes,
        keep: 1000,
        arguments: true,
        redact: vec!["password".into(), "token".into()],
    }
}

#[test]
fn equal_arguments_hash_equal_whatever_their_order_and_spacing() {
    let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": "é"}], "a": null}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"a":null,"b":[1,{"x":"\u00e9","y":2}]}"#).unwrap();
    assert_eq!(canonical_sha256(&a), canonical_sha256(&b));
    let c: Value = serde_json::from_str(r#"{"a":null,"b":[{"x":"é","y":2},1]}"#).unwrap();
    assert_ne!(canonical_sha256(&a), canonical_sha256(&c));
    // The hash of `{}` by its canonical text.
    assert_eq!(
        canonical_sha256(&json!({})).to_string(),
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    // The canonical text itself: sorted keys at every depth, serde_json's escapes and numbers.
    let mut text = vec![];
    canonical(&b, &mut text);
    assert_eq!(
        String::from_utf8(text).unwrap(),
        r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#
    );
}

#[test]
fn redaction_reaches_every_depth_and_matches_inside_keys() {
    let keys: Vec<String> = ["password", "token", "apikey"]
        .iter()
        .map(|k| normalized_key(k))
        .collect();
    let v = json!({"user": "u", "Access_Token": "t", "nested": [{"api-key": "k", "x": 1}],
        "db": {"PassWord": {"deep": 1}}});
    assert_eq!(
        redact(&v, &keys),
        json!({"user": "u", "Access_Token": "[redacted]", "nested": [{"api-key": "[redacted]", "x": 1}],
            "db": {"PassWord": "[redacted]"}})
    );
}

fn entry(n: usize) -> Entry {
    Entry {
        caller: Some(Arc::new(Caller {
            subject: format!("user-{n}"),
            ..Caller::default()
        })),
        session: "s".into(),
        server: "aareguru".into(),
        method: "tools/call",
        name: "get_current_temperature".into(),
        arguments_sha256: Some(canonical_sha256(&json!({"n": n}))),
        ..Entry::default()
    }
}

/// Every line recorded reaches the files whole, in order, across many rotations.
#[tokio::test]
async fn rotation_loses_no_line_and_splits_none() {
    let dir = scratch("rotation");
    let path = dir.join("audit.log");
    let audit = Audit::start(
        &config(Some(path.clone()), 8 * 1024),
        "r1".into(),
        Counter::default(),
        Counter::default(),
    )
    .unwrap();
    let n = 5_000;
    for i in 0..n {
        audit.record(&entry(i), &Outcome::Ok);
        if i % 500 == 0 {
            // Let the writer run between bursts (the queue holds them all anyway).
            tokio::task::yield_now().await;
        }
    }
    audit.close().await;
    assert_eq!(audit.counts(), (n as u64, 0));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() > 10, "rotated: {files:?}");
    // Oldest first: audit.log.N … audit.log.0, then audit.log.
    let suffix = |p: &std::path::PathBuf| -> i64 {
        match p.extension().and_then(|e| e.to_str()) {
            Some("log") => -1,
            Some(n) => n.parse().unwrap(),
            None => -1,
        }
    };
    files.sort_by_key(|p| std::cmp::Reverse(suffix(p)));
    let mut seen = vec![];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.ends_with('\n'), "{} ends mid-line", f.display());
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            seen.push(v["subject"].as_str().unwrap().to_string());
            assert_eq!(v["outcome"], "ok");
            assert_eq!(v["replica"], "r1");
        }
    }
    let expected: Vec<String> = (0..n).map(|i| format!("user-{i}")).collect();
    assert_eq!(seen, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_line_says_who_what_and_how_it_ended() {
    let dir = scratch("line");
    let path = dir.join("audit.log");
    let audit = Audit::start(
        &config(Some(path.clone()), 1 << 20),
        "r1".into(),
        Counter::default(),
        Counter::default(),
    )
    .unwrap();
    let arguments = json!({"path": "/srv/a", "token": "s3cret"});
    let e = Entry {
        caller: Some(Arc::new(Caller {
            subject: "user-7".into(),
            key: Some(Arc::new(crate::gateway::caller::KeyInfo {
                name: "ci".into(),
                ..Default::default()
            })),
            ..Caller::default()
        })),
        client: Some(Arc::new(ClientInfo {
            name: "inspector".into(),
            version: "1.2".into(),
        })),
        member: Some("files".into()),
        duration: Duration::from_micros(1500),
        bytes_in: 120,
        bytes_out: 80,
        arguments: Some(audit.redacted(&arguments)),
        ..entry(7)
    };
    audit.record(
        &e,
        &Outcome::Denied {
            rule: "gateway.rules[0]".into(),
        },
    );
    audit.close().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("s3cret"));
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["outcome"], "denied");
    assert_eq!(v["rule"], "gateway.rules[0]");
    assert_eq!(v["key"], "ci");
    assert_eq!(v["client"], json!({"name": "inspector", "version": "1.2"}));
    assert_eq!(v["member"], "files");
    assert_eq!(v["durationMs"], 1.5);
    assert_eq!(v["bytesIn"], 120);
    assert_eq!(
        v["arguments"],
        json!({"path": "/srv/a", "token": "[redacted]"})
    );
    assert!(
        v["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    // After the close nothing is written, and it is counted.
    audit.record(&entry(8), &Outcome::Ok);
    assert_eq!(audit.counts(), (1, 1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unanswered_call_says_why_without_a_code_and_a_full_buffer_drops_whole_lines() {
    let dropped = Counter::default();
    let audit = Audit::start(
        &config(Some(scratch("unanswered").join("audit.log")), 1 << 20),
        "r1".into(),
        Counter::default(),
        dropped.clone(),
    )
    .unwrap();
    let mut line = vec![];
    let outcome = Outcome::Unanswered {
        reason: "the session ended before the answer: child exited".into(),
    };
    audit.line(&entry(1), &outcome, &mut line);
    let v: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(v["outcome"], "error");
    assert_eq!(
        v["error"],
        json!({"message": "the session ended before the answer: child exited"})
    );
    assert_eq!(v["subject"], "user-1");
    assert_eq!(v["key"], Value::Null);
    assert_eq!(v["argumentsSha256"].as_str().unwrap().len(), 64);
    // A buffer the writer has not taken yet (its lock held, so the writer cannot take it in
    // between): a line that does not fit is dropped whole, one that fits is added.
    {
        let mut pending = audit.shared.pending.lock();
        pending.bytes.resize(BUFFER - 10, b'x');
        audit.append(&mut pending, &line);
        assert_eq!(dropped.get(), 1);
        assert_eq!(pending.bytes.len(), BUFFER - 10);
        audit.append(&mut pending, b"short\n");
        assert_eq!((dropped.get(), pending.bytes.len()), (1, BUFFER - 4));
        pending.bytes.clear();
        pending.lines = 0;
    }
}

#[test]
fn chunks_end_at_line_ends() {
    let mut out = vec![];
    let batch = b"aaaa\nbb\ncccccccc\nd\n";
    struct Writes<'a>(&'a mut Vec<Vec<u8>>);
    impl std::io::Write for Writes<'_> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    write_chunks(&mut Writes(&mut out), batch, 8).unwrap();
    let pieces: Vec<&[u8]> = out.iter().map(Vec::as_slice).collect();
    assert_eq!(
        pieces,
        [&b"aaaa\nbb\n"[..], b"cccccccc\n", b"d\n"],
        "a piece ends at a line's end; a longer line is a piece of its own"
    );
}

#[test]
fn an_idle_writer_wakes_for_the_next_line_without_the_close() {
    let dir = scratch("idle");
    let path = dir.join("audit.log");
    let written = Counter::default();
    let audit = Audit::start(
        &config(Some(path.clone()), 1 << 20),
        "r1".into(),
        written.clone(),
        Counter::default(),
    )
    .unwrap();
    // Batches after idle spells: each line is written while the log stays open (a writer that
    // slept through its wake-up would leave them pending until the close).
    for n in 1..=3 {
        std::thread::sleep(Duration::from_millis(50));
        audit.record(&entry(n), &Outcome::Ok);
        let waited = std::time::Instant::now();
        while written.get() < n as u64 {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "line {n} not written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A line as serde_json writes it from its fields (the form the hand-written line keeps).
fn serde_line(audit: &Audit, e: &Entry, outcome: &Outcome, time: &str) -> String {
    #[derive(serde::Serialize)]
    struct Client<'a> {
        name: &'a str,
        version: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Error<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
        message: &'a str,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Line<'a> {
        time: &'a str,
        replica: &'a str,
        subject: &'a str,
        key: Option<&'a str>,
        client: Option<Client<'a>>,
        session: &'a str,
        server: &'a str,
        member: Option<&'a str>,
        method: &'a str,
        name: &'a str,
        outcome: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        rule: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<Error<'a>>,
        duration_ms: f64,
        bytes_in: usize,
        bytes_out: usize,
        arguments_sha256: Option<Sha256Digest>,
        #[serde(skip_serializing_if = "Option::is_none")]
        arguments: Option<&'a Value>,
    }
    let ms = e.duration.as_secs_f64() * 1000.0;
    let line = Line {
        time,
        replica: &audit.replica,
        subject: e.caller.as_ref().map_or("", |c| &c.subject),
        key: e.caller.as_ref().and_then(|c| Some(&*c.key.as_ref()?.name)),
        client: e.client.as_ref().map(|c| Client {
            name: &c.name,
            version: &c.version,
        }),
        session: &e.session,
        server: &e.server,
        member: e.member.as_deref(),
        method: e.method,
        name: &e.name,
        outcome: outcome.name(),
        rule: match outcome {
            Outcome::Denied { rule } => Some(rule),
            _ => None,
        },
        limit: match outcome {
            Outcome::Limited { limit } => Some(limit),
            _ => None,
        },
        error: match outcome {
            Outcome::Error { code, message } => Some(Error {
                code: Some(*code),
                message,
            }),
            Outcome::Unanswered { reason } => Some(Error {
                code: None,
                message: reason,
            }),
            _ => None,
        },
        duration_ms: (ms * 1000.0).round() / 1000.0,
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        arguments_sha256: e.arguments_sha256,
        arguments: e.arguments.as_ref(),
    };
    serde_json::to_string(&line).unwrap() + "\n"
}

/// The hand-written line is, byte for byte, what serde_json writes from the same fields —
/// for every outcome, with and without each optional part, with values that need escapes.
#[test]
fn a_line_is_written_as_serde_json_writes_it() {
    let audit = Audit::start(
        &config(Some(scratch("form").join("audit.log")), 1 << 20),
        "replica \"1\"\n".into(),
        Counter::default(),
        Counter::default(),
    )
    .unwrap();
    let outcomes = [
        Outcome::Ok,
        Outcome::ToolError,
        Outcome::Error {
            code: -32602,
            message: "Unknown tool: \"x\"\u{1}é".into(),
        },
        Outcome::Unanswered {
            reason: "the session ended before the answer: child exited".into(),
        },
        Outcome::Denied {
            rule: "servers.files.rules[2] \\ deny".into(),
        },
        Outcome::Limited {
            limit: "per-subject".into(),
        },
        Outcome::Cancelled,
        Outcome::TimedOut,
    ];
    let full = Entry {
        caller: Some(Arc::new(Caller {
            subject: "user\t7 😀".into(),
            key: Some(Arc::new(crate::gateway::caller::KeyInfo {
                name: "c\"i".into(),
                ..Default::default()
            })),
            ..Caller::default()
        })),
        client: Some(Arc::new(ClientInfo {
            name: "inspector</script>".into(),
            version: "1.2\u{7f}".into(),
        })),
        member: Some("files".into()),
        duration: Duration::from_nanos(1_234_567_891),
        bytes_in: 120,
        bytes_out: usize::MAX,
        arguments: Some(json!({"path": "/srv/\"a\"", "n": [1.5, -2, null]})),
        ..entry(7)
    };
    let bare = Entry {
        caller: None,
        arguments_sha256: None,
        duration: Duration::ZERO,
        ..entry(1)
    };
    for e in [&full, &bare] {
        for outcome in &outcomes {
            let mut line = vec![];
            audit.line(e, outcome, &mut line);
            let text = String::from_utf8(line).unwrap();
            // The time as `{:.3}` writes it, whatever second it is.
            let time = &text[9..33];
            assert!(time.parse::<jiff::Timestamp>().is_ok(), "{text}");
            assert_eq!(text, serde_line(&audit, e, outcome, time));
        }
    }
}

/// A line's time, from the second's text it keeps, is what `{:.3}` writes: across seconds,
/// at the edges of the milliseconds, and before 1970.
#[test]
fn a_lines_time_is_rfc3339_with_milliseconds() {
    let nanos = [0, 999_999, 1_000_000, 9_500_000, 123_456_789, 999_999_999];
    for second in [
        0,
        1,
        59,
        1_700_000_000,
        1_796_580_000,
        4_102_444_799,
        -1,
        -86_401,
    ] {
        for n in nanos {
            let t = jiff::Timestamp::new(second, n).unwrap();
            let mut out = vec![];
            write_time(t, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{t:.3}"),
                "{second} {n}"
            );
        }
    }
}

//! Any sequence of sessions joining and leaving, client lines, child lines and child restarts
//! through the shared backend's multiplexer: no panic, and nothing sent to a session that never
//! joined.
#![no_main]

use aareguru_mcp::{
    gateway::backend::mux::{Mux, Out},
    mcp::jsonrpc,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut mux = Mux::new();
    let mut sessions: Vec<uuid::Uuid> = vec![];
    let mut out = vec![];
    // Ops are separated by 0xFF: the op's first byte says what, the rest is the line.
    for op in data.split(|b| *b == 0xFF) {
        let Some((&what, line)) = op.split_first() else {
            continue;
        };
        let pick = |n: usize| (what as usize / 8) % n.max(1);
        match what % 8 {
            0 => {
                let s = uuid::Uuid::from_u128(sessions.len() as u128 + 1);
                mux.attach(s);
                sessions.push(s);
            }
            1 | 2 if !sessions.is_empty() => {
                if let Ok(kind) = jsonrpc::classify(line) {
                    mux.from_client(sessions[pick(sessions.len())], line, &kind, &mut out);
                }
            }
            3 | 4 => mux.from_child(line, &mut out),
            5 if !sessions.is_empty() => mux.detach(sessions[pick(sessions.len())], &mut out),
            6 => mux.child_died("fuzz", &mut out),
            7 => mux.child_started(&mut out),
            _ => {}
        }
        for o in out.drain(..) {
            if let Out::Session(s, _) = o {
                assert!(sessions.contains(&s), "message for a session that never joined");
            }
        }
    }
});

//! Any bytes through what classifies and rewrites a JSON-RPC message.
#![no_main]

use aareguru_mcp::mcp::jsonrpc::{self, Envelope, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let kind = jsonrpc::classify(data);
    let _ = jsonrpc::cancelled_request_id(data);
    let _ = jsonrpc::id_from_prefix(data);
    if let Ok(Kind::Request { id, .. } | Kind::Response { id }) = &kind {
        // A routable id renders into a valid error response.
        let e = jsonrpc::error_response(id, -32603, "x");
        assert!(serde_json_valid(e.as_bytes()), "{e}");
    }
    if let Some(env) = Envelope::parse(data) {
        assert!(serde_json_valid(&env.render(&[("id", "7")])));
    }
});

fn serde_json_valid(b: &[u8]) -> bool {
    jsonrpc::classify(b).is_ok() || Envelope::parse(b).is_some()
}

//! Any byte stream, cut into reads anywhere, through the line framer: the same frames whatever
//! the cuts.
#![no_main]

use aareguru_mcp::mcp::lines::LineFramer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = 256 + data[0] as usize * 4;
    let step = data[1] as usize + 1;
    let body = &data[2..];
    let mut whole = LineFramer::new(max);
    let expected = whole.push(body);
    let mut cut = LineFramer::new(max);
    let mut frames = vec![];
    for chunk in body.chunks(step) {
        frames.extend(cut.push(chunk));
    }
    assert_eq!(frames, expected);
});

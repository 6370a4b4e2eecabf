//! What the spec allows in a tool's name: 1 to 128 of letters, digits, `_ - . /`.
//!
//! Owns: that rule. Must not touch: where names come from.

/// The longest tool name the spec allows.
pub const MAX_TOOL_NAME: usize = 128;

/// Whether `b` may stand in a tool name.
pub fn tool_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')
}

/// Whether `name` is a tool name the spec allows.
pub fn valid_tool_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_TOOL_NAME && name.bytes().all(tool_name_byte)
}

//! Reading a message the way every JSON parser reads it: one with no duplicate key at any depth
//! and no escape but those a JSON writer itself must use (a duplicate is first-wins to some
//! parsers, last-wins to others; an escape such as `\u002f` for `/` is where lenient parsers
//! differ) means the same to all of them, so a relay that judged it may send it on as it came,
//! byte for byte, instead of writing it again.
//!
//! Owns: that test. Must not touch: what the message means.

use std::{borrow::Cow, collections::BTreeSet, marker::PhantomData};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value, value::RawValue};

/// The message's `params` (`Null` when it has none), when the message is a JSON object in
/// which no object repeats a key and whose only escapes are those serde_json writes itself
/// (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, and `\u00XX` for other control characters),
/// so writing it again would change nothing a parser reads; `None` otherwise, and for anything
/// that is not a JSON object.
pub fn unambiguous_params(bytes: &[u8]) -> Option<Value> {
    if !plain_escapes(bytes) {
        return None;
    }
    let top = serde_json::from_slice::<Top<Strict>>(bytes).ok()?;
    Some(top.0.map_or(Value::Null, |p| p.0))
}

/// A call's name and its arguments' text, as read by every parser alike.
#[derive(Debug)]
pub struct Call<'a> {
    /// `params.name`.
    pub name: Cow<'a, str>,
    /// `params.arguments`, as it stands in the message (`None` when there is none).
    pub arguments: Option<&'a RawValue>,
}

/// A `tools/call`'s (or `prompts/get`'s) name and arguments when the message is unambiguous as
/// for [`unambiguous_params`], read without building the arguments: `None` when it is not, or
/// when its params are no object with a string `name`.
pub fn unambiguous_call(bytes: &[u8]) -> Option<Call<'_>> {
    if !plain_escapes(bytes) {
        return None;
    }
    serde_json::from_slice::<Top<Call<'_>>>(bytes).ok()?.0
}

/// A message's `params` read as `P` (`None` when it has none); its other members are checked,
/// not kept.
struct Top<P>(Option<P>);

impl<'de, P: Deserialize<'de>> Deserialize<'de> for Top<P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Top<P>, D::Error> {
        d.deserialize_map(TopVisitor(PhantomData)).map(Top)
    }
}

struct TopVisitor<P>(PhantomData<P>);

impl<'de, P: Deserialize<'de>> Visitor<'de> for TopVisitor<P> {
    type Value = Option<P>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON-RPC message without duplicate keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<P>, A::Error> {
        // Escapes were checked before: every key is borrowed.
        let mut seen = Seen::default();
        let mut params = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            seen.first(key)?;
            match key {
                "params" => params = Some(map.next_value::<P>()?),
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(params)
    }
}

/// A JSON string (a key, a name) borrowed from the text unless it had escapes.
#[derive(serde::Deserialize)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Call<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Call<'de>, D::Error> {
        d.deserialize_map(CallVisitor)
    }
}

struct CallVisitor;

impl<'de> Visitor<'de> for CallVisitor {
    type Value = Call<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a call's params without duplicate keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Call<'de>, A::Error> {
        let mut seen = Seen::default();
        let (mut name, mut arguments) = (None, None);
        while let Some(key) = map.next_key::<&'de str>()? {
            seen.first(key)?;
            match key {
                "name" => name = Some(map.next_value::<Text<'de>>()?.0),
                "arguments" => {
                    let raw = map.next_value::<&'de RawValue>()?;
                    serde_json::from_str::<Checked>(raw.get()).map_err(de::Error::custom)?;
                    arguments = Some(raw);
                }
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        Ok(Call { name, arguments })
    }
}

/// An object's keys so far: a repeat is an error. The first few are kept without allocating.
#[derive(Default)]
struct Seen<'a> {
    few: [&'a str; 8],
    count: usize,
    many: BTreeSet<&'a str>,
}

impl<'a> Seen<'a> {
    fn first<E: de::Error>(&mut self, key: &'a str) -> Result<(), E> {
        let repeated = match self.count {
            n if n < self.few.len() => {
                let repeated = self.few[..n].contains(&key);
                self.few[n] = key;
                repeated
            }
            n => {
                if n == self.few.len() {
                    self.many.extend(self.few);
                }
                !self.many.insert(key)
            }
        };
        self.count += 1;
        match repeated {
            true => Err(E::custom("duplicate key")),
            false => Ok(()),
        }
    }
}

/// Whether every backslash in `bytes` starts an escape exactly as serde_json writes it, so
/// the message written again would carry the very same escapes.
fn plain_escapes(bytes: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = memchr::memchr(b'\\', &bytes[at..]) {
        let escape = &bytes[at + i + 1..];
        let len = match escape {
            [b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f', ..] => 1,
            // `\u00XX`, lowercase, for a control character without a short escape.
            [
                b'u',
                b'0',
                b'0',
                hi @ (b'0' | b'1'),
                lo @ (b'0'..=b'9' | b'a'..=b'f'),
                ..,
            ] if !(*hi == b'0' && matches!(lo, b'8' | b'9' | b'a' | b'c' | b'd')) => 5,
            _ => return false,
        };
        at += i + 1 + len;
    }
    true
}

/// A JSON value refused like [`Strict`] if an object in it repeats a key, but not kept (a
/// message's other members: nothing is built only to be dropped).
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(CheckedVisitor).map(|()| Checked)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON without duplicate keys")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A key with an escape is not borrowed: such a message is refused (and written again).
        let mut seen = Seen::default();
        while let Some(key) = map.next_key::<&'de str>()? {
            map.next_value::<Checked>()?;
            seen.first(key)?;
        }
        Ok(())
    }
}

/// A JSON value whose objects were refused if they repeat a key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON without duplicate keys")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_taken_only_without_escapes_or_repeated_keys() {
        let plain = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"path":"/srv/a","n":[1,2.5,-3,null,true,{"k":{}}]}}}"#;
        let v = unambiguous_params(plain).unwrap();
        assert_eq!(v, serde_json::from_slice::<Value>(plain).unwrap()["params"]);
        assert_eq!(unambiguous_params(br#"{"id":1}"#), Some(Value::Null));
        // Numbers beyond i64/u64 read as serde_json reads them.
        let big =
            br#"{"params":{"n":123456789012345678901234567890,"m":18446744073709551615,"f":1e2}}"#;
        assert_eq!(
            unambiguous_params(big).unwrap(),
            serde_json::from_slice::<Value>(big).unwrap()["params"]
        );
        for refused in [
            // A key repeated at the top, in params, deep in the arguments.
            &br#"{"id":1,"id":2}"#[..],
            br#"{"params":{"name":"a","name":"b"}}"#,
            br#"{"params":{"arguments":{"x":[{"p":1,"p":2}]}}}"#,
            // An escape a writer need not use, even one every strict parser reads alike.
            br#"{"params":{"arguments":{"path":"\u002fetc"}}}"#,
            br#"{"params":{"arguments":{"path":"\/etc"}}}"#,
            br#"{"params":{"arguments":{"path":"/e\u0074c"}}}"#,
            br#"{"params":{"arguments":{"q":"\uD83D\uDE00"}}}"#,
            br#"{"params":{"arguments":{"q":"\u007f"}}}"#,
            // A control character in another form than serde_json's own.
            br#"{"q":"\u001F"}"#,
            br#"{"q":"\u000a"}"#,
            // Not JSON.
            br#"{"params":"#,
            b"\xff",
            br#"[{"params":{}}]"#,
        ] {
            assert!(
                unambiguous_params(refused).is_none(),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        // The escapes a writer must use are taken, and read.
        let text = br#"{"params":{"q":"say \"hi\"\n\tC:\\dir\\\u0001\u001f\b\f\r"}}"#;
        assert_eq!(
            unambiguous_params(text).unwrap()["q"],
            "say \"hi\"\n\tC:\\dir\\\u{1}\u{1f}\u{8}\u{c}\r"
        );
        // A backslash escaped is no escape of what follows it.
        assert!(unambiguous_params(br#"{"p":"\\u002f"}"#).is_some());
        // The same key in sibling objects is no repeat.
        assert!(
            unambiguous_params(br#"{"a":{"k":1},"params":{"a":{"k":1},"b":{"k":2}}}"#).is_some()
        );
        // A key repeated in a member beside `params` (checked, not kept) is refused too.
        assert!(unambiguous_params(br#"{"a":[{"k":1,"k":2}],"params":{}}"#).is_none());
        assert!(unambiguous_params(br#"{"a":[{"k":1},{"k":2}],"params":{}}"#).is_some());
    }

    #[test]
    fn a_call_is_read_without_building_its_arguments() {
        let plain = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"k":[1]},"arguments":{"path":"/srv/a","n":[1,{"k":{}}]},"name":"echo"}}"#;
        let call = unambiguous_call(plain).unwrap();
        assert!(matches!(call.name, Cow::Borrowed("echo")));
        assert_eq!(
            call.arguments.map(RawValue::get),
            Some(r#"{"path":"/srv/a","n":[1,{"k":{}}]}"#)
        );
        // A name with the escapes a writer must use is read; arguments may be absent.
        let escaped = br#"{"params":{"name":"say \"hi\"\n"}}"#;
        let call = unambiguous_call(escaped).unwrap();
        assert_eq!(call.name, "say \"hi\"\n");
        assert!(call.arguments.is_none());
        for refused in [
            // A key repeated in the arguments, in params, at the top.
            &br#"{"params":{"name":"a","arguments":{"x":[{"p":1,"p":2}]}}}"#[..],
            br#"{"params":{"name":"a","name":"b"}}"#,
            br#"{"params":{"name":"a","arguments":{},"arguments":{}}}"#,
            br#"{"id":1,"id":1,"params":{"name":"a"}}"#,
            br#"{"a":[{"k":1,"k":2}],"params":{"name":"a"}}"#,
            // An escape a writer need not use.
            br#"{"params":{"name":"a","arguments":{"path":"\/etc"}}}"#,
            br#"{"params":{"name":"\u0061"}}"#,
            // No name, a name that is no string, params that are no object.
            br#"{"params":{"arguments":{}}}"#,
            br#"{"params":{"name":1}}"#,
            br#"{"params":["a"]}"#,
            br#"{"params":null}"#,
            br#"{"id":1}"#,
            br#"{"params":{"name":"a","arguments":{"#,
        ] {
            assert!(
                unambiguous_call(refused).is_none(),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn a_repeat_is_found_among_many_keys() {
        let keys = |n: usize| (0..n).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>();
        for n in [1, 7, 8, 9, 20] {
            let distinct = format!(
                r#"{{"params":{{"name":"a","arguments":{{{}}}}}}}"#,
                keys(n).join(",")
            );
            assert!(unambiguous_call(distinct.as_bytes()).is_some(), "{n}");
            assert!(unambiguous_params(distinct.as_bytes()).is_some(), "{n}");
            // The last key again, and the first again after all the others.
            for again in [format!("\"k{}\":0", n - 1), "\"k0\":0".to_string()] {
                let mut all = keys(n);
                all.push(again);
                let text = format!(
                    r#"{{"params":{{"name":"a","arguments":{{{}}}}}}}"#,
                    all.join(",")
                );
                assert!(unambiguous_call(text.as_bytes()).is_none(), "{text}");
                let top = format!(r#"{{{},"params":{{}}}}"#, all.join(","));
                assert!(unambiguous_params(top.as_bytes()).is_none(), "{top}");
            }
        }
    }

    #[test]
    fn whatever_serde_json_writes_is_taken_as_it_reads() {
        // Every ASCII character and some beyond, alone and in a key, as serde_json writes them.
        let chars = (0u32..0x80).chain([0xe9, 0x2028, 0xfeff, 0x1f600]);
        for c in chars.filter_map(char::from_u32) {
            let text = format!("a{c}b");
            let value = serde_json::json!({"params": {"arguments": {&text: [text.clone(), 1.5]}}});
            let bytes = serde_json::to_vec(&value).unwrap();
            assert_eq!(
                unambiguous_params(&bytes),
                Some(value["params"].clone()),
                "{c:?}"
            );
        }
    }
}

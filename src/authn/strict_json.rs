//! JSON with one meaning: an object that names a member twice, at any depth, is refused.
//!
//! RFC 8259 leaves duplicate names to the parser, and parsers disagree: serde_json's `Value`
//! keeps the last, Go's `encoding/json` (kube-apiserver, many audit pipelines) also the last,
//! others the first or an error. A token, an introspection answer or a claims source that two
//! readers can read differently is not one we decide on.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as a JSON object in which no object, at any depth, repeats a member name
/// (compared after unescaping, so `"a"` and `"\u0061"` are the same name).
pub fn object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Strict>(bytes).ok()?.0 {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON without duplicate member names")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Strict, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom("duplicate member name"));
            }
            let Strict(value) = access.next_value()?;
            map.insert(name, value);
        }
        Ok(Strict(Value::Object(map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_name_is_refused_at_any_depth() {
        for doc in [
            r#"{"a":1,"a":1}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"x":{"groups":["dev"],"groups":["admins"]}}"#,
            r#"{"x":[{"k":1},{"k":1,"k":2}]}"#,
            r#"{"x":[[[{"deep":{"a":null,"a":null}}]]]}"#,
        ] {
            assert_eq!(object(doc.as_bytes()), None, "{doc}");
        }
    }

    #[test]
    fn the_same_name_in_different_objects_is_fine_and_values_are_kept() {
        let doc = r#"{"a":{"k":1},"b":{"k":[1.5,-2,"s",true,null,{"k":18446744073709551615}]}}"#;
        let parsed = object(doc.as_bytes()).unwrap();
        assert_eq!(Value::Object(parsed), serde_json::from_str::<Value>(doc).unwrap());
    }

    #[test]
    fn only_an_object_is_an_object() {
        for doc in ["[]", "1", "\"s\"", "null", "{", "{\"a\":1}x"] {
            assert_eq!(object(doc.as_bytes()), None, "{doc}");
        }
    }
}

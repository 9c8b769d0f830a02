//! A compact binary encoding of component values, directed by their type
//! (no tags or names on the wire: both ends know the function's type).
//! This is how values will cross process and machine boundaries.
//!
//! Integers are LEB128 (signed ones zigzagged), floats little-endian,
//! strings and lists a length then their contents (`list<u8>` as raw
//! bytes), records and tuples their fields in order, variants, enums and
//! options a case index then the payload, flags a bitset. Decoding
//! arbitrary bytes never panics: it returns an error.

use wasmtime::component::Val;
use wasmtime::component::types::Type;

/// Why bytes did not decode (or a value could not be encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError(message.into()))
}

/// Append `value` (of type `ty`) to `out`.
pub fn encode(value: &Val, ty: &Type, out: &mut Vec<u8>) -> Result<(), CodecError> {
    match (ty, value) {
        (Type::Bool, Val::Bool(b)) => out.push(*b as u8),
        (Type::S8, Val::S8(v)) => out.push(*v as u8),
        (Type::U8, Val::U8(v)) => out.push(*v),
        (Type::S16, Val::S16(v)) => put_signed(out, *v as i64),
        (Type::U16, Val::U16(v)) => put_unsigned(out, *v as u64),
        (Type::S32, Val::S32(v)) => put_signed(out, *v as i64),
        (Type::U32, Val::U32(v)) => put_unsigned(out, *v as u64),
        (Type::S64, Val::S64(v)) => put_signed(out, *v),
        (Type::U64, Val::U64(v)) => put_unsigned(out, *v),
        (Type::Float32, Val::Float32(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (Type::Float64, Val::Float64(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (Type::Char, Val::Char(c)) => put_unsigned(out, *c as u64),
        (Type::String, Val::String(s)) => {
            put_unsigned(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        (Type::List(list), Val::List(items)) => {
            put_unsigned(out, items.len() as u64);
            let element = list.ty();
            for item in items {
                encode(item, &element, out)?;
            }
        }
        (Type::Record(record), Val::Record(fields)) => {
            for (field, (_, value)) in record.fields().zip(fields) {
                encode(value, &field.ty, out)?;
            }
        }
        (Type::Tuple(tuple), Val::Tuple(items)) => {
            for (ty, item) in tuple.types().zip(items) {
                encode(item, &ty, out)?;
            }
        }
        (Type::Variant(variant), Val::Variant(name, payload)) => {
            let Some((index, case)) = variant.cases().enumerate().find(|(_, c)| c.name == name)
            else {
                return err(format!("no variant case {name}"));
            };
            put_unsigned(out, index as u64);
            if let (Some(ty), Some(payload)) = (case.ty, payload) {
                encode(payload, &ty, out)?;
            }
        }
        (Type::Enum(e), Val::Enum(name)) => {
            let Some(index) = e.names().position(|n| n == name) else {
                return err(format!("no enum case {name}"));
            };
            put_unsigned(out, index as u64);
        }
        (Type::Option(option), Val::Option(value)) => match value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                encode(v, &option.ty(), out)?;
            }
        },
        (Type::Result(result), Val::Result(value)) => {
            let (tag, payload, ty) = match value {
                Ok(v) => (0, v, result.ok()),
                Err(v) => (1, v, result.err()),
            };
            out.push(tag);
            if let (Some(ty), Some(v)) = (ty, payload) {
                encode(v, &ty, out)?;
            }
        }
        (Type::Flags(flags), Val::Flags(set)) => {
            let names: Vec<&str> = flags.names().collect();
            let mut bits = vec![0u8; names.len().div_ceil(8)];
            for name in set {
                let Some(i) = names.iter().position(|n| n == name) else {
                    return err(format!("no flag {name}"));
                };
                bits[i / 8] |= 1 << (i % 8);
            }
            out.extend_from_slice(&bits);
        }
        (Type::Map(map), Val::Map(entries)) => {
            put_unsigned(out, entries.len() as u64);
            let (k, v) = (map.key(), map.value());
            for (key, value) in entries {
                encode(key, &k, out)?;
                encode(value, &v, out)?;
            }
        }
        (ty, _) => return err(format!("cannot encode a value as {}", super::describe(ty))),
    }
    Ok(())
}

/// Read one value of type `ty` from the front of `input`.
pub fn decode(input: &mut &[u8], ty: &Type) -> Result<Val, CodecError> {
    decode_at(input, ty, 0)
}

/// Values nest no deeper than this (a bound against hostile input).
const MAX_DEPTH: usize = 100;

fn decode_at(input: &mut &[u8], ty: &Type, depth: usize) -> Result<Val, CodecError> {
    if depth > MAX_DEPTH {
        return err("value nested too deeply");
    }
    Ok(match ty {
        Type::Bool => match take(input, 1)?[0] {
            0 => Val::Bool(false),
            1 => Val::Bool(true),
            b => return err(format!("bad bool byte {b}")),
        },
        Type::S8 => Val::S8(take(input, 1)?[0] as i8),
        Type::U8 => Val::U8(take(input, 1)?[0]),
        Type::S16 => Val::S16(narrow(get_signed(input)?)?),
        Type::U16 => Val::U16(narrow(get_unsigned(input)?)?),
        Type::S32 => Val::S32(narrow(get_signed(input)?)?),
        Type::U32 => Val::U32(narrow(get_unsigned(input)?)?),
        Type::S64 => Val::S64(get_signed(input)?),
        Type::U64 => Val::U64(get_unsigned(input)?),
        Type::Float32 => Val::Float32(f32::from_le_bytes(
            take(input, 4)?.try_into().expect("4 bytes"),
        )),
        Type::Float64 => Val::Float64(f64::from_le_bytes(
            take(input, 8)?.try_into().expect("8 bytes"),
        )),
        Type::Char => {
            let code: u32 = narrow(get_unsigned(input)?)?;
            Val::Char(
                char::from_u32(code).ok_or_else(|| CodecError(format!("bad char {code:#x}")))?,
            )
        }
        Type::String => {
            let len = get_len(input)?;
            let bytes = take(input, len)?;
            Val::String(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| CodecError("string is not UTF-8".into()))?,
            )
        }
        Type::List(list) => {
            let len = get_len(input)?;
            let element = list.ty();
            if element == Type::U8 {
                Val::List(take(input, len)?.iter().map(|&b| Val::U8(b)).collect())
            } else {
                // Every element takes at least one byte, except empty records
                // and tuples; bound the count by the input either way.
                let mut items = Vec::with_capacity(len.min(input.len()));
                for _ in 0..len {
                    items.push(decode_at(input, &element, depth + 1)?);
                }
                Val::List(items)
            }
        }
        Type::Record(record) => Val::Record(
            record
                .fields()
                .map(|f| Ok((f.name.to_string(), decode_at(input, &f.ty, depth + 1)?)))
                .collect::<Result<_, CodecError>>()?,
        ),
        Type::Tuple(tuple) => Val::Tuple(
            tuple
                .types()
                .map(|t| decode_at(input, &t, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Type::Variant(variant) => {
            let index = get_len(input)?;
            let Some(case) = variant.cases().nth(index) else {
                return err(format!("bad variant case {index}"));
            };
            let payload = match case.ty {
                Some(ty) => Some(Box::new(decode_at(input, &ty, depth + 1)?)),
                None => None,
            };
            Val::Variant(case.name.to_string(), payload)
        }
        Type::Enum(e) => {
            let index = get_len(input)?;
            let Some(name) = e.names().nth(index) else {
                return err(format!("bad enum case {index}"));
            };
            Val::Enum(name.to_string())
        }
        Type::Option(option) => match take(input, 1)?[0] {
            0 => Val::Option(None),
            1 => Val::Option(Some(Box::new(decode_at(input, &option.ty(), depth + 1)?))),
            b => return err(format!("bad option tag {b}")),
        },
        Type::Result(result) => {
            let tag = take(input, 1)?[0];
            let ty = match tag {
                0 => result.ok(),
                1 => result.err(),
                b => return err(format!("bad result tag {b}")),
            };
            let payload = match ty {
                Some(ty) => Some(Box::new(decode_at(input, &ty, depth + 1)?)),
                None => None,
            };
            Val::Result(if tag == 0 { Ok(payload) } else { Err(payload) })
        }
        Type::Flags(flags) => {
            let names: Vec<&str> = flags.names().collect();
            let bits = take(input, names.len().div_ceil(8))?;
            let mut set = Vec::new();
            for (i, name) in names.iter().enumerate() {
                if bits[i / 8] & (1 << (i % 8)) != 0 {
                    set.push(name.to_string());
                }
            }
            Val::Flags(set)
        }
        Type::Map(map) => {
            let len = get_len(input)?;
            let (k, v) = (map.key(), map.value());
            let mut entries = Vec::with_capacity(len.min(input.len()));
            for _ in 0..len {
                entries.push((
                    decode_at(input, &k, depth + 1)?,
                    decode_at(input, &v, depth + 1)?,
                ));
            }
            Val::Map(entries)
        }
        other => {
            return err(format!(
                "values of type {} cannot cross nodes",
                super::describe(other)
            ));
        }
    })
}

pub(crate) fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], CodecError> {
    if input.len() < n {
        return err(format!(
            "input ends early: wanted {n} more bytes, {} left",
            input.len()
        ));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

pub(crate) fn put_unsigned(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_unsigned(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn get_unsigned(input: &mut &[u8]) -> Result<u64, CodecError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take(input, 1)?[0];
        let bits = (byte & 0x7f) as u64;
        if shift == 63 && bits > 1 {
            return err("integer overflows 64 bits");
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    err("integer longer than 10 bytes")
}

fn get_signed(input: &mut &[u8]) -> Result<i64, CodecError> {
    let v = get_unsigned(input)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// A length: no larger than what could follow.
pub(crate) fn get_len(input: &mut &[u8]) -> Result<usize, CodecError> {
    let len = get_unsigned(input)?;
    usize::try_from(len).map_err(|_| CodecError(format!("length {len} too large")))
}

fn narrow<T: TryFrom<V>, V: Copy + std::fmt::Display>(v: V) -> Result<T, CodecError> {
    T::try_from(v).map_err(|_| CodecError(format!("integer {v} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::Component;
    use wasmtime::{Config, Engine};

    /// The types of a test component's function `f` (params, then result);
    /// `named` declares named types ($rec, $var, $en, $fl) the signature uses.
    fn types_with(named: &str, wit_params: &str, wit_result: &str) -> (Vec<Type>, Type) {
        let wat = format!(
            r#"(component
                {named}
                (type $t (func {wit_params} (result {wit_result})))
                (import "f" (func (type $t)))
            )"#
        );
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, wat::parse_str(&wat).unwrap()).unwrap();
        let ty = component.component_type();
        let (_, item) = ty.imports(&engine).next().unwrap();
        let wasmtime::component::types::ComponentItem::ComponentFunc(f) = item.ty else {
            panic!()
        };
        (
            f.params().map(|(_, t)| t).collect(),
            f.results().next().unwrap(),
        )
    }

    fn types(wit_params: &str, wit_result: &str) -> (Vec<Type>, Type) {
        types_with("", wit_params, wit_result)
    }

    fn roundtrip(value: Val, ty: &Type) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(&value, ty, &mut bytes).unwrap();
        let mut input = bytes.as_slice();
        assert_eq!(decode(&mut input, ty).unwrap(), value);
        assert!(input.is_empty(), "decode consumed every byte");
        bytes
    }

    #[test]
    fn scalars_strings_and_byte_lists_roundtrip_compactly() {
        let (params, result) = types(
            r#"(param "a" u64) (param "b" s32) (param "c" string) (param "d" (list u8)) (param "e" float64) (param "f" char)"#,
            "bool",
        );
        assert_eq!(roundtrip(Val::U64(5), &params[0]), [5]);
        assert_eq!(roundtrip(Val::U64(u64::MAX), &params[0]).len(), 10);
        assert_eq!(roundtrip(Val::S32(-1), &params[1]), [1]);
        roundtrip(Val::S32(i32::MIN), &params[1]);
        assert_eq!(
            roundtrip(Val::String("hé".into()), &params[2]),
            [3, b'h', 0xc3, 0xa9]
        );
        let bytes = roundtrip(Val::List((0..=255).map(Val::U8).collect()), &params[3]);
        assert_eq!(
            bytes.len(),
            2 + 256,
            "a byte list is its length and its bytes"
        );
        roundtrip(Val::Float64(-0.5), &params[4]);
        roundtrip(Val::Char('λ'), &params[5]);
        roundtrip(Val::Bool(true), &result);
    }

    #[test]
    fn compound_values_roundtrip() {
        let (params, result) = types_with(
            r#"(type $r (record (field "x" u32) (field "name" string)))
               (import "rec" (type $rec (eq $r)))
               (type $v (variant (case "none") (case "some" s64)))
               (import "var" (type $var (eq $v)))
               (type $e (enum "red" "green"))
               (import "en" (type $en (eq $e)))
               (type $f (flags "a" "b" "c" "d" "e" "f" "g" "h" "i"))
               (import "fl" (type $fl (eq $f)))"#,
            r#"(param "r" $rec) (param "v" $var) (param "o" (option (list (tuple u8 string))))
               (param "e" $en) (param "fl" $fl)"#,
            "(result u32 (error string))",
        );
        roundtrip(
            Val::Record(vec![
                ("x".into(), Val::U32(7)),
                ("name".into(), Val::String("n".into())),
            ]),
            &params[0],
        );
        roundtrip(
            Val::Variant("some".into(), Some(Box::new(Val::S64(-9)))),
            &params[1],
        );
        roundtrip(Val::Variant("none".into(), None), &params[1]);
        roundtrip(
            Val::Option(Some(Box::new(Val::List(vec![Val::Tuple(vec![
                Val::U8(1),
                Val::String("t".into()),
            ])])))),
            &params[2],
        );
        roundtrip(Val::Option(None), &params[2]);
        roundtrip(Val::Enum("green".into()), &params[3]);
        assert_eq!(
            roundtrip(Val::Flags(vec!["a".into(), "i".into()]), &params[4]),
            [0b1, 0b1]
        );
        roundtrip(Val::Result(Ok(Some(Box::new(Val::U32(3))))), &result);
        roundtrip(
            Val::Result(Err(Some(Box::new(Val::String("no".into()))))),
            &result,
        );
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let (params, _) = types(
            r#"(param "s" string) (param "l" (list (list u64))) (param "b" bool)"#,
            "u8",
        );
        let cases: &[(&[u8], usize)] = &[
            (&[5, b'a'], 0),                      // string shorter than its length
            (&[2, 0xff, 0xfe], 0),                // not UTF-8
            (&[0xff; 11], 0),                     // a length longer than 10 bytes
            (&[0xff, 0xff, 0xff, 0xff, 0x7f], 1), // a huge list count with no elements
            (&[2], 2),                            // bool that is neither 0 nor 1
            (&[], 2),                             // nothing at all
        ];
        for (bytes, param) in cases {
            let mut input = *bytes;
            assert!(
                decode(&mut input, &params[*param]).is_err(),
                "{bytes:?} decoded"
            );
        }
    }

    #[test]
    fn mismatched_values_are_refused() {
        let (params, _) = types(r#"(param "a" u64)"#, "u8");
        assert!(encode(&Val::String("x".into()), &params[0], &mut Vec::new()).is_err());
    }
}

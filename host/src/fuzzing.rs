//! Fuzz targets, shared by the cargo-fuzz binaries in `fuzz/` (libFuzzer,
//! for long runs) and by the bounded mutation run in the tests (every
//! `cargo test`): each takes arbitrary bytes and must not panic.

use std::sync::OnceLock;

use wasmtime::component::types::{ComponentItem, Type};

use crate::courier::codec;

/// The program.toml loader on arbitrary text: a diagnostic or a program.
pub fn program_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // Relative paths resolve against a directory that does not exist, so
    // loading stops at the first component or granted directory at worst.
    let file = std::path::Path::new("/nonexistent/fuzz/program.toml");
    if let Err(diagnostic) = crate::program::load_str(file, &text, &[]) {
        // Every diagnostic renders (its location lies inside the text).
        let _ = diagnostic.to_string();
    }
}

/// Decoding courier values from arbitrary bytes, as a worker decodes what
/// arrives on its socket. The first byte picks one type, or (past the
/// last) every type in a row, as a function's arguments are.
pub fn courier_values(data: &[u8]) {
    let Some((&which, mut bytes)) = data.split_first() else {
        return;
    };
    let types = value_types();
    match types.get(which as usize) {
        Some(ty) => {
            let _ = codec::decode(&mut bytes, ty);
        }
        None => {
            for ty in types {
                if codec::decode(&mut bytes, ty).is_err() {
                    break;
                }
            }
        }
    }
}

/// The parameter types of a function that uses every kind of type.
fn value_types() -> &'static [Type] {
    static TYPES: OnceLock<Vec<Type>> = OnceLock::new();
    TYPES.get_or_init(|| {
        // Named types must be exported before a function may use them.
        let wat = r#"(component
            (import "values" (instance
                (type $point' (record (field "x" f64) (field "label" string)))
                (export "point" (type $point (eq $point')))
                (type $shape' (variant (case "none") (case "dot" $point) (case "path" (list $point))))
                (export "shape" (type $shape (eq $shape')))
                (type $mode' (enum "a" "b" "c"))
                (export "mode" (type $mode (eq $mode')))
                (type $perms' (flags "read" "write"))
                (export "perms" (type $perms (eq $perms')))
                (export "f" (func
                    (param "a" u8) (param "b" s64) (param "c" f32) (param "d" char) (param "e" bool)
                    (param "p" $point) (param "s" $shape) (param "m" $mode) (param "fl" $perms)
                    (param "o" (option (list u32))) (param "r" (result string (error u64)))
                    (param "t" (tuple u16 string (list (list u8))))))
            ))
        )"#;
        let bytes = wat::parse_str(wat).expect("the fuzzing component parses");
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).expect("an engine");
        let component =
            wasmtime::component::Component::new(&engine, bytes).expect("the component compiles");
        let ty = component.component_type();
        let (_, import) = ty.imports(&engine).next().expect("one import");
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            unreachable!("the import is an instance")
        };
        let f = instance
            .exports(&engine)
            .find_map(|(name, item)| match (name, item.ty) {
                ("f", ComponentItem::ComponentFunc(f)) => Some(f),
                _ => None,
            })
            .expect("the instance exports f");
        f.params().map(|(_, t)| t).collect()
    })
}

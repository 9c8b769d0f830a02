//! Decoding courier values from arbitrary bytes, as a worker does with what
//! arrives on its socket: every type the codec knows (records, variants,
//! lists, options, results, strings, numbers, flags, enums), never a panic,
//! never an allocation the bytes do not pay for.
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none courier_values`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lp_host::courier::codec;
use wasmtime::component::types::Type;

/// The parameter types of a component function that uses every kind.
fn types() -> &'static [Type] {
    static TYPES: OnceLock<Vec<Type>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let wat = r#"(component
            (type $point (record (field "x" f64) (field "label" string)))
            (type $shape (variant (case "none") (case "dot" $point) (case "path" (list $point))))
            (type $mode (enum "a" "b" "c"))
            (type $perms (flags "read" "write"))
            (type $f (func
                (param "a" u8) (param "b" s64) (param "c" f32) (param "d" char) (param "e" bool)
                (param "p" $point) (param "s" $shape) (param "m" $mode) (param "fl" $perms)
                (param "o" (option (list u32))) (param "r" (result string (error u64)))
                (param "t" (tuple u16 string (list (list u8))))))
            (import "f" (func (type $f)))
        )"#;
        let bytes = wat::parse_str(wat).expect("the fuzz component parses");
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let component = wasmtime::component::Component::new(&engine, bytes).unwrap();
        let (_, item) = component
            .component_type()
            .imports(&engine)
            .next()
            .expect("one import");
        match item {
            wasmtime::component::types::ComponentItem::ComponentFunc(f) => {
                f.params().map(|(_, t)| t).collect()
            }
            _ => panic!("the import is a function"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, mut bytes)) = data.split_first() else {
        return;
    };
    let types = types();
    // One value of one type, or all of them in a row (as arguments are).
    if let Some(ty) = types.get(which as usize) {
        let _ = codec::decode(&mut bytes, ty);
    } else {
        for ty in types {
            if codec::decode(&mut bytes, ty).is_err() {
                break;
            }
        }
    }
});

//! `lp_guest::generate!`: a node's Rust bindings for its world.
//!
//! The lp:node WIT package is built into this crate (from the repository's
//! `wit/node.wit`, its one source), so a node crate points the macro at its
//! own WIT only. Before generating, every service interface `X` of the
//! node's packages gets a client interface `X-client` (async functions) and
//! `X-blocking-client` (synchronous ones), unless the WIT already declares
//! one (see the lp-wit crate). The bindings share lp:node's types and runtime
//! with the `lp-guest` crate.

use std::path::PathBuf;

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{LitStr, Token};
use wit_bindgen_core::WorldGenerator;

/// Generate a node's bindings: `generate!({ world: "pkg:name/world", path: "wit" })`.
///
/// `path` (default `"wit"`, relative to the crate's Cargo.toml) is the
/// node's own WIT: a directory (with an optional `deps/`), a file, or a
/// list of them. lp:node comes with the SDK; a path holding the lp:node
/// package itself is accepted and skipped. Clients are generated for the
/// packages `path` names (not for those in `deps/`). A node that only runs (no WIT
/// of its own, no `wit` directory) names one of lp:node's worlds, e.g.
/// `world: "lp:node/node-with-run"`.
#[proc_macro]
pub fn generate(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let config = syn::parse_macro_input!(input as Config);
    match expand(&config) {
        Ok(tokens) => tokens.into(),
        Err(message) => syn::Error::new(config.span, format!("lp_guest::generate!: {message}"))
            .into_compile_error()
            .into(),
    }
}

struct Config {
    world: String,
    /// `None`: the crate's `wit` directory, if it has one.
    paths: Option<Vec<String>>,
    span: Span,
}

enum Field {
    World(LitStr),
    Path(Vec<LitStr>),
}

impl Parse for Field {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: syn::Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        match key.to_string().as_str() {
            "world" => Ok(Field::World(input.parse()?)),
            "path" if input.peek(syn::token::Bracket) => {
                let list;
                syn::bracketed!(list in input);
                let paths = Punctuated::<LitStr, Token![,]>::parse_terminated(&list)?;
                Ok(Field::Path(paths.into_iter().collect()))
            }
            "path" => Ok(Field::Path(vec![input.parse()?])),
            other => Err(syn::Error::new(
                key.span(),
                format!(
                    "lp_guest::generate!: unknown option `{other}`; it takes `world: \"pkg:name/world\"` and `path: \"wit\"`"
                ),
            )),
        }
    }
}

impl Parse for Config {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let span = input.span();
        let body;
        syn::braced!(body in input);
        let fields = Punctuated::<Field, Token![,]>::parse_terminated(&body)?;
        let mut world = None;
        let mut paths = None;
        for field in fields {
            match field {
                Field::World(w) => world = Some(w.value()),
                Field::Path(p) => paths = Some(p.iter().map(LitStr::value).collect()),
            }
        }
        let world = world.ok_or_else(|| {
            syn::Error::new(
                span,
                "lp_guest::generate!: name the node's world, e.g. `world: \"my:app/my-node\"`",
            )
        })?;
        Ok(Config { world, paths, span })
    }
}

/// Resolve the WIT, generate the bindings, and track the WIT files read.
fn expand(config: &Config) -> Result<TokenStream, String> {
    let root = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").map_err(|_| "CARGO_MANIFEST_DIR is not set")?,
    );
    let paths = match &config.paths {
        Some(paths) => paths.clone(),
        None if root.join("wit").is_dir() => vec!["wit".to_string()],
        // A node of lp:node's own worlds alone (e.g. "lp:node/node-with-run").
        None => Vec::new(),
    };
    let lp_wit::NodeWit {
        mut resolve,
        packages,
        read,
        ..
    } = lp_wit::load(&root, &paths).map_err(|e| {
        e.replace(
            "help: the path is relative to",
            "help: `path` is relative to the crate's Cargo.toml,",
        )
    })?;
    let world = resolve
        .select_world(&packages, Some(&config.world))
        .map_err(|e| format!("{e:#}\n  help: `world` names a world of the node's WIT, e.g. \"my:app/my-node\", that includes lp:node/node@0.1.0"))?;

    let mut opts = wit_bindgen_rust::Opts {
        runtime_path: Some("::lp_guest::__wit_bindgen::rt".to_string()),
        ..Default::default()
    };
    for (interface, module) in [
        ("lp:node/types@0.1.0", "::lp_guest::types"),
        ("lp:node/runtime@0.1.0", "::lp_guest::runtime"),
        ("lp:node/waiting@0.1.0", "::lp_guest::waiting"),
    ] {
        opts.with.push((
            interface.to_string(),
            wit_bindgen_rust::WithOption::Path(module.to_string()),
        ));
    }
    let mut files = wit_bindgen_core::Files::default();
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| format!("{e:#}"))?;
    let (_, source) = files.iter().next().ok_or("wit-bindgen generated nothing")?;
    let mut tokens: TokenStream = std::str::from_utf8(source)
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|e| format!("generated bindings do not parse: {e}"))?;
    // Rebuild when a WIT file changes.
    for file in read {
        let file = file.display().to_string();
        tokens.extend(quote::quote! { const _: &[u8] = include_bytes!(#file); });
    }
    Ok(tokens)
}

//! `lp-host new NAME`: a node crate that builds and runs anywhere, outside
//! this repository too: its own WIT (lp:node comes with the SDK), a
//! `src/lib.rs` with a `run` and a service, a program.toml that runs it,
//! and a test that drives it through `lp_host::testing`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

#[derive(clap::Args)]
pub struct NewArgs {
    /// The node's name: lowercase letters, digits and '-', starting with a letter (e.g. `my-node`).
    name: String,

    /// The directory to create the crate in (default: the current one); the crate is DIR/NAME.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,

    /// The guest SDK as a path dependency: a checkout's `guest-sdk` directory
    /// (default: the checkout this lp-host was built from).
    #[arg(long, value_name = "DIR", conflicts_with = "sdk_git")]
    sdk_path: Option<PathBuf>,

    /// The guest SDK (and the test API) as a git dependency: the repository's URL.
    #[arg(long, value_name = "URL")]
    sdk_git: Option<String>,
}

/// Where the generated crate gets `lp-guest` (and `lp-host`, for its test).
enum Sdk {
    /// The checkout's `guest-sdk` and `host` directories.
    Path {
        guest: PathBuf,
        host: PathBuf,
    },
    Git(String),
}

impl Sdk {
    fn dependency(&self, which: &str) -> String {
        match self {
            Sdk::Path { guest, host } => {
                let dir = if which == "lp-guest" { guest } else { host };
                format!(
                    "{which} = {{ path = {} }}",
                    toml_string(&dir.display().to_string())
                )
            }
            Sdk::Git(url) => format!("{which} = {{ git = {} }}", toml_string(url)),
        }
    }
}

/// Run `lp-host new`; the exit code.
pub fn main(args: NewArgs) -> i32 {
    match create(&args) {
        Ok(dir) => {
            let shown = dir.display();
            crate::outln!("created node crate {} in {shown}", args.name);
            crate::outln!("  run it:  lp-host run {shown}/program.toml");
            crate::outln!(
                "  test it: cargo test --manifest-path {shown}/Cargo.toml   (builds lp-host's test API: slow the first time)"
            );
            0
        }
        Err(e) => {
            crate::errln!("error: {e:#}");
            2
        }
    }
}

/// Write the crate; its directory.
fn create(args: &NewArgs) -> Result<PathBuf> {
    check_name(&args.name)?;
    let sdk = sdk(args)?;
    let dir = args.dir.join(&args.name);
    let empty = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_none());
    if dir.exists() && !empty {
        bail!(
            "{} already exists and is not empty\n  help: choose another name, or another directory with --dir",
            dir.display()
        );
    }
    let files = [
        ("Cargo.toml".to_string(), cargo_toml(&args.name, &sdk)),
        (format!("wit/{}.wit", args.name), wit(&args.name)),
        ("src/lib.rs".to_string(), lib_rs(&args.name)),
        ("program.toml".to_string(), program_toml(&args.name)),
        (format!("tests/{}.rs", args.name), test_rs(&args.name)),
    ];
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

/// A name that is at once a node name, a crate name and a WIT package name.
fn check_name(name: &str) -> Result<()> {
    let words_ok = name.split('-').all(|word| {
        word.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if !words_ok {
        bail!(
            "{name:?} is not a node name `lp-host new` can use\n  help: use lowercase letters and digits in words joined by '-', each word starting with a letter, e.g. `my-node`"
        );
    }
    Ok(())
}

fn sdk(args: &NewArgs) -> Result<Sdk> {
    if let Some(url) = &args.sdk_git {
        return Ok(Sdk::Git(url.clone()));
    }
    let guest = match &args.sdk_path {
        Some(dir) => dir.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"),
    };
    let guest = guest
        .canonicalize()
        .ok()
        .filter(|g| g.join("Cargo.toml").is_file());
    let Some(guest) = guest else {
        bail!(
            "cannot find the guest SDK (lp-guest){}\n  help: give --sdk-path DIR (the `guest-sdk` directory of an lp checkout) or --sdk-git URL",
            match &args.sdk_path {
                Some(dir) => format!(" at {}", dir.display()),
                None => " in the checkout this lp-host was built from".to_string(),
            }
        );
    };
    let host = guest.join("../host");
    let host = host.canonicalize().unwrap_or(host);
    Ok(Sdk::Path { guest, host })
}

/// The Rust identifier of a WIT name (`my-node` → `my_node`).
fn rust_ident(name: &str) -> String {
    name.replace('-', "_")
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn cargo_toml(name: &str, sdk: &Sdk) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A node: a WebAssembly component. `lp-host run program.toml` builds it with
# `cargo build --release --target wasm32-wasip2` (rustup target add wasm32-wasip2).
[lib]
crate-type = ["cdylib"]

[dependencies]
{guest}
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
# The test API (lp_host::testing), for tests/{name}.rs.
{host}

# Dependencies are optimised in tests too: wasmtime (under lp_host::testing)
# compiles components far too slowly at opt-level 0.
[profile.dev.package."*"]
opt-level = 2
debug = false

# This crate is a workspace of its own, so that a Cargo workspace in a parent
# directory does not claim it. To make it a member of a workspace of yours,
# delete this table and add the crate to that workspace's `members`.
[workspace]
"#,
        guest = sdk.dependency("lp-guest"),
        host = sdk.dependency("lp-host"),
    )
}

fn wit(name: &str) -> String {
    format!(
        r#"// The node's own WIT. lp:node (the runtime every node imports) comes with
// the guest SDK; lp_guest::generate! also generates `greeter-client` and
// `greeter-blocking-client`, the interfaces another node imports to call
// `greeter` (`import greeter-client;` in its world).
package local:{name}@0.1.0;

/// What this node serves to other nodes (and to tests).
interface greeter {{
    greet: func(name: string) -> string;
}}

world node {{
    include lp:node/node-with-run@0.1.0;
    export greeter;
}}
"#
    )
}

fn lib_rs(name: &str) -> String {
    let module = rust_ident(name);
    format!(
        r#"//! {name}: an lp node. Its `run` logs a greeting and stops the program;
//! meanwhile (and until the program ends) it serves `greet`.

lp_guest::generate!({{
    world: "local:{name}/node", // in wit/{name}.wit
}});

/// The node's args, from program.toml's `[node.args]`.
#[derive(serde::Deserialize)]
struct Args {{
    name: String,
}}

fn greeting(name: &str) -> String {{
    format!("Hello, {{name}}!")
}}

struct Node;

impl exports::local::{module}::greeter::Guest for Node {{
    fn greet(name: String) -> String {{
        greeting(&name)
    }}
}}

impl exports::lp::node::lifecycle::Guest for Node {{
    async fn run() {{
        let args: Args = lp_guest::args().expect("args");
        lp_guest::info!("{{}}", greeting(&args.name));
        lp_guest::stop();
    }}
}}

export!(Node);
"#
    )
}

fn program_toml(name: &str) -> String {
    format!(
        r#"# Run with: lp-host run program.toml
[program]
name = "{name}"

[[node]]
name = "{name}"
component = "."          # this crate, built before launch
args = {{ name = "world" }}
"#
    )
}

fn test_rs(name: &str) -> String {
    format!(
        r#"//! Launches program.toml in this process with `{name}`'s run disabled,
//! and calls its `greet` as another node would.

use lp_host::testing::{{TestLaunch, TestProgram}};

#[test]
fn greets() {{
    let run = TestProgram::new(concat!(env!("CARGO_MANIFEST_DIR"), "/program.toml"))
        .disable_run("{name}")
        .launch(TestLaunch::Mt)
        .unwrap();
    let node = run.node("{name}").unwrap();
    let reply: String = node.call("greet", ("lp",)).unwrap();
    assert_eq!(reply, "Hello, lp!");
    run.stop();
    run.wait().unwrap();
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_crates_nodes_and_wit() {
        assert!(check_name("my-node").is_ok());
        assert!(check_name("node2").is_ok());
        for bad in [
            "", "My", "my_node", "2node", "my--node", "my-", "-my", "my-2",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

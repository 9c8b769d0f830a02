//! The built-in replay node as the rest of the host sees it: the lp:replay
//! service's name, its interface (read from the WIT lp ships, through a
//! stand-in component of that WIT, so the pre-launch type check compares a
//! caller's `replay-client` with it like with any component's export), and
//! the typed encoding its functions have in the function table (`wire`:
//! one for every replay call).

pub mod wire;

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::courier::TypedWire;
use crate::sandbox::{NodeInterface, inspect};

/// The service a replay node serves.
pub const REPLAY_SERVICE: &str = "lp:replay/replay@0.1.0";

/// The interface of a replay node: what a component exporting the
/// `lp:replay/replay-node` world would have.
pub fn interface(engine: &Engine) -> Result<NodeInterface> {
    let bytes = stand_in_component().map_err(|e| anyhow!("{e:#}"))?;
    let component = Component::new(engine, &bytes)
        .map_err(anyhow::Error::from)
        .context("cannot compile the replay node's interface")?;
    Ok(inspect(engine, &component))
}

/// A component of world `lp:replay/replay-node` whose functions do
/// nothing: it is never instantiated, only its type is read.
fn stand_in_component() -> Result<Vec<u8>> {
    use lp_wit::wit_parser::{LiftLowerAbi, ManglingAndAbi};
    let (resolve, _, replay) = lp_wit::builtin().map_err(|e| anyhow!(e))?;
    let world = resolve.select_world(&[replay], Some("replay-node"))?;
    let mut module =
        wit_component::dummy_module(&resolve, world, ManglingAndAbi::Legacy(LiftLowerAbi::Sync));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
}

/// The typed encoding of `service`'s functions in the function table, if
/// it is the replay service: one wire for all of them (the operation is in
/// the value).
pub fn wire(service: &str) -> Option<Arc<dyn TypedWire>> {
    (service == REPLAY_SERVICE).then(|| Arc::new(wire::ReplayWire) as Arc<dyn TypedWire>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_is_the_replay_service() {
        let cache = tempfile::tempdir().unwrap();
        let sandbox = crate::sandbox::Sandbox::new(Some(cache.path().to_path_buf())).unwrap();
        let interface = interface(sandbox.engine()).expect("the stand-in component compiles");
        assert!(!interface.has_run);
        assert!(interface.clients.is_empty());
        let service = interface
            .service(REPLAY_SERVICE)
            .expect("exports lp:replay/replay");
        let mut names: Vec<&str> = service.functions.iter().map(|f| f.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "checkpoint",
                "delete",
                "info",
                "insert",
                "reset",
                "sample",
                "update-priorities"
            ]
        );
    }
}

"""lp's Python SDK: what a Python node imports (`import lp`), the
counterpart of the `lp-guest` crate for Rust nodes.

lp-host puts this module beside a Python node's app when it builds the
node with componentize-py, so the app needs nothing installed:

    import asyncio
    import lp
    from wit_world import exports
    from wit_world.imports import producer_client

    class Lifecycle(exports.Lifecycle):
        async def run(self) -> None:
            producers = [lp.Client(producer_client, h) for h in lp.args()["producers"]]
            for step in range(10):
                values = await asyncio.gather(*(p.work(step) for p in producers))
                lp.info(f"step {step}: {values}")
            lp.stop()

The node's args come as Python values, with every handle a `Handle`;
`Client(module, handle)` calls the functions of a generated client
module through one handle, raising `CallError` (with the variant) when a
call does not return a value.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from wit_world.imports import runtime
from wit_world.imports import types as lp_types
from componentize_py_types import Err

try:
    # Imported here, not where it is used: componentize-py bundles the
    # binding modules the app imports when it is built.
    from wit_world.imports import waiting as _waiting
except ImportError:  # a world without lp:node/waiting (blocking-node-with-run)
    _waiting = None

#: The key under which the host encodes a handle inside the args JSON.
HANDLE_KEY = "$lp-handle"
#: Beside it, the handle's own call deadline in milliseconds, if it has one.
HANDLE_TIMEOUT_KEY = "$lp-timeout-ms"

Handle = lp_types.Handle


class CallError(Exception):
    """A courier call that did not return a value.

    `kind` is the variant: "unreachable", "timeout", "remote-trap" or
    "stopping"; `message` what the host said (empty for timeout and
    stopping); `error` the generated call-error value itself.
    """

    def __init__(self, error: Any) -> None:
        self.error = error
        name = type(error).__name__.split("_", 1)[-1]
        self.kind = {
            "Unreachable": "unreachable",
            "Timeout": "timeout",
            "RemoteTrap": "remote-trap",
            "Stopping": "stopping",
        }.get(name, name.lower())
        self.message = str(getattr(error, "value", "") or "")
        super().__init__(f"{self.kind}: {self.message}" if self.message else self.kind)


def name() -> str:
    """This node's full name, e.g. `producer/3`."""
    return runtime.name()


def group() -> str:
    """The group the node belongs to."""
    return runtime.group()


def index() -> int:
    """The node's index among the replicas of its program.toml entry."""
    return runtime.index()


def stop() -> None:
    """Ask the whole program to stop. Returns at once."""
    runtime.stop()


def is_stopping() -> bool:
    """Whether the program is stopping."""
    return runtime.is_stopping()


async def wait_for_stop(timeout: Optional[float] = None) -> bool:
    """Wait until the program stops (True) or `timeout` seconds pass
    (False), serving the node's exports meanwhile. This is how a Python
    node sleeps: the asyncio loop of a component has no timers."""
    if _waiting is None:
        raise RuntimeError(
            "wait_for_stop needs lp:node/waiting: build the node for a world that "
            "includes lp:node/node (e.g. lp:node/node-with-run), not blocking-node-with-run"
        )
    ms = None if timeout is None else max(0, int(timeout * 1000))
    return await _waiting.wait_for_stop(ms)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if HANDLE_KEY in value:
            return Handle(node=value[HANDLE_KEY], timeout_ms=value.get(HANDLE_TIMEOUT_KEY))
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def args() -> dict[str, Any]:
    """The node's args from program.toml, every handle a `Handle`."""
    return _decode(json.loads(runtime.args()))


def log(level: Any, message: str) -> None:
    runtime.log(level, message)


def debug(message: str) -> None:
    runtime.log(runtime.Level.DEBUG, message)


def info(message: str) -> None:
    runtime.log(runtime.Level.INFO, message)


def warn(message: str) -> None:
    runtime.log(runtime.Level.WARN, message)


def error(message: str) -> None:
    runtime.log(runtime.Level.ERROR, message)


class Client:
    """The functions of a generated client module (e.g.
    `wit_world.imports.producer_client`) called through one handle:
    `await Client(producer_client, h).work(3)`. A call that does not
    return a value raises `CallError`."""

    def __init__(self, module: Any, handle: Handle) -> None:
        self._module = module
        self.handle = handle

    def __getattr__(self, function: str) -> Any:
        target = getattr(self._module, function)
        handle = self.handle

        async def call(*arguments: Any) -> Any:
            try:
                return await target(handle, *arguments)
            except Err as failed:
                raise CallError(failed.value) from None

        call.__name__ = function
        return call

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

try:
    # Present when the node's world imports lp:replay/replay-client@0.1.0.
    from wit_world.imports import replay_client as _replay_client
    from wit_world.imports import replay_types
except ImportError:
    _replay_client = None
    replay_types = None

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
        self.kind, self.message = _variant(error, {
            "Unreachable": "unreachable",
            "Timeout": "timeout",
            "RemoteTrap": "remote-trap",
            "Stopping": "stopping",
        })
        super().__init__(f"{self.kind}: {self.message}" if self.message else self.kind)


def _variant(value: Any, cases: dict[str, str]) -> tuple[str, str]:
    """A generated variant value's case (its WIT name, from `cases`: the
    generated class's suffix -> WIT name) and its payload as text."""
    name = type(value).__name__.split("_", 1)[-1]
    return cases.get(name, name.lower()), str(getattr(value, "value", "") or "")


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


class ReplayError(Exception):
    """A replay node refused an operation (and changed nothing).

    `kind` is "no-such-table", "invalid" or "checkpoint"; `message` what
    the replay node said."""

    def __init__(self, error: Any) -> None:
        self.error = error
        self.kind, self.message = _variant(error, {
            "NoSuchTable": "no-such-table",
            "Invalid": "invalid",
            "Checkpoint": "checkpoint",
        })
        super().__init__(f"{self.kind}: {self.message}")


def _replay_module() -> Any:
    if _replay_client is None:
        raise RuntimeError(
            "a replay client needs lp:replay/replay-client: add "
            "`import lp:replay/replay-client@0.1.0;` to the node's world"
        )
    return _replay_client


def raw_item(data: bytes) -> Any:
    """Item data of raw bytes."""
    _replay_module()
    return replay_types.ItemData_Raw(bytes(data))


def tensor_item(**tensors: Any) -> Any:
    """Item data of named tensors: `tensor_item(obs=([4], [0.1, ...]),
    frame=([2, 2], b"abcd"))`, each a shape and its elements (a list of
    floats is f32, bytes are bytes)."""
    _replay_module()
    made = []
    for name_, (shape, values) in tensors.items():
        if isinstance(values, (bytes, bytearray)):
            data = replay_types.TensorData_Bytes(bytes(values))
        else:
            data = replay_types.TensorData_F32([float(v) for v in values])
        made.append(replay_types.Tensor(name=name_, shape=list(shape), data=data))
    return replay_types.ItemData_Tensors(made)


def tensors_of(data: Any) -> dict[str, Any]:
    """The tensors of an item's data by name (raw data: {"": bytes})."""
    if isinstance(data, replay_types.ItemData_Raw):
        return {"": data.value}
    return {t.name: t.data.value for t in data.value}


def new_item(data: Any, priorities: dict[str, float]) -> Any:
    """An item to insert, with its priority in each table it goes into."""
    _replay_module()
    return replay_types.NewItem(
        data=data,
        priorities=[replay_types.TablePriority(table=t, priority=float(p)) for t, p in priorities.items()],
    )


class Replay:
    """A replay node (`kind = "replay"` in program.toml) through one
    handle. Every method raises `CallError` when the call does not return
    and `ReplayError` when the replay node refuses it:

        replay = lp.Replay(lp.args()["replay"])
        keys = await replay.insert([lp.new_item(lp.raw_item(b"..."), {"experience": 1.0})])
        batch = await replay.sample("experience", 32)
        await replay.update_priorities("experience", {s.key: 0.5 for s in batch})
    """

    def __init__(self, handle: Handle) -> None:
        self._client = _replay_module()
        self.handle = handle

    async def _call(self, function: str, *arguments: Any) -> Any:
        try:
            result = await getattr(self._client, function)(self.handle, *arguments)
        except Err as failed:
            raise CallError(failed.value) from None
        if isinstance(result, Err):
            raise ReplayError(result.value)
        return getattr(result, "value", result)

    async def insert(self, items: list[Any]) -> list[int]:
        """Insert items (`new_item(...)`) all at once; their keys."""
        return await self._call("insert", list(items))

    async def sample(self, table: str, n: int) -> list[Any]:
        """`n` samples (key, probability, table_size, times_sampled,
        priority, data) from `table`, waiting for its rate limiter."""
        return await self._call("sample", table, n)

    async def update_priorities(self, table: str, updates: dict[int, float]) -> None:
        """New priorities of items of `table`, by key."""
        made = [replay_types.PriorityUpdate(key=k, priority=float(p)) for k, p in updates.items()]
        await self._call("update_priorities", table, made)

    async def delete(self, table: str, keys: list[int]) -> int:
        """Remove items from `table`; how many were there."""
        return await self._call("delete", table, list(keys))

    async def reset(self, table: str) -> None:
        """Empty `table`."""
        await self._call("reset", table)

    async def info(self) -> list[Any]:
        """Every table's state."""
        try:
            return await self._client.info(self.handle)
        except Err as failed:
            raise CallError(failed.value) from None

    async def checkpoint(self) -> str:
        """Write a checkpoint to the node's checkpoint directory; its path."""
        return await self._call("checkpoint")

    def writer(self, batch: int = 32) -> "ReplayWriter":
        """A writer that inserts items `batch` at a time."""
        return ReplayWriter(self, batch)


class ReplayWriter:
    """Collects items and inserts them `batch` at a time, so an actor pays
    one call per batch, not per step. Call `flush()` before it goes away:
    items still pending then are not inserted."""

    def __init__(self, replay: Replay, batch: int) -> None:
        if batch < 1:
            raise ValueError("a writer's batch is at least 1")
        self.replay = replay
        self.batch = batch
        self.pending: list[Any] = []

    async def append(self, item: Any) -> list[int]:
        """Add an item; inserts the batch when it is full (the keys of
        what was inserted, else [])."""
        self.pending.append(item)
        if len(self.pending) >= self.batch:
            return await self.flush()
        return []

    async def flush(self) -> list[int]:
        """Insert what is pending; its keys. If the insert fails, the batch
        stays pending. When the replay refused it, timed it out (its
        deadline passed while the rate limiter held it) or the program is
        stopping, nothing of it was inserted, so flushing again never
        inserts an item twice; only a replay that stopped answering at all
        (its process lost) leaves that unknown."""
        if not self.pending:
            return []
        # The batch leaves `pending` before the call, so an item another
        # task appends while it is out is neither dropped nor sent twice.
        batch, self.pending = self.pending, []
        try:
            return await self.replay.insert(batch)
        except BaseException:
            self.pending[:0] = batch
            raise

"""The consumer written in Python: each step sends `work(step)` to every
producer at once (asyncio.gather over typed client calls), logs the
replies, then stops the program. It also serves `step`, as the Rust
consumer does.

Built by lp-host with componentize-py for the world
lp:consumer-producers/consumer-node (examples/consumer_producers/wit).
"""

import asyncio

import lp
from wit_world import exports
from wit_world.imports import producer_client
from componentize_py_types import Err


def producers() -> list[lp.Client]:
    return [lp.Client(producer_client, h) for h in lp.args()["producers"]]


async def step(i: int) -> list[int]:
    return list(await asyncio.gather(*(p.work(i) for p in producers())))


class Consumer(exports.Consumer):
    async def step(self, step_: int) -> list[int]:
        try:
            return await step(step_)
        except lp.CallError as e:
            raise Err(str(e))


class Lifecycle(exports.Lifecycle):
    async def run(self) -> None:
        steps = lp.args().get("steps", 10)
        for i in range(steps):
            try:
                values = await step(i)
            except lp.CallError as e:
                lp.error(f"step {i} failed: {e}")
                break
            lp.info(f"step {i}: {values}")
        lp.stop()

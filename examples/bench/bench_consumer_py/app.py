"""The benchmark's consumer in Python (startup, sync and fanout modes, as
the Rust consumer measures them), for measuring calls out of a Python
caller:

    lp-host bench --only sync:8 --set 'consumer.component="bench_consumer_py/app.py"' \
        --set 'consumer.world="lp:bench/consumer-node"'
"""

import asyncio
import json
import time

import lp
from wit_world import exports
from wit_world.imports import producer_client


def stats(latencies: list[float], calls_per_sample: int) -> dict:
    total = sum(latencies)
    latencies = sorted(latencies)

    def at(q: float) -> float:
        return latencies[round((len(latencies) - 1) * q)] * 1e6

    return {
        "samples": len(latencies),
        "calls_per_sec": len(latencies) * calls_per_sample / total,
        "p50_us": at(0.50),
        "p99_us": at(0.99),
        "mean_us": total * 1e6 / len(latencies),
    }


async def sync_calls(p: lp.Client, args: dict) -> dict:
    data = bytes([7]) * args["payload"]
    latencies = []
    for i in range(args["warmup"] + args["calls"]):
        start = time.perf_counter()
        if args["payload"] == 8:
            assert await p.work(i) == i
        else:
            data = await p.echo(data)
        if i >= args["warmup"]:
            latencies.append(time.perf_counter() - start)
    assert len(data) == args["payload"]
    return stats(latencies, 1)


async def fanout(producers: list[lp.Client], args: dict) -> dict:
    latencies = []
    for round_ in range(args["warmup"] + args["calls"]):
        start = time.perf_counter()
        replies = await asyncio.gather(*(p.work(round_) for p in producers))
        assert all(r == round_ for r in replies)
        if round_ >= args["warmup"]:
            latencies.append(time.perf_counter() - start)
    return stats(latencies, len(producers))


class Lifecycle(exports.Lifecycle):
    async def run(self) -> None:
        args = lp.args()
        producers = [lp.Client(producer_client, h) for h in args["producers"]]
        # Startup: one call to every producer at once, as soon as we run.
        await asyncio.gather(*(p.work(i) for i, p in enumerate(producers)))
        lp.info(f"first-reply-from-all {len(producers)}")
        mode = args["mode"]
        result = None
        if mode == "sync":
            result = await sync_calls(producers[0], args)
        elif mode == "fanout":
            result = await fanout(producers, args)
        elif mode != "startup":
            raise ValueError(f"unknown bench mode {mode}")
        if result is not None:
            lp.info(f"bench-result {json.dumps(result)}")
        lp.stop()

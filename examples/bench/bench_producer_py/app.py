"""The benchmark's producer in Python (`work` and `echo`), for measuring
Python nodes with the same consumer:

    lp-host bench --set 'producer.component="bench_producer_py/app.py"' \
        --set 'producer.world="lp:bench/producer-node"'
"""

from wit_world import exports


class Producer(exports.Producer):
    def work(self, context: int) -> int:
        return context

    def echo(self, data: bytes) -> bytes:
        return data

"""A producer written in Python: serves `work(context) -> context`.

Built by lp-host with componentize-py for the world
lp:consumer-producers/producer-node (examples/consumer_producers/wit).
"""

from wit_world import exports


class Producer(exports.Producer):
    def work(self, context: int) -> int:
        return context

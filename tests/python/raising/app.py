"""A producer that raises on step 2: the node fails, and the failure
carries the Python traceback."""

from wit_world import exports


class Producer(exports.Producer):
    def work(self, context: int) -> int:
        if context == 2:
            raise ValueError(f"no work on step {context}")
        return context

"""A producer built against a mismatched WIT (`work` takes a string)."""

from wit_world import exports


class Producer(exports.Producer):
    def work(self, context: str) -> int:
        return len(context)

"""The learner in Python: `run` takes a step every millisecond until the
program stops; `get-version` is served between steps (the node keeps
serving its exports while `run` waits).

    lp-host run examples/run_and_serve/program.toml \
        --set 'learner.component="learner_py/app.py"' \
        --set 'learner.world="lp:run-and-serve/learner-node"'
"""

import lp
from wit_world import exports

version = 0


class Lifecycle(exports.Lifecycle):
    async def run(self) -> None:
        global version
        # Sleeping is waiting for stop with a timeout (the component's
        # asyncio loop has no timers).
        while not await lp.wait_for_stop(0.001):
            version += 1
        lp.info(f"stopped after {version} steps")


class Learner(exports.Learner):
    def get_version(self) -> int:
        return version

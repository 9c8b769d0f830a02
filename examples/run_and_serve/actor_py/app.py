"""The actor in Python: polls the learner's version while the learner's
`run` is still looping, checks that it grows, then stops the program.

    lp-host run examples/run_and_serve/program.toml \
        --set 'actor.component="actor_py/app.py"' \
        --set 'actor.world="lp:run-and-serve/actor-node"'
"""

import lp
from wit_world import exports
from wit_world.imports import learner_client


class Lifecycle(exports.Lifecycle):
    async def run(self) -> None:
        args = lp.args()
        learner = lp.Client(learner_client, args["learner"])
        seen: list[int] = []
        for _ in range(args["polls"]):
            # Give the learner time to step between polls.
            await lp.wait_for_stop(0.02)
            try:
                seen.append(await learner.get_version())
            except lp.CallError as e:
                lp.error(f"get-version failed: {e}")
                lp.stop()
                return
        grew = all(a < b for a, b in zip(seen, seen[1:]))
        lp.info(f"versions {seen} grew: {str(grew).lower()}")
        lp.stop()

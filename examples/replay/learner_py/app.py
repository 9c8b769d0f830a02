"""The replay example's learner in Python: the same learner as ../learner
(Rust). Tabular Q-learning on the chain from prioritized batches of the
replay's `experience` table: each update samples `batch` items (32),
moves Q toward each one's TD target (weighted by its importance weight,
since the samples are prioritized), and sets each item's priority to
|TD error| + 1e-3. It serves the Q table as `policy()` to the actors
meanwhile (between its calls to the replay, while `run` waits on them).
After `steps` updates (2000) it walks the chain greedily, logs how far
that got and the replay's tables, and stops the program.

    lp-host run examples/replay/program.toml \\
        --set 'learner.component="learner_py/app.py"' \\
        --set 'learner.world="lp:replay-example/learner-py-node"'

(and the Python actor with it: --set 'actor.component="actor_py/app.py"'
--set 'actor.world="lp:replay-example/actor-py-node"').

A transition is an item of five f32 tensors of shape [1] (`obs`,
`action`, `reward`, `next_obs`, `done`), as the actors write them. The Q
table is kept in f32, as the Rust learner's (the arithmetic of an update
is Python's f64, rounded to f32 when it is stored).
"""

from __future__ import annotations

import sys
from array import array
from typing import Any, Optional

import lp
from wit_world import exports

#: The replay table the transitions come from.
TABLE = "experience"

#: The actions (as ../actor/src/chain.rs numbers them) and how many there are.
LEFT = 0
RIGHT = 1
ACTIONS = 2


class Chain:
    """The environment, as ../actor/src/chain.rs defines it: states
    0 ..= states - 1, start in 0, LEFT/RIGHT move one state (left in 0
    stays), reaching the last state gives 1.0 and ends the episode, which
    is cut (not ended) after 4 * states steps."""

    def __init__(self, states: int) -> None:
        if states < 2:
            raise ValueError(f"the chain needs at least 2 states, not {states}")
        self.states = states
        self.start = 0
        self.goal = states - 1
        self.optimal_steps = self.goal - self.start
        self.max_steps = 4 * states

    def step(self, state: int, action: int) -> tuple[int, float, bool]:
        """The next state, the reward and whether the episode ended."""
        if action == LEFT:
            following = max(state - 1, 0)
        else:
            following = min(state + 1, self.goal)
        done = following == self.goal
        return following, 1.0 if done else 0.0, done


class Args:
    """The node's args, with the Rust learner's defaults."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.replay = lp.Replay(args["replay"])
        #: The chain's length (the actors' must be the same).
        self.states = int(args.get("states", 10))
        #: Updates to take before evaluating and stopping the program.
        self.steps = int(args.get("steps", 2000))
        #: Samples per update.
        self.batch = int(args.get("batch", 32))
        #: The discount.
        self.gamma = float(args.get("gamma", 0.9))
        #: The step size.
        self.learning_rate = float(args.get("learning_rate", 0.5))
        #: The importance-sampling exponent (0: no correction, 1: full).
        self.beta = float(args.get("beta", 0.4))


_args: Optional[Args] = None
_q: Optional[array] = None


def args() -> Args:
    """The node's args, read once (when first needed: not at import, which
    runs when the component is built)."""
    global _args
    if _args is None:
        _args = Args(lp.args())
    return _args


def q_table() -> array:
    """The Q table: states x actions, row-major, f32; `run` updates it
    between calls, `policy()` copies it."""
    global _q
    if _q is None:
        _q = array("f", [0.0] * (args().states * ACTIONS))
    return _q


class Transition:
    """One transition, read back from its item."""

    def __init__(self, data: Any, states: int) -> None:
        """Read `data`; a malformed item is a bug of the writer (raises)."""
        tensors = lp.tensors_of(data)

        def scalar(name: str) -> float:
            value = tensors.get(name)
            # An f32 tensor is a list of floats (a bytes tensor is bytes).
            if not isinstance(value, list) or len(value) != 1:
                raise ValueError(f"a transition without a one-element f32 tensor `{name}`: {data!r}")
            return float(value[0])

        def index(name: str, bound: int) -> int:
            value = scalar(name)
            if not 0 <= value < bound or value != int(value):
                raise ValueError(f"a transition whose `{name}` is not in 0 .. {bound}: {value}")
            return int(value)

        self.obs = index("obs", states)
        self.action = index("action", ACTIONS)
        self.reward = scalar("reward")
        self.next_obs = index("next_obs", states)
        self.done = scalar("done") != 0.0


def learn(batch: list[Any], a: Args) -> dict[int, float]:
    """One Q-learning update from `batch`: each sample moves Q toward its TD
    target, weighted by its importance weight `(N * P)^-beta` (normalised
    by the batch's largest); the new priorities, key -> |TD error| + 1e-3
    (a key sampled twice in the batch gets its later one, as the replay
    applies the Rust learner's list in order)."""

    def weight(s: Any) -> float:
        return float(s.table_size * s.probability) ** -a.beta

    max_weight = max((weight(s) for s in batch), default=sys.float_info.min)
    max_weight = max(max_weight, sys.float_info.min)
    q = q_table()
    priorities: dict[int, float] = {}
    for s in batch:
        t = Transition(s.data, a.states)
        if t.done:
            bootstrap = 0.0
        else:
            bootstrap = max(q[t.next_obs * ACTIONS + LEFT], q[t.next_obs * ACTIONS + RIGHT])
        cell = t.obs * ACTIONS + t.action
        td = t.reward + a.gamma * bootstrap - q[cell]
        q[cell] += a.learning_rate * (weight(s) / max_weight) * td
        priorities[s.key] = abs(td) + 1e-3
    return priorities


def greedy_walk(chain: Chain, q: array) -> Optional[int]:
    """Walk the chain from its start taking the greedy action (a tie goes
    left: only a learned preference moves right); the steps to the goal, or
    None if it is not reached within an episode's step limit."""
    state = chain.start
    for t in range(1, chain.max_steps + 1):
        left, right = q[state * ACTIONS + LEFT], q[state * ACTIONS + RIGHT]
        action = RIGHT if right > left else LEFT
        state, _, done = chain.step(state, action)
        if done:
            return t
    return None


def end_or_fail(what: str, error: Exception) -> None:
    """A failed call ends the run quietly when the program is stopping (e.g.
    on Ctrl-C); otherwise it is a bug: raise, so the program fails naming
    it."""
    stopping = isinstance(error, lp.CallError) and error.kind == "stopping"
    if not stopping and not lp.is_stopping():
        raise RuntimeError(f"{what} failed: {error}") from error


class Lifecycle(exports.Lifecycle):
    async def run(self) -> None:
        a = args()
        chain = Chain(a.states)
        q_table()
        updates = 0
        while updates < a.steps:
            try:
                batch = await a.replay.sample(TABLE, a.batch)
            except (lp.CallError, lp.ReplayError) as e:
                end_or_fail("sample", e)
                return
            priorities = learn(batch, a)
            try:
                await a.replay.update_priorities(TABLE, priorities)
            except (lp.CallError, lp.ReplayError) as e:
                end_or_fail("update_priorities", e)
                return
            updates += 1

        optimal = chain.optimal_steps
        reached = greedy_walk(chain, q_table())
        if reached is not None:
            lp.info(
                f"learner: {updates} updates, greedy policy reaches the goal in {reached} steps "
                f"(optimal {optimal})"
            )
        else:
            lp.warn(
                f"learner: {updates} updates, greedy policy does not reach the goal in "
                f"{chain.max_steps} steps (optimal {optimal})"
            )
        try:
            tables = await a.replay.info()
        except lp.CallError as e:
            end_or_fail("info", e)
            return
        for t in tables:
            lp.info(
                f"learner: replay table {t.name}: size {t.size} of {t.max_size}, "
                f"{t.inserts} inserts, {t.samples} samples, {t.deletes} deletes"
            )
        lp.stop()


class Learner(exports.Learner):
    def policy(self) -> list[float]:
        return list(q_table())

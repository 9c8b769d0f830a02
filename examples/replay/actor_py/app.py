"""The replay example's actor in Python: the same actor as ../actor (Rust).
It plays episodes of the chain epsilon-greedily on the learner's Q table
(fetched with `policy()` every `policy_every` episodes) and writes every
transition into the replay's `experience` table, 32 items a call, through
the SDK's `lp.Replay` writer, until the program stops.

    lp-host run examples/replay/program.toml \\
        --set 'actor.component="actor_py/app.py"' \\
        --set 'actor.world="lp:replay-example/actor-py-node"'

One transition is one item of five f32 tensors of shape [1]: `obs` (the
state), `action` (0 left, 1 right), `reward`, `next_obs` and `done` (1.0
when the goal was reached, else 0.0; an episode cut at its step limit has
0.0), each with priority 1.0 (the learner sets the real priorities).
"""

import os

import lp
from wit_world import exports
from wit_world.imports import learner_client

#: The replay table the transitions go into.
TABLE = "experience"
#: Items a call to the replay carries.
BATCH = 32

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
        self.goal = states - 1
        self.max_steps = 4 * states

    def step(self, state: int, action: int) -> tuple[int, float, bool]:
        """The next state, the reward and whether the episode ended."""
        if action == LEFT:
            following = max(state - 1, 0)
        else:
            following = min(state + 1, self.goal)
        done = following == self.goal
        return following, 1.0 if done else 0.0, done


class Rng:
    """SplitMix64, as the Rust actor's, seeded once when the node runs
    (from wasi:random, so a seeded `--launch test_mt` run replays the same
    episodes; seeding at import would bake one seed into the component)."""

    MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self.state = seed & self.MASK

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def unit(self) -> float:
        """Uniform in [0, 1)."""
        return (self.next_u64() >> 11) / float(1 << 53)

    def below(self, n: int) -> int:
        """Uniform in 0 .. n (n small: the modulo bias is negligible)."""
        return self.next_u64() % n


def greedy(left: float, right: float, rng: Rng) -> int:
    """The action with the larger value, ties broken at random (so an
    untrained table gives a random walk, not a wall)."""
    if left > right:
        return LEFT
    if right > left:
        return RIGHT
    return rng.below(ACTIONS)


async def episode(
    chain: Chain, q: list[float], epsilon: float, rng: Rng, writer: lp.ReplayWriter
) -> tuple[int, bool]:
    """Play one episode, appending each transition to `writer`; its steps,
    and whether it reached the goal."""
    state = 0
    for t in range(1, chain.max_steps + 1):
        if rng.unit() < epsilon:
            action = rng.below(ACTIONS)
        else:
            action = greedy(q[state * ACTIONS + LEFT], q[state * ACTIONS + RIGHT], rng)
        following, reward, done = chain.step(state, action)
        data = lp.tensor_item(
            obs=([1], [float(state)]),
            action=([1], [float(action)]),
            reward=([1], [reward]),
            next_obs=([1], [float(following)]),
            done=([1], [1.0 if done else 0.0]),
        )
        await writer.append(lp.new_item(data, {TABLE: 1.0}))
        if done:
            return t, True
        state = following
    return chain.max_steps, False


def end_or_fail(what: str, error: Exception) -> None:
    """A failed call ends the actor quietly when the program is stopping
    (the calls of a stopping program fail); otherwise it is a bug: raise,
    so the program fails naming it."""
    stopping = isinstance(error, lp.CallError) and error.kind == "stopping"
    if not stopping and not lp.is_stopping():
        raise RuntimeError(f"{what} failed: {error}") from error


class Lifecycle(exports.Lifecycle):
    async def run(self) -> None:
        args = lp.args()
        replay = lp.Replay(args["replay"])
        learner = lp.Client(learner_client, args["learner"])
        # The same defaults as the Rust actor's.
        chain = Chain(int(args.get("states", 10)))
        epsilon = float(args.get("epsilon", 0.2))
        policy_every = max(1, int(args.get("policy_every", 5)))
        rng = Rng(int.from_bytes(os.urandom(8), "little"))
        writer = replay.writer(BATCH)
        # All zeros until the learner's first answer: a random walk.
        q = [0.0] * (chain.states * ACTIONS)
        episodes = goals = transitions = 0
        while True:
            # Between episodes: end once the program stops.
            if await lp.wait_for_stop(0):
                break
            if episodes % policy_every == 0:
                try:
                    table = await learner.policy()
                except lp.CallError as e:
                    end_or_fail("policy()", e)
                    break
                if len(table) != len(q):
                    raise ValueError(
                        f"the learner's Q table does not fit a chain of {chain.states} "
                        "states: give the actors and the learner the same `states`"
                    )
                q = list(table)
            try:
                steps, reached = await episode(chain, q, epsilon, rng, writer)
            except (lp.CallError, lp.ReplayError) as e:
                end_or_fail("insert", e)
                break
            episodes += 1
            goals += int(reached)
            transitions += steps
        # What is still pending goes now; a stopping program refuses it.
        try:
            await writer.flush()
        except (lp.CallError, lp.ReplayError) as e:
            end_or_fail("insert", e)
        lp.info(f"{episodes} episodes ({goals} reached the goal), {transitions} transitions")

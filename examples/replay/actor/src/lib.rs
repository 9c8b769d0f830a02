//! The actor: plays episodes of the chain (chain.rs) epsilon-greedily on
//! the learner's Q table (fetched with `policy()` every `policy_every`
//! episodes) and writes every transition into the replay's `experience`
//! table, 32 items a call, until the program stops.
//!
//! One transition is one item of five f32 tensors of shape [1]: `obs` (the
//! state), `action` (0 left, 1 right), `reward`, `next_obs` and `done` (1.0
//! when the goal was reached, else 0.0; an episode cut at its step limit
//! has 0.0). Each goes in with priority 1.0; the learner sets the real
//! priorities once it has seen them.

lp_guest::generate!({
    world: "lp:replay-example/actor-node",
    path: "../wit",
});

mod chain;

use std::time::Duration;

use chain::{ACTIONS, Chain, LEFT, RIGHT};
use lp_guest::CallError;
use lp_guest::replay::{self, ItemData, NewItem, Replay, Tensor, Writer};

lp_guest::client! {
    /// The learner, as the actors see it.
    pub struct Learner => lp::replay_example::learner_client {
        fn policy() -> Vec<f32>;
    }
}

/// The replay table the transitions go into.
const TABLE: &str = "experience";
/// Items a call to the replay carries.
const BATCH: usize = 32;

#[derive(serde::Deserialize)]
struct Args {
    replay: Replay,
    learner: Learner,
    /// The chain's length (the learner's must be the same).
    #[serde(default = "default_states")]
    states: u32,
    /// The probability of a random action.
    #[serde(default = "default_epsilon")]
    epsilon: f64,
    /// Fetch the learner's Q table every this many episodes.
    #[serde(default = "default_policy_every")]
    policy_every: u64,
}

fn default_states() -> u32 {
    10
}

fn default_epsilon() -> f64 {
    0.2
}

fn default_policy_every() -> u64 {
    5
}

struct Actor;

impl exports::lp::node::lifecycle::Guest for Actor {
    async fn run() {
        let args: Args = lp_guest::args().expect("actor args");
        let chain = Chain::new(args.states);
        let mut rng = Rng::new(lp_guest::random_u64());
        let mut writer = args.replay.writer(BATCH);
        // All zeros until the learner's first answer: a random walk.
        let mut q = vec![0.0f32; chain.states() as usize * ACTIONS];
        let (mut episodes, mut goals, mut transitions) = (0u64, 0u64, 0u64);
        loop {
            // Between episodes: end once the program stops.
            if lp_guest::wait_for_stop(Some(Duration::ZERO)).await {
                break;
            }
            if episodes % args.policy_every.max(1) == 0 {
                match args.learner.policy().await {
                    Ok(table) => {
                        assert_eq!(
                            table.len(),
                            q.len(),
                            "the learner's Q table does not fit a chain of {} states: \
                             give the actors and the learner the same `states`",
                            chain.states()
                        );
                        q = table;
                    }
                    Err(e) => {
                        end_or_fail("policy()", &e, e == CallError::Stopping);
                        break;
                    }
                }
            }
            match episode(&chain, &q, args.epsilon, &mut rng, &mut writer).await {
                Ok((steps, reached)) => {
                    episodes += 1;
                    goals += u64::from(reached);
                    transitions += u64::from(steps);
                }
                Err(e) => {
                    end_or_fail("insert", &e, e.is_stopping());
                    break;
                }
            }
        }
        // What is still pending goes now; a stopping program refuses it.
        if let Err(e) = writer.flush().await {
            end_or_fail("insert", &e, e.is_stopping());
        }
        lp_guest::info!(
            "{episodes} episodes ({goals} reached the goal), {transitions} transitions"
        );
    }
}

/// Play one episode, appending each transition to `writer`; its steps, and
/// whether it reached the goal.
async fn episode(
    chain: &Chain,
    q: &[f32],
    epsilon: f64,
    rng: &mut Rng,
    writer: &mut Writer,
) -> Result<(u32, bool), replay::Error> {
    let mut state = chain.start();
    for t in 1..=chain.max_steps() {
        let action = if rng.unit() < epsilon {
            rng.below(ACTIONS as u64) as usize
        } else {
            greedy(&q[state as usize * ACTIONS..][..ACTIONS], rng)
        };
        let step = chain.step(state, action);
        let data = ItemData::Tensors(vec![
            Tensor::f32("obs", &[1], vec![state as f32]),
            Tensor::f32("action", &[1], vec![action as f32]),
            Tensor::f32("reward", &[1], vec![step.reward]),
            Tensor::f32("next_obs", &[1], vec![step.next as f32]),
            Tensor::f32("done", &[1], vec![if step.done { 1.0 } else { 0.0 }]),
        ]);
        writer.append(NewItem::new(data, &[(TABLE, 1.0)])).await?;
        if step.done {
            return Ok((t, true));
        }
        state = step.next;
    }
    Ok((chain.max_steps(), false))
}

/// The action with the larger value, ties broken at random (so an
/// untrained table gives a random walk, not a wall).
fn greedy(row: &[f32], rng: &mut Rng) -> usize {
    let (left, right) = (row[LEFT], row[RIGHT]);
    if left > right {
        LEFT
    } else if right > left {
        RIGHT
    } else {
        rng.below(ACTIONS as u64) as usize
    }
}

/// A failed call ends the actor quietly when the program is stopping (the
/// calls of a stopping program fail, `stopping` says whether this one
/// failed for that); otherwise it is a bug: panic, so the program fails
/// naming it.
fn end_or_fail(what: &str, error: &dyn std::fmt::Display, stopping: bool) {
    if !stopping && !lp_guest::is_stopping() {
        panic!("{what} failed: {error}");
    }
}

/// SplitMix64, seeded once from `lp_guest::random_u64()` (so a seeded
/// `--launch test_mt` run replays the same episodes).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0 .. n (n small: the modulo bias is negligible).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

export!(Actor);

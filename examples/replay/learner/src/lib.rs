//! The learner: tabular Q-learning on the chain from prioritized batches
//! of the replay's `experience` table. Each update samples `batch` items
//! (32), moves Q toward each one's TD target (weighted by its importance
//! weight, since the samples are prioritized), and sets each item's
//! priority to |TD error| + 1e-3. It serves the Q table as `policy()` to
//! the actors meanwhile. After `steps` updates (2000) it walks the chain
//! greedily, logs how far that got and the replay's tables, and stops the
//! program.
//!
//! A transition is an item of five f32 tensors of shape [1] (`obs`,
//! `action`, `reward`, `next_obs`, `done`), as the actor writes them.

lp_guest::generate!({
    world: "lp:replay-example/learner-node",
    path: "../wit",
});

// The chain's dynamics, from the actor crate: one definition of the
// environment the actors play and the greedy walk here takes.
#[path = "../../actor/src/chain.rs"]
mod chain;

use std::sync::{Mutex, MutexGuard, OnceLock};

use chain::{ACTIONS, Chain, LEFT, RIGHT};
use lp_guest::replay::{self, ItemData, Replay, Sampled};

/// The replay table the transitions come from.
const TABLE: &str = "experience";

#[derive(serde::Deserialize)]
struct Args {
    replay: Replay,
    /// The chain's length (the actors' must be the same).
    #[serde(default = "default_states")]
    states: u32,
    /// Updates to take before evaluating and stopping the program.
    #[serde(default = "default_steps")]
    steps: u64,
    /// Samples per update.
    #[serde(default = "default_batch")]
    batch: u32,
    /// The discount.
    #[serde(default = "default_gamma")]
    gamma: f32,
    /// The step size.
    #[serde(default = "default_learning_rate")]
    learning_rate: f32,
    /// The importance-sampling exponent (0: no correction, 1: full).
    #[serde(default = "default_beta")]
    beta: f64,
}

fn default_states() -> u32 {
    10
}

fn default_steps() -> u64 {
    2000
}

fn default_batch() -> u32 {
    32
}

fn default_gamma() -> f32 {
    0.9
}

fn default_learning_rate() -> f32 {
    0.5
}

fn default_beta() -> f64 {
    0.4
}

fn args() -> &'static Args {
    static ARGS: OnceLock<Args> = OnceLock::new();
    ARGS.get_or_init(|| lp_guest::args().expect("learner args"))
}

/// The Q table: states x actions, row-major; `run` updates it between
/// calls, `policy()` copies it.
fn q_table() -> MutexGuard<'static, Vec<f32>> {
    static Q: OnceLock<Mutex<Vec<f32>>> = OnceLock::new();
    Q.get_or_init(|| Mutex::new(vec![0.0; args().states as usize * ACTIONS]))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One transition, read back from its item.
struct Transition {
    obs: usize,
    action: usize,
    reward: f32,
    next_obs: usize,
    done: bool,
}

impl Transition {
    /// Read `data`; a malformed item is a bug of the writer (panics).
    fn read(data: &ItemData) -> Transition {
        let scalar = |name: &str| -> f32 {
            match data.f32(name) {
                Some(&[value]) => value,
                _ => panic!("a transition without a one-element f32 tensor `{name}`: {data:?}"),
            }
        };
        let transition = Transition {
            obs: scalar("obs") as usize,
            action: scalar("action") as usize,
            reward: scalar("reward"),
            next_obs: scalar("next_obs") as usize,
            done: scalar("done") != 0.0,
        };
        // An action out of range would update another state's Q value.
        assert!(
            transition.action < ACTIONS,
            "a transition with action {} (there are {ACTIONS}): {data:?}",
            transition.action
        );
        transition
    }
}

struct Learner;

impl exports::lp::node::lifecycle::Guest for Learner {
    async fn run() {
        let args = args();
        let chain = Chain::new(args.states);
        let mut updates = 0;
        while updates < args.steps {
            let batch = match args.replay.sample(TABLE, args.batch).await {
                Ok(batch) => batch,
                Err(e) => return end_or_fail("sample", &e),
            };
            let priorities = learn(&batch, args);
            if let Err(e) = args.replay.update_priorities(TABLE, &priorities).await {
                return end_or_fail("update_priorities", &e);
            }
            updates += 1;
        }

        let optimal = chain.optimal_steps();
        let reached = greedy_walk(&chain, &q_table());
        match reached {
            Some(steps) => lp_guest::info!(
                "learner: {updates} updates, greedy policy reaches the goal in {steps} steps (optimal {optimal})"
            ),
            None => lp_guest::warn!(
                "learner: {updates} updates, greedy policy does not reach the goal in {} steps (optimal {optimal})",
                chain.max_steps()
            ),
        }
        match args.replay.info().await {
            Ok(tables) => {
                for t in tables {
                    lp_guest::info!(
                        "learner: replay table {}: size {} of {}, {} inserts, {} samples, {} deletes",
                        t.name,
                        t.size,
                        t.max_size,
                        t.inserts,
                        t.samples,
                        t.deletes
                    );
                }
            }
            Err(e) => return end_or_fail("info", &e),
        }
        lp_guest::stop();
    }
}

impl exports::lp::replay_example::learner::Guest for Learner {
    fn policy() -> Vec<f32> {
        q_table().clone()
    }
}

/// One Q-learning update from `batch`: each sample moves Q toward its TD
/// target, weighted by its importance weight `(N * P)^-beta` (normalised
/// by the batch's largest); the new priorities, `(key, |TD error| + 1e-3)`.
fn learn(batch: &[Sampled], args: &Args) -> Vec<(u64, f64)> {
    let weight = |s: &Sampled| (s.table_size as f64 * s.probability).powf(-args.beta);
    let max_weight = batch.iter().map(weight).fold(f64::MIN_POSITIVE, f64::max);
    let mut q = q_table();
    batch
        .iter()
        .map(|s| {
            let t = Transition::read(&s.data);
            let next = &q[t.next_obs * ACTIONS..][..ACTIONS];
            let bootstrap = if t.done {
                0.0
            } else {
                next[LEFT].max(next[RIGHT])
            };
            let cell = t.obs * ACTIONS + t.action;
            let td = t.reward + args.gamma * bootstrap - q[cell];
            q[cell] += args.learning_rate * (weight(s) / max_weight) as f32 * td;
            (s.key, f64::from(td.abs()) + 1e-3)
        })
        .collect()
}

/// Walk the chain from its start taking the greedy action (a tie goes
/// left: only a learned preference moves right); the steps to the goal, or
/// `None` if it is not reached within an episode's step limit.
fn greedy_walk(chain: &Chain, q: &[f32]) -> Option<u32> {
    let mut state = chain.start();
    for t in 1..=chain.max_steps() {
        let row = &q[state as usize * ACTIONS..][..ACTIONS];
        let action = if row[RIGHT] > row[LEFT] { RIGHT } else { LEFT };
        let step = chain.step(state, action);
        if step.done {
            return Some(t);
        }
        state = step.next;
    }
    None
}

/// A failed call ends the run quietly when the program is stopping (e.g.
/// on Ctrl-C); otherwise it is a bug: panic, so the program fails naming it.
fn end_or_fail(what: &str, error: &replay::Error) {
    if !error.is_stopping() && !lp_guest::is_stopping() {
        panic!("{what} failed: {error}");
    }
}

export!(Learner);

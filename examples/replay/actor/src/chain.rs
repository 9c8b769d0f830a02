//! The environment: a 1-D chain of states `0 ..= states - 1`. An episode
//! starts in state 0; the actions move one state left or right (left in
//! state 0 stays there); reaching the last state gives reward 1.0 and ends
//! the episode, every other step gives 0.0. An episode is cut after
//! `4 * states` steps (a cut is not an end: its last transition has
//! `done = false`, so the learner still bootstraps from it).
//!
//! The learner walks the same chain to evaluate its greedy policy, so it
//! includes this file too (`#[path]`): one definition of the dynamics.

// Each of the two crates uses only part of it.
#![allow(dead_code)]

/// Action 0: one state to the left.
pub const LEFT: usize = 0;
/// Action 1: one state to the right.
pub const RIGHT: usize = 1;
/// How many actions there are (a Q table's row length).
pub const ACTIONS: usize = 2;

/// The chain.
#[derive(Clone, Copy, Debug)]
pub struct Chain {
    states: u32,
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The state the step led to.
    pub next: u32,
    /// 1.0 on reaching the goal, else 0.0.
    pub reward: f32,
    /// Whether the episode ended (the goal was reached).
    pub done: bool,
}

impl Chain {
    /// A chain of `states` states.
    ///
    /// # Panics
    /// If `states` is less than 2 (there would be nowhere to go).
    pub fn new(states: u32) -> Chain {
        assert!(
            states >= 2,
            "the chain needs at least 2 states, not {states}"
        );
        Chain { states }
    }

    /// How many states there are.
    pub fn states(&self) -> u32 {
        self.states
    }

    /// The state every episode starts in.
    pub fn start(&self) -> u32 {
        0
    }

    /// The last state, where the reward is.
    pub fn goal(&self) -> u32 {
        self.states - 1
    }

    /// The fewest steps from the start to the goal.
    pub fn optimal_steps(&self) -> u32 {
        self.goal() - self.start()
    }

    /// The steps after which an episode is cut.
    pub fn max_steps(&self) -> u32 {
        4 * self.states
    }

    /// Take `action` ([`LEFT`] or [`RIGHT`]) in `state`.
    pub fn step(&self, state: u32, action: usize) -> Step {
        let next = match action {
            LEFT => state.saturating_sub(1),
            _ => (state + 1).min(self.goal()),
        };
        let done = next == self.goal();
        Step {
            next,
            reward: if done { 1.0 } else { 0.0 },
            done,
        }
    }
}

//! Sampling distributions: uniform and prioritized samplers draw each item
//! as often as their probabilities say (Pearson chi-square at the 0.999
//! quantile, with a wrong expectation to show the test can fail), and
//! report those probabilities exactly.

use lp_replay::{PriorityUpdate, Replay, Sampled, Selector};

use crate::{CHI2_19_999, chi_square, fill, simple};

const N: u32 = 200_000;

/// How often each of the 20 items (keys `first..first + 20`) was drawn;
/// also checks each item's times_sampled counts 1, 2, 3, ... in order.
fn counts(samples: &[Sampled], first: u64, before: &[u64]) -> Vec<u64> {
    let mut counts = vec![0u64; 20];
    for s in samples {
        let i = (s.key - first) as usize;
        counts[i] += 1;
        assert_eq!(s.times_sampled as u64, before[i] + counts[i]);
        assert_eq!(s.table_size, 20);
    }
    counts
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[tokio::test]
async fn uniform_sampler_draws_every_item_equally() {
    let replay = Replay::new(vec![simple("t", 100, Selector::Uniform)], 1).unwrap();
    // Distinct priorities, which a uniform sampler ignores.
    let priorities: Vec<f64> = (1..=20).map(f64::from).collect();
    let keys = fill(&replay, "t", &priorities).await;
    let samples = sample_many(&replay, N).await;
    assert_eq!(samples.len(), N as usize);
    assert!(samples.iter().all(|s| s.probability == 1.0 / 20.0));
    let counts = counts(&samples, keys[0], &[0; 20]);

    let stat = chi_square(&counts, &[1.0; 20]);
    assert!(stat < CHI2_19_999, "chi-square {stat} against uniform");
    // The same counts against priority-proportional weights: far off.
    let wrong = chi_square(&counts, &priorities);
    assert!(wrong > 20.0 * CHI2_19_999, "chi-square {wrong} against p_i");
    assert_eq!(replay.info()[0].samples, u64::from(N));
}

/// Sample N, check probabilities against p^a / sum and the counts by
/// chi-square; the counts, to test them against other expectations.
async fn check_prioritized(
    replay: &Replay,
    priorities: &[f64],
    exponent: f64,
    first: u64,
    before: &[u64],
) -> Vec<u64> {
    let weights: Vec<f64> = priorities.iter().map(|p| p.powf(exponent)).collect();
    let total: f64 = weights.iter().sum();
    let samples = sample_many(replay, N).await;
    for s in &samples {
        let i = (s.key - first) as usize;
        assert_eq!(s.priority, priorities[i]);
        let expected = weights[i] / total;
        assert!(
            relative(s.probability, expected) < 1e-12,
            "item {i}: probability {} not {expected}",
            s.probability
        );
    }
    let counts = counts(&samples, first, before);
    let stat = chi_square(&counts, &weights);
    assert!(stat < CHI2_19_999, "chi-square {stat} against p^{exponent}");
    counts
}

async fn prioritized(exponent: f64) {
    let replay = Replay::new(
        vec![simple("t", 100, Selector::Prioritized { exponent })],
        2,
    )
    .unwrap();
    let priorities: Vec<f64> = (1..=20).map(f64::from).collect();
    let keys = fill(&replay, "t", &priorities).await;
    let first = check_prioritized(&replay, &priorities, exponent, keys[0], &[0; 20]).await;
    let wrong = chi_square(&first, &[1.0; 20]);
    assert!(
        wrong > 20.0 * CHI2_19_999,
        "chi-square {wrong} against uniform"
    );

    // Reverse the priorities: the distribution follows.
    let reversed: Vec<f64> = priorities.iter().rev().copied().collect();
    let updates: Vec<PriorityUpdate> = keys
        .iter()
        .zip(&reversed)
        .map(|(&key, &priority)| PriorityUpdate { key, priority })
        .collect();
    replay.update_priorities("t", &updates).unwrap();
    let second = check_prioritized(&replay, &reversed, exponent, keys[0], &first).await;
    let old: Vec<f64> = priorities.iter().map(|p| p.powf(exponent)).collect();
    let stale = chi_square(&second, &old);
    assert!(
        stale > 20.0 * CHI2_19_999,
        "chi-square {stale} against the old priorities"
    );
}

#[tokio::test]
async fn prioritized_sampler_with_exponent_0_6() {
    prioritized(0.6).await;
}

#[tokio::test]
async fn prioritized_sampler_with_exponent_1() {
    prioritized(1.0).await;
}

#[tokio::test]
async fn prioritized_sampler_with_zero_priorities() {
    // Every priority 0: uniform.
    let replay = Replay::new(
        vec![simple("t", 100, Selector::Prioritized { exponent: 1.0 })],
        3,
    )
    .unwrap();
    let keys = fill(&replay, "t", &[0.0; 20]).await;
    let samples = sample_many(&replay, N).await;
    assert!(samples.iter().all(|s| s.probability == 1.0 / 20.0));
    let drawn = counts(&samples, keys[0], &[0; 20]);
    let stat = chi_square(&drawn, &[1.0; 20]);
    assert!(stat < CHI2_19_999, "chi-square {stat} against uniform");

    // One positive priority among zeros: only that item, probability 1.
    replay
        .update_priorities(
            "t",
            &[PriorityUpdate {
                key: keys[7],
                priority: 0.5,
            }],
        )
        .unwrap();
    let samples = replay.sample("t", 1000).await.unwrap();
    assert!(
        samples
            .iter()
            .all(|s| s.key == keys[7] && s.probability == 1.0)
    );

    // Exponent 0: every item equally likely, zeros too (0^0 = 1).
    let replay = Replay::new(
        vec![simple("t", 100, Selector::Prioritized { exponent: 0.0 })],
        4,
    )
    .unwrap();
    let mut priorities = vec![0.0; 10];
    priorities.extend((1..=10).map(f64::from));
    let keys = fill(&replay, "t", &priorities).await;
    let samples = sample_many(&replay, N).await;
    assert!(samples.iter().all(|s| s.probability == 1.0 / 20.0));
    let stat = chi_square(&counts(&samples, keys[0], &[0; 20]), &[1.0; 20]);
    assert!(stat < CHI2_19_999, "chi-square {stat} against uniform");
}

/// `n` samples from table "t", in calls of at most `MAX_SAMPLE_BATCH`.
async fn sample_many(replay: &Replay, n: u32) -> Vec<lp_replay::Sampled> {
    let mut samples = Vec::with_capacity(n as usize);
    while samples.len() < n as usize {
        let left = n - samples.len() as u32;
        let call = left.min(lp_replay::MAX_SAMPLE_BATCH);
        samples.extend(replay.sample("t", call).await.unwrap());
    }
    samples
}

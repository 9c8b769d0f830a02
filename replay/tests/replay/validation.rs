//! Validation: every bad table value refused naming its field, duplicate
//! table names, and calls refused whole (unknown tables, missing or
//! repeated or bad priorities) with nothing changed.

use lp_replay::{NewItem, PriorityUpdate, RateLimiter, Replay, ReplayError, Selector, TableConfig};

use crate::{fill, item, simple, table};

fn base() -> TableConfig {
    simple("t", 10, Selector::Uniform)
}

fn queue(size: u64) -> TableConfig {
    table(
        "q",
        10,
        Selector::Fifo,
        Selector::Fifo,
        1,
        RateLimiter::Queue { size },
    )
}

fn ratio(spi: f64, min: u64, error: f64) -> TableConfig {
    TableConfig {
        rate_limiter: RateLimiter::SampleToInsertRatio {
            samples_per_insert: spi,
            min_size_to_sample: min,
            error_buffer: error,
        },
        ..base()
    }
}

#[test]
fn bad_table_values_are_refused_naming_their_field() {
    let prioritized = |exponent| Selector::Prioritized { exponent };
    let stack = TableConfig {
        rate_limiter: RateLimiter::Stack { size: 4 },
        sampler: Selector::Lifo,
        remover: Selector::Lifo,
        ..queue(4)
    };
    let cases: Vec<(TableConfig, &str)> = vec![
        (
            TableConfig {
                name: String::new(),
                ..base()
            },
            "name",
        ),
        (
            TableConfig {
                max_size: 0,
                ..base()
            },
            "max_size",
        ),
        (
            TableConfig {
                sampler: prioritized(f64::NAN),
                ..base()
            },
            "sampler.exponent",
        ),
        (
            TableConfig {
                sampler: prioritized(-0.5),
                ..base()
            },
            "sampler.exponent",
        ),
        (
            TableConfig {
                sampler: prioritized(f64::INFINITY),
                ..base()
            },
            "sampler.exponent",
        ),
        (
            TableConfig {
                remover: prioritized(-1.0),
                ..base()
            },
            "remover.exponent",
        ),
        (
            TableConfig {
                rate_limiter: RateLimiter::MinSize { min_size: 0 },
                ..base()
            },
            "rate_limiter.min_size",
        ),
        (ratio(0.0, 1, 2.0), "rate_limiter.samples_per_insert"),
        (ratio(-1.0, 1, 2.0), "rate_limiter.samples_per_insert"),
        (ratio(f64::NAN, 1, 2.0), "rate_limiter.samples_per_insert"),
        (
            ratio(f64::INFINITY, 1, 2.0),
            "rate_limiter.samples_per_insert",
        ),
        (ratio(1.0, 0, 2.0), "rate_limiter.min_size_to_sample"),
        (ratio(1.0, 1, f64::NAN), "rate_limiter.error_buffer"),
        (ratio(1.0, 1, f64::INFINITY), "rate_limiter.error_buffer"),
        (ratio(1.0, 1, -1.0), "rate_limiter.error_buffer"),
        (ratio(0.5, 1, 0.9), "rate_limiter.error_buffer"),
        (ratio(4.0, 1, 3.0), "rate_limiter.error_buffer"),
        (queue(0), "rate_limiter.size"),
        (queue(11), "rate_limiter.size"),
        (
            TableConfig {
                sampler: Selector::Lifo,
                ..queue(4)
            },
            "sampler",
        ),
        (
            TableConfig {
                remover: Selector::Uniform,
                ..queue(4)
            },
            "remover",
        ),
        (
            TableConfig {
                max_times_sampled: 0,
                ..queue(4)
            },
            "max_times_sampled",
        ),
        (
            TableConfig {
                max_times_sampled: 2,
                ..queue(4)
            },
            "max_times_sampled",
        ),
        (
            TableConfig {
                rate_limiter: RateLimiter::Stack { size: 0 },
                ..stack.clone()
            },
            "rate_limiter.size",
        ),
        (
            TableConfig {
                sampler: Selector::Fifo,
                ..stack.clone()
            },
            "sampler",
        ),
        (
            TableConfig {
                remover: Selector::MaxHeap,
                ..stack.clone()
            },
            "remover",
        ),
    ];
    for (config, field) in cases {
        let e = config.validate().expect_err(field);
        assert_eq!(e.field, field, "{config:?}: {e}");
        assert_eq!(e.table, config.name);
        assert!(e.to_string().contains(&format!("{:?}", config.name)), "{e}");
        // Replay::new refuses it too.
        let again = Replay::new(vec![base_named("other"), config], 0)
            .err()
            .unwrap();
        assert_eq!(again.field, field);
    }
    // The limits themselves are fine.
    for good in [
        TableConfig {
            sampler: prioritized(0.0),
            remover: prioritized(2.0),
            ..base()
        },
        ratio(3.0, 1, 3.0),
        ratio(0.25, 1, 1.0),
        queue(10),
        stack,
    ] {
        good.validate().unwrap();
    }
    let e = config_error(Replay::new(vec![base(), base_named("u"), base()], 0));
    assert_eq!(e.field, "name");
    assert!(e.message.contains("two tables are named \"t\""), "{e}");
}

fn base_named(name: &str) -> TableConfig {
    TableConfig {
        name: name.into(),
        ..base()
    }
}

fn config_error(r: Result<Replay, lp_replay::ConfigError>) -> lp_replay::ConfigError {
    r.err().expect("refused")
}

fn invalid<T: std::fmt::Debug>(r: Result<T, ReplayError>, says: &str) {
    match r {
        Err(ReplayError::Invalid(m)) => assert!(m.contains(says), "{says:?} not in {m:?}"),
        other => panic!("expected Invalid({says}), got {other:?}"),
    }
}

#[tokio::test]
async fn bad_calls_are_refused_whole() {
    let replay = Replay::new(
        vec![
            simple("t", 10, Selector::MinHeap),
            simple("p", 10, Selector::Prioritized { exponent: 2.0 }),
        ],
        0,
    )
    .unwrap();
    let good = || item(0, &[("t", 1.0)]);
    assert_eq!(
        replay.insert(vec![good(), item(1, &[("nope", 1.0)])]).await,
        Err(ReplayError::NoSuchTable("nope".into()))
    );
    let bare = NewItem {
        priorities: Vec::new(),
        ..good()
    };
    invalid(
        replay.insert(vec![good(), bare]).await,
        "item 1 has no priorities",
    );
    invalid(
        replay
            .insert(vec![item(0, &[("t", 1.0), ("p", 1.0), ("t", 2.0)])])
            .await,
        "names table \"t\" twice",
    );
    for bad in [f64::NAN, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
        invalid(
            replay.insert(vec![good(), item(0, &[("t", bad)])]).await,
            "not a finite number >= 0",
        );
    }
    // 1e200 squared overflows the prioritized sampler's sums.
    invalid(
        replay.insert(vec![item(0, &[("p", 1e200)])]).await,
        "too large",
    );
    assert!(replay.info().iter().all(|t| t.inserts == 0 && t.size == 0));

    let err = replay.sample("nope", 1).await.unwrap_err();
    assert_eq!(err, ReplayError::NoSuchTable("nope".into()));
    assert!(err.to_string().contains("program.toml"), "{err}");
    assert_eq!(
        replay.update_priorities("nope", &[]),
        Err(ReplayError::NoSuchTable("nope".into()))
    );
    assert_eq!(
        replay.delete("nope", &[1]),
        Err(ReplayError::NoSuchTable("nope".into()))
    );
    assert_eq!(
        replay.reset("nope"),
        Err(ReplayError::NoSuchTable("nope".into()))
    );

    // The first valid insert gets key 1: no key was used above.
    let keys = fill(&replay, "t", &[1.0, 2.0, 3.0]).await;
    assert_eq!(keys, vec![1, 2, 3]);
    let lowest = || async { replay.sample("t", 1).await.unwrap()[0].key };
    assert_eq!(lowest().await, 1);
    // A bad priority anywhere in an update: nothing updated.
    let update = |key, priority| PriorityUpdate { key, priority };
    invalid(
        replay.update_priorities("t", &[update(1, 9.0), update(2, f64::NAN)]),
        "key 2",
    );
    assert_eq!(lowest().await, 1);
    // Unknown keys are ignored, known ones updated.
    replay
        .update_priorities("t", &[update(99, 0.0), update(1, 9.0)])
        .unwrap();
    assert_eq!(lowest().await, 2);
    assert_eq!(replay.delete("t", &[99, 2, 2]).unwrap(), 1);
    assert_eq!(lowest().await, 3);

    // -0.0 is a priority of 0: it ties with 0.0, and the older wins.
    let replay = Replay::new(vec![simple("t", 10, Selector::MinHeap)], 0).unwrap();
    let keys = fill(&replay, "t", &[-0.0, 0.0]).await;
    let s = replay.sample("t", 1).await.unwrap().remove(0);
    assert_eq!(s.key, keys[0]);
    assert!(s.priority == 0.0 && s.priority.is_sign_positive());
    assert!(replay.insert(Vec::new()).await.unwrap().is_empty());
}

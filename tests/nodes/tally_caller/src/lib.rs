//! Calls the tally through clients declared in `client!`'s natural forms:
//! methods without `-> ()`, and the same argument style (owned, or
//! borrowed) for the async and the blocking client.

lp_guest::generate!({
    world: "lp:tally/tally-caller-node",
    path: "../tally/wit",
});

use lp::tally::tally_client::Entry;

lp_guest::client! {
    /// The async client, arguments owned.
    pub struct Tally => lp::tally::tally_client {
        fn reset();
        fn add(label: String, amounts: Vec<u32>);
        fn add_entry(entry: Entry);
        fn total() -> u64;
        fn labels() -> Vec<String>;
    }
}

lp_guest::client! {
    /// The async client, arguments borrowed.
    pub struct TallyBorrowing => lp::tally::tally_client {
        fn add(label: &str, amounts: &[u32]);
        fn add_entry(entry: &Entry);
    }
}

lp_guest::client! {
    /// The blocking client, arguments owned (as for the async one).
    pub struct BlockingTally => blocking lp::tally::tally_blocking_client {
        fn add(label: String, amounts: Vec<u32>);
        fn add_entry(entry: Entry);
        fn total() -> u64;
        fn labels() -> Vec<String>;
    }
}

lp_guest::client! {
    /// The blocking client, arguments borrowed.
    pub struct BlockingTallyBorrowing => blocking lp::tally::tally_blocking_client {
        fn add(label: &str, amounts: &[u32]);
        fn reset();
    }
}

#[derive(serde::Deserialize)]
struct Args {
    tally: Tally,
}

fn entry(label: &str, amounts: &[u32]) -> Entry {
    Entry {
        label: label.to_string(),
        amounts: amounts.to_vec(),
    }
}

async fn calls(tally: Tally) -> Result<String, lp_guest::CallError> {
    let borrowing = TallyBorrowing(tally.handle());
    let blocking = BlockingTally(tally.handle());
    let blocking_borrowing = BlockingTallyBorrowing(tally.handle());

    blocking_borrowing.add("stale", &[1000])?;
    blocking_borrowing.reset()?;
    tally.reset().await?;
    tally.add("a".to_string(), vec![1, 2]).await?;
    tally.add_entry(entry("b", &[3])).await?;
    borrowing.add("c", &[4]).await?;
    borrowing.add_entry(&entry("d", &[5])).await?;
    blocking.add("e".to_string(), vec![6])?;
    blocking.add_entry(entry("f", &[7]))?;
    blocking_borrowing.add("g", &[8])?;
    let total = tally.total().await?;
    let blocking_total = blocking.total()?;
    let labels = tally.labels().await?;
    let blocking_labels = blocking.labels()?;
    Ok(format!(
        "total {total} {blocking_total}; labels {} {}",
        labels.join(","),
        blocking_labels.join(",")
    ))
}

struct Caller;

impl exports::lp::node::lifecycle::Guest for Caller {
    async fn run() {
        let args: Args = lp_guest::args().expect("tally_caller args");
        match calls(args.tally).await {
            Ok(summary) => lp_guest::info!("{summary}"),
            Err(e) => lp_guest::error!("a call failed: {e}"),
        }
        lp_guest::stop();
    }
}

export!(Caller);

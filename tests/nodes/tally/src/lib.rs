//! A tally service with functions that return nothing and take strings,
//! lists and a record: what the natural `client!` forms call.

lp_guest::generate!({
    world: "lp:tally/tally-node",
});

use std::sync::Mutex;

use exports::lp::tally::tally::Entry;

static ENTRIES: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn entries() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    ENTRIES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Tally;

impl exports::lp::tally::tally::Guest for Tally {
    fn add(label: String, amounts: Vec<u32>) {
        entries().push(Entry { label, amounts });
    }

    fn add_entry(entry: Entry) {
        entries().push(entry);
    }

    fn reset() {
        entries().clear();
    }

    fn total() -> u64 {
        entries()
            .iter()
            .flat_map(|e| &e.amounts)
            .map(|&a| u64::from(a))
            .sum()
    }

    fn labels() -> Vec<String> {
        entries().iter().map(|e| e.label.clone()).collect()
    }
}

export!(Tally);

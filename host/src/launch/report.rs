//! How failures are told: replicas that failed the same way (the same error
//! but for their own names) are told once, with their count and names, so
//! one bad value on a 100-replica entry is one message, not a hundred.

use super::Outcome;

/// How many names a grouped failure lists before it says how many more.
const NAMES_SHOWN: usize = 4;

impl Outcome {
    /// One line (or block) per distinct failure: `node X failed: ERROR`, or
    /// `N nodes failed the same way (X, Y, ... and M more); X: ERROR`.
    pub fn failure_report(&self) -> Vec<String> {
        let mut groups: Vec<(String, Vec<&str>, &str)> = Vec::new();
        for failure in &self.failures {
            let shape = failure.error.replace(&failure.node, "\u{0}");
            match groups.iter_mut().find(|(s, _, _)| *s == shape) {
                Some((_, nodes, _)) => nodes.push(&failure.node),
                None => groups.push((shape, vec![&failure.node], &failure.error)),
            }
        }
        groups
            .into_iter()
            .map(|(_, nodes, error)| match nodes.as_slice() {
                [node] => format!("node {node} failed: {error}"),
                _ => {
                    let mut names = nodes[..nodes.len().min(NAMES_SHOWN)].join(", ");
                    if nodes.len() > NAMES_SHOWN {
                        names.push_str(&format!(" and {} more", nodes.len() - NAMES_SHOWN));
                    }
                    format!(
                        "{} nodes failed the same way ({names}); {}: {error}",
                        nodes.len(),
                        nodes[0]
                    )
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EndReason, NodeFailure};
    use super::*;

    fn failed(node: &str, error: &str) -> NodeFailure {
        NodeFailure {
            node: node.into(),
            error: error.into(),
        }
    }

    #[test]
    fn replicas_that_failed_alike_are_told_once() {
        let mut failures: Vec<NodeFailure> = (0..100)
            .map(|i| {
                failed(
                    &format!("ring/{i}"),
                    &format!("panicked: args of node ring/{i} do not fit"),
                )
            })
            .collect();
        failures.push(failed("learner", "memory limit reached"));
        let outcome = Outcome {
            reason: EndReason::Failed,
            failures,
            interrupted: Vec::new(),
        };
        assert_eq!(
            outcome.failure_report(),
            [
                "100 nodes failed the same way (ring/0, ring/1, ring/2, ring/3 and 96 more); ring/0: panicked: args of node ring/0 do not fit",
                "node learner failed: memory limit reached",
            ]
        );
    }

    #[test]
    fn different_failures_stay_apart() {
        let outcome = Outcome {
            reason: EndReason::Failed,
            failures: vec![failed("a/0", "x"), failed("a/1", "y"), failed("a/2", "x")],
            interrupted: Vec::new(),
        };
        assert_eq!(
            outcome.failure_report(),
            [
                "2 nodes failed the same way (a/0, a/2); a/0: x",
                "node a/1 failed: y"
            ]
        );
    }
}

//! Values that differ per replica: `{ per_replica = "EXPR" }` args and
//! `{ handle = "entry", index = "EXPR" }` handles. EXPR is arithmetic
//! (fasteval: `+ - * / % ^`, `floor`, `min`, `max`, comparisons, ...) over
//! the replica's `index` and its entry's `replicas` (and, in a handle, the
//! target entry's `target_replicas`).

use std::cell::Cell;

/// The replica whose args are being resolved.
pub(super) struct Replica<'a> {
    /// Its full name (`ring/3`), for messages.
    pub name: &'a str,
    pub index: u32,
    /// How many replicas its entry has.
    pub replicas: u32,
    /// Set when an arg used the replica: then every replica is resolved on
    /// its own, else the first one's args serve them all.
    pub depends: &'a Cell<bool>,
}

impl Replica<'_> {
    /// Evaluate `expr` for this replica; `target_replicas` too when given.
    pub fn eval(&self, expr: &str, target_replicas: Option<u32>) -> Result<f64, String> {
        self.depends.set(true);
        let (index, replicas) = (f64::from(self.index), f64::from(self.replicas));
        let mut vars = |name: &str, args: Vec<f64>| -> Option<f64> {
            if !args.is_empty() {
                return None;
            }
            match name {
                "index" => Some(index),
                "replicas" => Some(replicas),
                "target_replicas" => target_replicas.map(f64::from),
                _ => None,
            }
        };
        match fasteval::ez_eval(expr, &mut vars) {
            Ok(value) if value.is_finite() => Ok(value),
            Ok(value) => Err(format!("{expr:?} gives {value} for {}", self.name)),
            Err(fasteval::Error::Undefined(name)) => Err(format!(
                "{expr:?} uses `{name}`, which is not defined (variables: {})",
                match target_replicas {
                    Some(_) => "index, replicas, target_replicas",
                    None => "index, replicas",
                }
            )),
            Err(e) => Err(format!("cannot evaluate {expr:?}: {e:?}")),
        }
    }
}

/// `value` as a whole number, if it is one.
pub(super) fn whole(value: f64) -> Option<i64> {
    (value.fract() == 0.0 && value.abs() < 9.0e15).then_some(value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(index: u32, replicas: u32, depends: &Cell<bool>) -> Replica<'_> {
        Replica {
            name: "ring/x",
            index,
            replicas,
            depends,
        }
    }

    #[test]
    fn expressions_see_the_replica() {
        let depends = Cell::new(false);
        let r = replica(4, 5, &depends);
        assert_eq!(r.eval("(index + 1) % replicas", None), Ok(0.0));
        assert_eq!(r.eval("floor((index - 1) / 2)", None), Ok(1.0));
        assert_eq!(r.eval("index % target_replicas", Some(3)), Ok(1.0));
        assert_eq!(r.eval("1000 + index * 7", None), Ok(1028.0));
        assert!(depends.get());
    }

    #[test]
    fn bad_expressions_say_why() {
        let depends = Cell::new(false);
        let r = replica(0, 1, &depends);
        let e = r.eval("idx + 1", None).unwrap_err();
        assert!(e.contains("`idx`") && e.contains("index, replicas"), "{e}");
        assert!(r.eval("target_replicas", None).is_err());
        assert!(r.eval("1 / 0", None).unwrap_err().contains("gives inf"));
        assert!(r.eval("(1 +", None).is_err());
    }

    #[test]
    fn whole_numbers_only() {
        assert_eq!(whole(3.0), Some(3));
        assert_eq!(whole(-1.0), Some(-1));
        assert_eq!(whole(2.5), None);
    }
}

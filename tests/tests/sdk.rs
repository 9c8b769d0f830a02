//! The guest SDK as a node author uses it: client interfaces generated
//! from a service interface, and `client!` methods declared in their
//! natural forms (no `-> ()`, owned or borrowed arguments for async and
//! blocking clients alike), called at run time.

use lp_tests::{lines_of, run};

#[test]
fn generated_clients_declared_in_natural_forms_make_every_call() {
    let (outcome, lines) = run("tests/programs/tally.toml", &[]).unwrap();
    assert!(outcome.success(), "{outcome:?}\n{lines:?}");
    assert_eq!(
        lines_of(&lines, "caller"),
        ["total 36 36; labels a,b,c,d,e,f,g a,b,c,d,e,f,g"],
        "{lines:?}"
    );
}

//! Repository checks: every scenario is registered, documented, and its cases are unique.

use std::collections::HashSet;

#[test]
fn every_scenario_is_documented_and_its_cases_are_unique() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let architecture = std::fs::read_to_string(format!("{root}/ARCHITECTURE.md")).unwrap();
    let mut ids = HashSet::new();
    for scenario in avsoak_scenarios::all() {
        let name = scenario.name();
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not describe `{name}`"
        );
        assert!(
            architecture.contains(&format!("`{name}`")),
            "ARCHITECTURE.md does not describe `{name}`"
        );
        let cases = scenario.cases();
        assert!(
            cases
                .iter()
                .any(|c| c.expect != avsoak::scenario::Expect::Clean),
            "`{name}` has no positive control"
        );
        for case in cases {
            assert!(ids.insert(case.id()), "duplicate case id {}", case.id());
            assert!(
                readme.contains(&format!("`{}`", case.variant)),
                "README.md does not name variant `{}`",
                case.variant
            );
        }
    }
}

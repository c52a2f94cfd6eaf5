//! Repository checks: every scenario is registered, in the catalogue
//! (`docs/scenarios.md`) with every variant, and its cases are unique.

use std::collections::HashSet;

#[test]
fn every_scenario_is_documented_and_its_cases_are_unique() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let catalogue = std::fs::read_to_string(format!("{root}/docs/scenarios.md")).unwrap();
    let mut ids = HashSet::new();
    for scenario in avsoak_scenarios::all() {
        let name = scenario.name();
        assert!(
            catalogue.contains(&format!("## `{name}`")),
            "docs/scenarios.md has no section for `{name}`"
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
                catalogue.contains(&format!("`{}`", case.variant)),
                "docs/scenarios.md does not name variant `{}`",
                case.variant
            );
        }
    }
}

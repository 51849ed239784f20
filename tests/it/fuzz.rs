//! Bounded fuzzing of the scenario parser: arbitrary text and mutations of the default
//! scenario never panic, and whatever is accepted is valid.

use ampsim_engine::scenario::{Scenario, DEFAULT_SCENARIO_TOML};
use proptest::prelude::*;

fn check(text: &str) {
    match Scenario::from_toml(text) {
        Ok(s) => assert!(s.validate().is_ok()),
        Err(e) => assert!(!e.message.is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check(&text);
    }

    #[test]
    fn tomlish_text_never_panics(text in "(\\[[a-z._]{1,20}\\]\n|[a-z_]{1,12} = (-?[0-9.e]{1,8}|nan|inf|\"[a-z]{0,5}\"|\\[[0-9., ]{0,12}\\]|\\{ ?[a-z]{1,5} = [0-9.]{1,4} ?\\})\n){0,12}") {
        check(&text);
    }

    /// Replace one value line of the default scenario with another value.
    #[test]
    fn mutated_default_never_panics(line in 0usize..700, value in prop_oneof![
        Just("-1".to_string()), Just("nan".to_string()), Just("1e309".to_string()), Just("[]".to_string()),
        Just("\"x\"".to_string()), Just("{}".to_string()), Just("0".to_string()), Just("99999999999".to_string()),
        "-?[0-9]{1,6}\\.?[0-9]{0,3}",
    ]) {
        let lines: Vec<&str> = DEFAULT_SCENARIO_TOML.lines().collect();
        let i = line % lines.len();
        let mut out = String::new();
        for (j, l) in lines.iter().enumerate() {
            if j == i && l.contains(" = ") && !l.trim_start().starts_with('#') {
                let key = l.split(" = ").next().unwrap();
                out.push_str(&format!("{key} = {value}"));
            } else {
                out.push_str(l);
            }
            out.push('\n');
        }
        // The mutated text is a whole scenario; merged onto the default it must parse or fail cleanly.
        check(&out);
    }
}

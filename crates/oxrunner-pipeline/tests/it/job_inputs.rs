//! The job keyword `inputs:`: numeric options compare as numbers, and every refusal says how to fix it.

use crate::support as common;

use common::*;

fn job_with(inputs: &str) -> String {
    format!("j:\n  inputs:\n{inputs}  script:\n    - echo ran\n")
}

#[test]
fn a_numeric_default_matches_an_option_of_equal_value() {
    let p = pipeline(&job_with(
        "    n:\n      type: number\n      default: 3.0\n      options: [1, 3]\n",
    ));
    let inputs = &p.job("j").unwrap().payload.inputs;
    assert_eq!(inputs[0].key, "n");
    assert_eq!(inputs[0].value.content.as_f64(), Some(3.0));
}

#[test]
fn every_refusal_has_a_hint_and_no_json_quotes() {
    for (inputs, what) in [
        ("    n: 3\n", "jobs:j:inputs:n config should be a hash"),
        ("    n:\n      type: number\n", "input must have a default value"),
        (
            "    n:\n      default: a\n      typo: 1\n",
            "config contains unknown keys: typo",
        ),
        (
            "    n:\n      type: [a]\n      default: a\n",
            "jobs:j:inputs:n:type should be a string",
        ),
        (
            "    n:\n      type: struct\n      default: a\n",
            "unknown input type `struct`",
        ),
        (
            "    n:\n      type: number\n      default: three\n",
            "default value is not a number",
        ),
        (
            "    n:\n      default: a\n      options: b\n",
            "jobs:j:inputs:n:options should be an array",
        ),
        (
            "    n:\n      default: c\n      options: [a, b]\n",
            "jobs:j:inputs:n `c` cannot be used because it is not in the list of allowed options",
        ),
        (
            "    n:\n      default: a\n      regex: [x]\n",
            "jobs:j:inputs:n:regex should be a string",
        ),
        (
            "    n:\n      type: number\n      default: 1\n      regex: x\n",
            "regex is only supported for string inputs",
        ),
        (
            "    n:\n      default: a\n      regex: '('\n",
            "is not a valid regular expression",
        ),
        (
            "    n:\n      default: abc\n      regex: ^[0-9]+$\n",
            "jobs:j:inputs:n `abc` does not match required RegEx pattern `^[0-9]+$`",
        ),
    ] {
        let e = pipeline_err(&job_with(inputs)).to_string();
        assert!(e.contains(what), "{what}: {e}");
        assert!(e.contains("\nhint: "), "no hint: {e}");
    }
    let e = pipeline_err("j:\n  inputs: [a]\n  script: x\n").to_string();
    assert!(
        e.contains("jobs:j:inputs config should be a hash") && e.contains("\nhint: "),
        "{e}"
    );
}

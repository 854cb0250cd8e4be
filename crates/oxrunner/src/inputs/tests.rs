//! The language and the field walk, on payloads shaped as GitLab sends them.

use oxrunner_api::JobResponse;
use serde_json::json;

use super::{FailureKind, InputsError, interpolate};

fn inputs() -> serde_json::Value {
    json!([
        {"key": "username", "value": {"type": "string", "content": "fred", "sensitive": false}},
        {"key": "fullname", "value": {"type": "string", "content": "fred tester"}},
        {"key": "password", "value": {"type": "string", "content": "123456", "sensitive": true}},
        {"key": "age", "value": {"type": "number", "content": 1}},
        {"key": "ratio", "value": {"type": "number", "content": 0.25}},
        {"key": "likes_spaghetti", "value": {"type": "boolean", "content": false}},
        {"key": "friends", "value": {"type": "array", "content": ["bob", "sally"]}},
        {"key": "address", "value": {"type": "struct", "content": {"line1": "42 Wallaby Way", "line2": "Sydney"}}},
        {"key": "empty", "value": {"type": "string", "content": ""}},
        {"key": "with-dash", "value": {"type": "string", "content": "dashed"}}
    ])
}

fn job_with(inputs: serde_json::Value, script: &[&str]) -> JobResponse {
    serde_json::from_value(json!({
        "id": 1,
        "inputs": inputs,
        "steps": [{"name": "script", "script": script, "when": "on_success"}],
    }))
    .unwrap()
}

fn expand(text: &str) -> Result<String, InputsError> {
    let mut job = job_with(inputs(), &[text]);
    let report = interpolate(&mut job);
    match report.failure {
        Some(e) => Err(e),
        None => Ok(job.steps[0].script[0].clone()),
    }
}

fn ok(text: &str) -> String {
    expand(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(text: &str) -> InputsError {
    match expand(text) {
        Ok(out) => panic!("{text}: expected an error, got {out:?}"),
        Err(e) => e,
    }
}

#[test]
fn upstream_examples() {
    assert_eq!(
        ok("Hello ${{ job.inputs.username }}, your fullname is ${{ job.inputs.fullname }}"),
        "Hello fred, your fullname is fred tester"
    );
    assert_eq!(ok("your age is ${{ str(job.inputs.age) }}"), "your age is 1");
    assert_eq!(ok("Field is ${{ job.inputs.friends[1] }}"), "Field is sally");
    assert_eq!(
        ok("Field is ${{ job.inputs.address.line1 }}"),
        "Field is 42 Wallaby Way"
    );
}

#[test]
fn values_become_text() {
    assert_eq!(ok("${{ job.inputs.age }}"), "1");
    assert_eq!(ok("${{ job.inputs.ratio }}"), "0.25");
    assert_eq!(ok("${{ job.inputs.likes_spaghetti }}"), "false");
    assert_eq!(ok("${{ job.inputs.friends }}"), r#"["bob","sally"]"#);
    assert_eq!(
        ok("${{ job.inputs.address }}"),
        r#"{"line1":"42 Wallaby Way","line2":"Sydney"}"#
    );
    assert_eq!(ok("${{ null }}"), "<null>");
    assert_eq!(ok("${{ str(null) }}"), "<null>");
    assert_eq!(
        ok("${{ 1.5e3 }} ${{ 2E-4 }} ${{ 1e21 }} ${{ 1e-7 }} ${{ -0.5 }}"),
        "1500 0.0002 1e+21 1e-7 -0.5"
    );
    assert_eq!(
        ok("${{ [1, \"a\", true, null, {k: [2]}] }}"),
        r#"[1,"a",true,null,{"k":[2]}]"#
    );
    assert_eq!(ok("${{ \"quote\\\"d\" }}"), "quote\"d");
    assert_eq!(ok("${{ [\"quote\\\"d\"] }}"), r#"["quote\"d"]"#);
}

#[test]
fn operators_follow_moa() {
    assert_eq!(
        ok("${{ 2 + 3 }} ${{ 10 - 4 }} ${{ 3 * 4 }} ${{ 10 % 3 }} ${{ -7 % 3 }}"),
        "5 6 12 1 -1"
    );
    assert_eq!(ok("${{ 10 / 4 }}"), "2.5");
    assert_eq!(ok("${{ (1 + 2) * 3 }} ${{ 1 + 2 * 3 }}"), "9 7");
    assert_eq!(ok("${{ \"a\" + \"b\" }}"), "ab");
    assert_eq!(
        ok("${{ 1 == 1 }} ${{ 1 != 2 }} ${{ 1 == \"1\" }} ${{ 2 <= 2 }} ${{ 3 > 2 }}"),
        "true true false true true"
    );
    assert_eq!(
        ok("${{ \"a\" < \"b\" }} ${{ false < true }} ${{ [1, 2] < [1, 3] }} ${{ [1] < [1, 0] }}"),
        "true true true true"
    );
    assert_eq!(
        ok("${{ {a: 1, b: 2} == {b: 2, a: 1} }} ${{ null == null }}"),
        "true true"
    );
    assert_eq!(ok("${{ job.inputs.empty || \"default\" }}"), "default");
    assert_eq!(ok("${{ job.inputs.username || \"default\" }}"), "fred");
    assert_eq!(ok("${{ job.inputs.likes_spaghetti && \"-v\" || \"\" }}|"), "|");
    assert_eq!(
        ok("${{ job.inputs.username == \"fred\" && \"stable\" || \"latest\" }}"),
        "stable"
    );
    assert_eq!(
        ok("${{ !true }} ${{ !0 }} ${{ !![] }} ${{ -5 }} ${{ +5 }} ${{ - -5 }}"),
        "false true false -5 5 5"
    );
    assert_eq!(ok("${{ 1 + 2 == 3 && 2 > 1 }}"), "true");
}

#[test]
fn functions_and_access() {
    assert_eq!(
        ok("${{ num(\"3.14\") + 1 }} ${{ num(\"42\") }}"),
        "4.140000000000001 42"
    );
    assert_eq!(
        ok("${{ bool(\"hello\") }} ${{ bool(\"\") }} ${{ bool(0) }} ${{ bool(1) }}"),
        "true false false true"
    );
    assert_eq!(ok("${{ str(job.inputs.age + 1) + \".0.0\" }}"), "2.0.0");
    assert_eq!(ok("${{ job.inputs[\"with-dash\"] }}"), "dashed");
    assert_eq!(ok("${{ job.inputs.address[\"line2\"] }}"), "Sydney");
    assert_eq!(ok("${{ {(job.inputs.username): 1} }}"), r#"{"fred":1}"#);
    assert_eq!(
        ok("${{ [1, 2,] }} ${{ {a: 1,} }} ${{ [] }} ${{ {} }}"),
        "[1,2] {\"a\":1} [] {}"
    );
}

#[test]
fn strings_and_escapes() {
    assert_eq!(ok("${{ 'It\\'s' }}"), "It's");
    assert_eq!(
        ok("${{ 'Literal ${{ not evaluated }}' }}"),
        "Literal ${{ not evaluated }}"
    );
    assert_eq!(ok("${{ \"hi ${{ job.inputs.username }}!\" }}"), "hi fred!");
    assert_eq!(ok("${{ \"a\\tb\\u00e9\\ud83d\\ude00\" }}"), "a\tbé😀");
    assert_eq!(
        ok("Use \\${{ to start an expression"),
        "Use ${{ to start an expression"
    );
    assert_eq!(
        ok("echo $HOME ${VAR} $ {{x}} \\$x ${{ 1 }}"),
        "echo $HOME ${VAR} $ {{x}} \\$x 1"
    );
    assert_eq!(ok("${{ {a: {b: 1}}}}"), r#"{"a":{"b":1}}"#);
    assert_eq!(ok("${{ \"}}\" }}"), "}}");
}

#[test]
fn errors_name_the_expression_and_never_a_value() {
    let e = err("echo ${{ job.inputs.nope }}");
    assert_eq!(e.kind, FailureKind::Evaluation);
    assert!(
        e.to_string()
            .starts_with("failed to interpolate job inputs: steps[0] (script).script[0]: "),
        "{e}"
    );
    assert!(e.to_string().contains("`${{ job.inputs.nope }}`"), "{e}");
    assert!(e.to_string().contains("attribute `nope` not found"), "{e}");

    for (text, kind, what) in [
        ("${{ job.inputs.username", FailureKind::Parse, "expected `}}`"),
        ("${{ }}", FailureKind::Parse, "unexpected `}`"),
        ("${{ 1 + }}", FailureKind::Parse, "unexpected `}`"),
        ("${{", FailureKind::Parse, "expected an expression"),
        ("${{ if }}", FailureKind::Parse, "reserved word"),
        ("${{ \"abc }}", FailureKind::Parse, "unterminated string"),
        ("${{ \"\\q\" }}", FailureKind::Parse, "invalid escape"),
        ("${{ 1 = 1 }}", FailureKind::Parse, "expected `}}`"),
        (
            "${{ job.inputs.age() }}",
            FailureKind::Parse,
            "only a function name can be called",
        ),
        (
            "${{ env.HOME }}",
            FailureKind::Evaluation,
            "unknown identifier `env`",
        ),
        (
            "${{ \"hello\" + 42 }}",
            FailureKind::Evaluation,
            "invalid operation: string + number",
        ),
        ("${{ 1 / 0 }}", FailureKind::Evaluation, "division by zero"),
        ("${{ 1 % 0 }}", FailureKind::Evaluation, "division by zero"),
        (
            "${{ 1 < \"a\" }}",
            FailureKind::Evaluation,
            "invalid operation: number < string",
        ),
        (
            "${{ job.inputs.friends[2] }}",
            FailureKind::Evaluation,
            "out of range",
        ),
        (
            "${{ job.inputs.friends[0.5] }}",
            FailureKind::Evaluation,
            "out of range",
        ),
        (
            "${{ job.inputs.age.x }}",
            FailureKind::Evaluation,
            "cannot read attribute `x` of a number",
        ),
        (
            "${{ nope(1) }}",
            FailureKind::Evaluation,
            "unknown function `nope`",
        ),
        (
            "${{ str(1, 2) }}",
            FailureKind::Evaluation,
            "str() takes 1 argument, got 2",
        ),
        ("${{ num(\"x\") }}", FailureKind::Evaluation, "not a number"),
        (
            "${{ 1e308 * 10 }}",
            FailureKind::Evaluation,
            "number out of range",
        ),
        ("${{ -\"a\" }}", FailureKind::Evaluation, "needs a number"),
    ] {
        let e = err(text);
        assert_eq!(e.kind, kind, "{text}: {e}");
        assert!(e.to_string().contains(what), "{text}: {e}");
    }
}

#[test]
fn sensitive_inputs_are_refused_wherever_they_flow() {
    for text in [
        "${{ job.inputs.password }}",
        "x ${{ job.inputs.password + \"x\" }}",
        "${{ str(job.inputs.password) }}",
        "${{ job.inputs.password == \"123456\" }}",
        "${{ [job.inputs.password] }}",
        "${{ job.inputs }}",
        "${{ job.inputs.empty || job.inputs.password }}",
    ] {
        let e = err(text);
        assert_eq!(e.kind, FailureKind::SensitiveUnsupported, "{text}: {e}");
        assert!(
            e.to_string()
                .ends_with("sensitive inputs are unsupported in interpolations yet"),
            "{e}"
        );
        assert!(!e.to_string().contains("123456"), "{e}");
    }
    // An error after a sensitive value was looked at is the generic one: its text could tell the value.
    for text in [
        "${{ job.inputs.address[job.inputs.password] }}",
        "${{ job.inputs.friends[num(job.inputs.password)] }}",
    ] {
        let e = err(text);
        assert_eq!(e.kind, FailureKind::SensitiveUnsupported, "{text}: {e}");
        assert!(
            e.to_string()
                .ends_with("sensitive inputs are unsupported in interpolations yet"),
            "{e}"
        );
        assert!(!e.to_string().contains("123456"), "{e}");
    }
    // Not reading it is fine.
    assert_eq!(ok("${{ job.inputs.username || job.inputs.password }}"), "fred");
}

#[test]
fn malformed_inputs_fail_with_upstreams_words() {
    for (input, what) in [
        (json!({}), "input without key"),
        (json!({"key": "k"}), "input \"k\" is null, must have valid value"),
        (
            json!({"key": "k", "value": {"type": "string"}}),
            "input \"k\" is null, must have valid value",
        ),
        (
            json!({"key": "k", "value": {"content": "any"}}),
            "invalid type \"\" for input \"k\": type is unknown",
        ),
        (
            json!({"key": "k", "value": {"type": "nope", "content": "any"}}),
            "invalid type \"nope\" for input \"k\": type is unknown",
        ),
        (
            json!({"key": "k", "value": {"type": "number", "content": "any"}}),
            "mismatching type of input \"k\". Announced \"number\", but got \"string\"",
        ),
        (
            json!({"key": "k", "value": {"type": "struct", "content": [1]}}),
            "mismatching type of input \"k\". Announced \"object\", but got \"array\"",
        ),
    ] {
        let mut job = job_with(json!([input]), &["echo plain"]);
        let report = interpolate(&mut job);
        let e = report.failure.expect("malformed input accepted");
        assert_eq!(e.kind, FailureKind::InvalidInput);
        assert_eq!(e.to_string(), format!("failed to interpolate job inputs: {what}"));
    }
}

#[test]
fn without_inputs_nothing_is_touched() {
    let texts = [
        "Hello ${{ 1 + 2 }}",
        "${{ job.inputs.username }}",
        "${{ broken",
        "\\${{ x }}",
    ];
    let mut job = job_with(json!([]), &texts);
    let report = interpolate(&mut job);
    assert!(report.failure.is_none());
    assert_eq!(report.interpolated, 0);
    assert_eq!(job.steps[0].script, texts);
    let mut job = job_with(serde_json::Value::Null, &texts);
    assert!(interpolate(&mut job).failure.is_none());
    assert_eq!(job.steps[0].script, texts);
}

#[test]
fn the_fields_upstream_interpolates_and_only_those() {
    let mut job: JobResponse = serde_json::from_value(json!({
        "id": 1,
        "inputs": [{"key": "v", "value": {"type": "string", "content": "X"}}],
        "steps": [
            {"name": "script", "script": ["s ${{ job.inputs.v }}"]},
            {"name": "after_script", "script": ["a ${{ job.inputs.v }}"]},
            {"name": "release", "script": ["r ${{ job.inputs.v }}"]}
        ],
        "image": {"name": "img:${{ job.inputs.v }}", "alias": "al${{ job.inputs.v }}",
                  "command": ["c${{ job.inputs.v }}"], "entrypoint": ["e${{ job.inputs.v }}"],
                  "pull_policy": ["p${{ job.inputs.v }}"],
                  "executor_opts": {"docker": {"platform": "pl${{ job.inputs.v }}", "user": "u${{ job.inputs.v }}"},
                                    "kubernetes": {"user": "k${{ job.inputs.v }}"}}},
        "services": [{"name": "svc${{ job.inputs.v }}", "alias": "sa${{ job.inputs.v }}"}],
        "artifacts": [{"name": "n${{ job.inputs.v }}", "paths": ["p${{ job.inputs.v }}"],
                       "exclude": ["x${{ job.inputs.v }}"], "when": "w${{ job.inputs.v }}",
                       "expire_in": "e${{ job.inputs.v }}", "artifact_type": "t${{ job.inputs.v }}"}],
        "cache": [{"key": "k${{ job.inputs.v }}", "policy": "p${{ job.inputs.v }}", "paths": ["c${{ job.inputs.v }}"],
                   "when": "w${{ job.inputs.v }}", "fallback_keys": ["f${{ job.inputs.v }}"]}],
        "variables": [{"key": "V", "value": "${{ job.inputs.v }}"}],
        "hooks": [{"name": "pre_get_sources_script", "script": ["h${{ job.inputs.v }}"]}]
    }))
    .unwrap();
    let report = interpolate(&mut job);
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.interpolated, 20);
    assert_eq!(job.steps[0].script, ["s X"]);
    assert_eq!(job.steps[1].script, ["a X"]);
    assert_eq!(job.steps[2].script, ["r ${{ job.inputs.v }}"]);
    let img = &job.image;
    assert_eq!(
        (
            img.name.as_str(),
            img.alias.as_str(),
            img.command[0].as_str(),
            img.entrypoint[0].as_str()
        ),
        ("img:X", "al${{ job.inputs.v }}", "cX", "eX")
    );
    assert_eq!(img.pull_policy, ["pX"]);
    assert_eq!(img.executor_opts.docker.platform, "plX");
    assert_eq!(img.executor_opts.docker.user, "uX");
    assert_eq!(img.executor_opts.kubernetes.user, "kX");
    assert_eq!(job.services[0].name, "svcX");
    assert_eq!(job.services[0].alias, "sa${{ job.inputs.v }}");
    let a = &job.artifacts[0];
    assert_eq!(
        (a.name.as_str(), a.when.as_str(), a.expire_in.as_str()),
        ("nX", "wX", "eX")
    );
    assert_eq!((a.paths[0].as_str(), a.exclude[0].as_str()), ("pX", "xX"));
    assert_eq!(a.artifact_type, "t${{ job.inputs.v }}");
    let c = &job.cache[0];
    assert_eq!(
        (c.key.as_str(), c.policy.as_str(), c.when.as_str()),
        ("kX", "pX", "wX")
    );
    assert_eq!((c.paths[0].as_str(), c.fallback_keys[0].as_str()), ("cX", "fX"));
    assert_eq!(job.variables[0].value, "${{ job.inputs.v }}");
    assert_eq!(job.hooks[0].script, ["h${{ job.inputs.v }}"]);
}

#[test]
fn job_authors_cannot_make_it_unbounded() {
    let deep = format!("${{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(err(&deep).to_string().contains("nested deeper than"));
    let deep = format!("${{{{ {}1 }}}}", "-".repeat(10_000));
    assert!(err(&deep).to_string().contains("nested deeper than"));
    let deep = format!("${{{{ {}1{} }}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(err(&deep).to_string().contains("nested deeper than"));
    let chain = format!("${{{{ 1{} }}}}", " + 1".repeat(10_000));
    assert!(err(&chain).to_string().contains("operators in a row"));
}

#[test]
fn output_size_is_bounded() {
    let big = "y".repeat(1 << 20);
    let mut job = job_with(
        json!([{"key": "big", "value": {"type": "string", "content": big}}]),
        &[&"${{ job.inputs.big }}".repeat(8)],
    );
    let e = interpolate(&mut job).failure.expect("8 MiB accepted");
    assert!(e.to_string().contains("longer than 4 MiB"), "{e}");
}

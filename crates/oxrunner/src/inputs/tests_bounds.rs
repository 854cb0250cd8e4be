//! Regression tests of the review findings: a job author cannot make the interpolation take unbounded memory or
//! time, the plan follows every rewritten field, malformed inputs fail the job whatever the flag, and secrets do
//! not leak through error texts.

use oxrunner_api::JobResponse;
use serde_json::json;

use super::{FailureKind, InputsError, Report, apply, failed_outcome, interpolate};

fn job(inputs: serde_json::Value, script: &[&str]) -> JobResponse {
    serde_json::from_value(json!({
        "id": 1,
        "inputs": inputs,
        "steps": [{"name": "script", "script": script, "when": "on_success"}],
    }))
    .unwrap()
}

fn big_input(bytes: usize) -> serde_json::Value {
    json!([
        {"key": "big", "value": {"type": "string", "content": "y".repeat(bytes)}},
        {"key": "n", "value": {"type": "number", "content": 1}},
        {"key": "secret", "value": {"type": "string", "content": "hunter2", "sensitive": true}},
        {"key": "secrets", "value": {"type": "array", "content": ["a", "b", "c"], "sensitive": true}},
    ])
}

fn failure(inputs: serde_json::Value, script: &[&str]) -> InputsError {
    let mut j = job(inputs, script);
    interpolate(&mut j).failure.expect("the interpolation must fail")
}

/// Counts the bytes each thread holds, so a test can see what an interpolation allocated at its peak rather than
/// only its outcome (which is the same error with or without a bound enforced while text is written).
#[allow(unsafe_code)]
mod peak {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn add(n: isize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get() + n;
            live.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
    }

    // SAFETY: every call is forwarded unchanged to the system allocator; only counters are updated around it.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as isize - layout.size() as isize);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// What `f` returns and the most bytes this thread held during it beyond what it held before.
    pub fn of<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let start = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(start));
        let out = f();
        let peak = PEAK.with(Cell::get) - start;
        (out, usize::try_from(peak).unwrap_or(0))
    }
}

#[global_allocator]
static COUNTING: peak::Counting = peak::Counting;

fn refs(expr: &str, n: usize) -> String {
    vec![expr; n].join(",")
}

#[test]
fn json_rendering_of_a_large_array_stops_at_the_text_bound() {
    // Each reference costs a few bytes of source but 64 KiB of JSON: without a bound inside the rendering, this
    // builds 64 MiB (and a longer list, any amount) before the length is checked.
    let arr = format!("${{{{ [{}] }}}}", refs("job.inputs.big", 1024));
    let (e, peak) = peak::of(|| failure(big_input(64 << 10), &[&arr]));
    assert_eq!(e.kind, FailureKind::Evaluation, "{e}");
    assert!(e.to_string().contains("longer than 4 MiB"), "{e}");
    assert!(peak < 24 << 20, "{} MiB allocated", peak >> 20);
    let s = format!("${{{{ str([{}]) == \"\" }}}}", refs("job.inputs.big", 1024));
    let (e, peak) = peak::of(|| failure(big_input(64 << 10), &[&s]));
    assert!(e.to_string().contains("longer than 4 MiB"), "{e}");
    assert!(peak < 24 << 20, "{} MiB allocated", peak >> 20);
}

#[test]
fn all_fields_together_are_bounded() {
    // 3 MiB per line passes the per-field bound; 48 lines of it (144 MiB) exceed the job's total.
    let line = "${{ job.inputs.big }}${{ job.inputs.big }}${{ job.inputs.big }}";
    let (e, peak) = peak::of(|| failure(big_input(1 << 20), &[line; 48]));
    assert_eq!(e.kind, FailureKind::Evaluation, "{e}");
    assert!(e.to_string().contains("all interpolated fields"), "{e}");
    assert!(peak < 40 << 20, "{} MiB allocated", peak >> 20);
    let mut fine = job(big_input(1 << 20), &[line; 4]);
    assert!(interpolate(&mut fine).failure.is_none());
}

#[test]
fn array_and_object_literals_have_an_element_cap() {
    let arr = format!("${{{{ [{}] }}}}", refs("1", 20_000));
    let e = failure(big_input(1), &[&arr]);
    assert_eq!(e.kind, FailureKind::Parse, "{e}");
    assert!(e.to_string().contains("more than 10000 elements"), "{e}");
    let keys: Vec<String> = (0..20_000).map(|i| format!("a{i}: 0")).collect();
    let obj = format!("${{{{ {{{}}} }}}}", keys.join(","));
    let e = failure(big_input(1), &[&obj]);
    assert!(e.to_string().contains("more than 10000 elements"), "{e}");
}

#[test]
fn object_literal_keys_are_deduplicated_in_linear_time() {
    // 9,999 distinct keys: quadratic deduplication would take 5e7 string comparisons per line.
    let keys: Vec<String> = (0..9_999).map(|i| format!("a{i}: 0")).collect();
    let obj = format!("${{{{ {{{}, a0: 1}}.a0 }}}}", keys.join(","));
    let lines = vec![obj.as_str(); 3];
    let mut j = job(big_input(1), &lines);
    let report = interpolate(&mut j);
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(j.steps[0].script[0], "1");
    // A repeated key keeps its first place and takes its last value, as a JavaScript object literal does.
    let mut j = job(big_input(1), &["${{ {a: 1, b: 2, a: 3} }}"]);
    assert!(interpolate(&mut j).failure.is_none());
    assert_eq!(j.steps[0].script[0], r#"{"a":3,"b":2}"#);
}

#[test]
fn repeated_copies_and_comparisons_exhaust_the_evaluation_budget() {
    // Nothing is produced, but each operand copies or compares 1 MiB: 8 lines of 50 are 400 MiB of work.
    let copies = format!(
        "${{{{ {} }}}}",
        vec!["((job.inputs.big + \"\") && \"\")"; 50].join(" || ")
    );
    let e = failure(big_input(1 << 20), &[copies.as_str(); 8]);
    assert_eq!(e.kind, FailureKind::Evaluation, "{e}");
    assert!(e.to_string().contains("too expensive"), "{e}");
    let compares = format!(
        "${{{{ {} }}}}",
        vec!["(job.inputs.big != job.inputs.big)"; 50].join(" || ")
    );
    let e = failure(big_input(1 << 20), &[compares.as_str(); 8]);
    assert!(e.to_string().contains("too expensive"), "{e}");
}

#[test]
fn long_operator_chains_parse() {
    let sum = format!("${{{{ 1{} }}}}", " + 1".repeat(200));
    let mut j = job(big_input(1), &[&sum]);
    let report = interpolate(&mut j);
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(j.steps[0].script[0], "201");
    let chain = format!("${{{{ 1{} }}}}", " || 1".repeat(10_000));
    let e = failure(big_input(1), &[&chain]);
    assert!(e.to_string().contains("operators in a row"), "{e}");
}

#[test]
fn evaluation_errors_show_a_truncated_expression() {
    let long = format!("${{{{ 1 / 0 + \"{}\" }}}}", "z".repeat(500));
    let e = failure(big_input(1), &[&long]);
    assert!(e.to_string().contains("division by zero"), "{e}");
    assert!(!e.to_string().contains(&"z".repeat(100)), "{e}");
}

#[test]
fn duplicate_input_keys_keep_the_first_as_upstream() {
    let inputs = json!([
        {"key": "v", "value": {"type": "string", "content": "first"}},
        {"key": "v", "value": {"type": "string", "content": "second"}},
    ]);
    let mut j = job(inputs, &["${{ job.inputs.v }}"]);
    assert!(interpolate(&mut j).failure.is_none());
    assert_eq!(j.steps[0].script[0], "first");
}

#[test]
fn errors_after_a_sensitive_read_reveal_nothing() {
    for expr in [
        "${{ job.inputs.secret == \"hunter2\" && 1/0 }}",
        "${{ job.inputs.secret == \"guess\" || 1/0 }}",
        "${{ num(job.inputs.secret) }}",
        "${{ job.inputs.secrets[7] }}",
    ] {
        let e = failure(big_input(1), &[expr]);
        assert_eq!(e.kind, FailureKind::SensitiveUnsupported, "{expr}: {e}");
        assert!(!e.to_string().contains("3 elements"), "{e}");
    }
}

fn applied(j: JobResponse) -> (JobResponse, oxrunner_core::JobPlan, Report) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut plan = crate::plan::job_plan(&j, None);
    let (out, report) = rt.block_on(apply(Box::new(j), &mut plan, None));
    (*out, plan, report)
}

#[test]
fn an_escape_only_job_runs_the_unescaped_text() {
    let (out, plan, report) = applied(job(big_input(1), &["echo '\\${{ kept }}'"]));
    assert!(report.failure.is_none());
    assert_eq!(report.interpolated, 0, "no expression was interpolated");
    assert_eq!(out.steps[0].script[0], "echo '${{ kept }}'");
    assert_eq!(plan.steps[0].script[0], "echo '${{ kept }}'");
}

#[test]
fn malformed_inputs_fail_the_job_with_the_flag_off() {
    let mut j = job(
        json!([{"key": "n", "value": {"type": "number", "content": "not a number"}}]),
        &["echo ${{ job.inputs.n }}"],
    );
    j.variables = serde_json::from_value(json!([
        {"key": "FF_ENABLE_JOB_INPUTS_INTERPOLATION", "value": "false"}
    ]))
    .unwrap();
    let (out, plan, report) = applied(j);
    let e = report.failure.expect("a malformed input fails the job");
    assert_eq!(e.kind, FailureKind::InvalidInput);
    assert!(e.to_string().contains("mismatching type"), "{e}");
    // With the flag off nothing is interpolated.
    assert_eq!(out.steps[0].script[0], "echo ${{ job.inputs.n }}");
    assert_eq!(plan.steps[0].script[0], "echo ${{ job.inputs.n }}");
}

#[test]
fn a_panic_is_a_system_failure_and_not_counted() {
    let report = Report {
        failure: Some(InputsError {
            kind: FailureKind::Internal,
            message: "the interpolation stopped".into(),
        }),
        ..Report::default()
    };
    assert_eq!(FailureKind::Internal.metric_label(), None);
    let dir = tempfile::tempdir().unwrap();
    let (trace, _handle) =
        oxrunner_core::TraceWriter::new(dir.path(), oxrunner_core::MaskSet::empty(), 0).unwrap();
    match failed_outcome(&report, &trace) {
        Some(oxrunner_core::JobOutcome::Failed { reason, .. }) => {
            assert_eq!(reason, oxrunner_core::FailureReason::RunnerSystemFailure)
        }
        other => panic!("unexpected outcome {other:?}"),
    }
}

//! Masker benchmark (issue #11 item 2): build time, scan throughput and memory growth of the trace masker for
//! one 1 MiB masked value (distinct bytes, and one repeated character), for 10,000 masked 64-byte values, and
//! for a log built to cause as much compare work as it can (`worst`: no goal of its own, it shows the bound), and
//! for the usual job's set, the job token alone (`token`).
//!
//! `cargo bench -p oxrunner-core --bench mask [-- CASE...]`, CASE = `one-mib`, `one-mib-repeated`, `many`,
//! `worst`, `token` (default: all). Each case runs in a child process of its own so that its memory figures start clean.
//! Prints `name value unit goal` lines; `_wall` figures are elapsed time, `_cpu` figures the benchmark thread's
//! CPU time (on a shared machine the closer one to what an idle core would do).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Instant;

use oxrunner_core::trace::{CHUNK, MASKED, MaskSet, Masker};

const CASES: &[&str] = &["one-mib", "one-mib-repeated", "many", "worst", "token"];
/// Bytes of log scanned per repetition.
const SCAN_BYTES: usize = 64 << 20;
/// Size of each write into the masker (the executors read output in chunks of this order).
const WRITE: usize = 64 * 1024;
const SCAN_RUNS: usize = 3;

/// `len` bytes of hex that repeat nowhere (xorshift from `seed`).
fn distinct_hex(seed: u64, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(len);
    out
}

/// Log-like text of `len` bytes with `secrets` printed now and then (one every 256 lines).
fn log_text(len: usize, secrets: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4096);
    let mut i = 0usize;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "2026-12-06T21:{:02}:{:02}Z   Compiling crate-{} v1.{}.{} (/builds/group/project/crates/c{}) ok=true\n",
                (i / 60) % 60,
                i % 60,
                i % 97,
                i % 13,
                i % 7,
                i % 31
            )
            .as_bytes(),
        );
        if i.is_multiple_of(256) && !secrets.is_empty() {
            let s = &secrets[(i / 256) % secrets.len()];
            out.extend_from_slice(format!("token: {s}\n").as_bytes());
        }
        i += 1;
    }
    out.truncate(len);
    out
}

/// CPU time of this thread so far (`/proc/thread-self/schedstat`, first field, ns): on a shared machine it
/// leaves out the time other processes had the core.
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn run_case(case: &str) {
    let values: Vec<String> = match case {
        "one-mib" => vec![distinct_hex(7, 1 << 20)],
        "one-mib-repeated" => vec!["a".repeat(1 << 20)],
        "many" => (0..10_000u64).map(|i| distinct_hex(i + 1, 64)).collect(),
        // A log built for compare work: values sharing all but their last byte, as many as share one
        // hash key before the matcher hands them to its automaton, printed as their common part repeated.
        "worst" => b"bcde"
            .iter()
            .map(|&last| "a".repeat(2 * CHUNK - 2) + &char::from(last).to_string())
            .collect(),
        // The usual job: no masked variable of its own, only the job token (and the default token prefixes and
        // URL parameters every set has), so the scan is over text that holds almost no candidate.
        "token" => vec![format!("glcbt-64_{}", distinct_hex(11, 20))],
        other => panic!("unknown case {other}; cases: {CASES:?}"),
    };
    // The first 600 bytes of (up to 100 of) the values go into the text (a whole 1 MiB value every 256 lines
    // would make the log mostly secret): at least two masked pieces of a long value.
    let printed: Vec<String> = values
        .iter()
        .take(100)
        .map(|v| v[..v.len().min(600)].to_owned())
        .collect();
    let text = if case == "worst" {
        let mut text = vec![b'a'; SCAN_BYTES];
        text.extend_from_slice(&printed[0].as_bytes()[2 * CHUNK - 3..]);
        text
    } else {
        log_text(SCAN_BYTES, &printed)
    };
    // Peak RSS from here on (Linux: writing 5 to clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let rss_before = status_kib("VmRSS:");
    let (wall, cpu) = (Instant::now(), cpu_ns());
    let set = MaskSet::new(values, &[]);
    let mut masker = Masker::new(&set).unwrap();
    let (build_wall, build_cpu) = (wall.elapsed().as_secs_f64(), (cpu_ns() - cpu) as f64 / 1e9);
    let rss_built = status_kib("VmRSS:");
    let mut wall_speeds = Vec::new();
    let mut cpu_speeds = Vec::new();
    let mut out = Vec::with_capacity(2 * WRITE);
    for _ in 0..SCAN_RUNS {
        let (wall, cpu) = (Instant::now(), cpu_ns());
        for chunk in text.chunks(WRITE) {
            out.clear();
            masker.write(chunk, &mut out);
        }
        masker.flush(&mut out);
        let mib = SCAN_BYTES as f64 / (1024.0 * 1024.0);
        wall_speeds.push(mib / wall.elapsed().as_secs_f64());
        cpu_speeds.push(mib / ((cpu_ns() - cpu) as f64 / 1e9));
    }
    let peak = status_kib("VmHWM:");
    // Outside the timed runs: the text's samples of the values come out masked.
    let mut masked = 0;
    for chunk in text.chunks(WRITE) {
        out.clear();
        masker.write(chunk, &mut out);
        masked += out.windows(MASKED.len()).filter(|w| *w == MASKED).count();
    }
    assert!(masked > 0, "nothing was masked: the benchmark text is wrong");
    println!("{case}.build_wall {:.1} ms <=100", build_wall * 1000.0);
    println!("{case}.build_cpu {:.1} ms <=100", build_cpu * 1000.0);
    // `worst` shows the bound on adversarial text; the goal is for log text.
    let goal = if case == "worst" { "none" } else { ">=500" };
    println!("{case}.scan_wall {:.0} MiB/s {goal}", median(wall_speeds));
    println!("{case}.scan_cpu {:.0} MiB/s {goal}", median(cpu_speeds));
    println!(
        "{case}.rss_after_build {:.1} MiB <=32",
        rss_built.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!(
        "{case}.rss_peak {:.1} MiB <=32",
        peak.saturating_sub(rss_before) as f64 / 1024.0
    );
    drop(masker);
    drop(set);
}

fn main() {
    // `cargo bench` passes `--bench`; everything else is a case name.
    let cases: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let [case] = cases.as_slice()
        && std::env::var_os("OXRUNNER_MASK_BENCH_CHILD").is_some()
    {
        run_case(case);
        return;
    }
    let cases: Vec<String> = if cases.is_empty() {
        CASES.iter().map(|c| (*c).to_owned()).collect()
    } else {
        cases
    };
    let exe = std::env::current_exe().unwrap();
    for case in cases {
        let status = Command::new(&exe)
            .arg(&case)
            .env("OXRUNNER_MASK_BENCH_CHILD", "1")
            .status()
            .unwrap();
        assert!(status.success(), "case {case} failed: {status:?}");
    }
}

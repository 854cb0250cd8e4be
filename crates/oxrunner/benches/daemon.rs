//! Daemon benchmark (issue #3): `oxrunner run` as a child process against an in-process fake GitLab on
//! 127.0.0.1. Measures pickup latency under long polling, trivial-job throughput at `concurrent = 8`, idle RSS,
//! and RSS and wall time of a job that prints a lot of log compared with bash alone.
//!
//!   cargo bench -p oxrunner --bench daemon [-- pickup|throughput|rss|log|scrape]...
//!
//! `scrape` (issue #13) times `/metrics` scrapes while BENCH_SCRAPE_JOBS [64] jobs run (BENCH_SCRAPES [500] per
//! run). BENCH_METRICS=1 starts every other runner with `--listen-address 127.0.0.1:0` too (idle RSS with metrics).
//!
//! Sizes come from the environment (defaults in brackets): BENCH_RUNS [3], BENCH_PICKUP_JOBS [15],
//! BENCH_THROUGHPUT_JOBS [200], BENCH_CONCURRENT [8,64], BENCH_LOG_BYTES [1073741824], BENCH_OXRUNNER_BIN [the
//! binary built with the benchmark]. Every wait is bounded, so a broken runner makes the
//! benchmark fail instead of hanging. Output is one `name value unit` line per figure, and a summary at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec};

// In a folder of its own: a file directly under benches/ would become a benchmark target of its own.
#[path = "daemon/scrape.rs"]
mod scrape;

/// The whole benchmark must end by itself; no single wait may exceed this.
const WAIT: Duration = Duration::from_secs(300);
const CHECK_INTERVAL_S: u64 = 1;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The runner binary built with this benchmark, or `BENCH_OXRUNNER_BIN` (to compare another build).
fn runner_bin() -> PathBuf {
    std::env::var_os("BENCH_OXRUNNER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_oxrunner")))
}

/// A private HOME, config dir and builds dir; removed on drop.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("oxrunner-bench-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        Sandbox { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// The runner child process; killed on drop if still alive.
struct Runner {
    child: std::process::Child,
    log: PathBuf,
}

impl Runner {
    fn start(fake: &FakeGitlab, sb: &Sandbox, concurrent: u32, runner_extra: &str) -> Runner {
        let metrics = std::env::var("BENCH_METRICS").is_ok_and(|v| v == "1");
        let args: &[&str] = if metrics {
            &["--listen-address", "127.0.0.1:0"]
        } else {
            &[]
        };
        Runner::start_with(fake, sb, concurrent, runner_extra, args)
    }

    fn start_with(
        fake: &FakeGitlab,
        sb: &Sandbox,
        concurrent: u32,
        runner_extra: &str,
        args: &[&str],
    ) -> Runner {
        let token = fake.create_runner_token("bench");
        let config = format!(
            "concurrent = {concurrent}\ncheck_interval = {CHECK_INTERVAL_S}\nshutdown_timeout = 10\n\n\
             [[runners]]\n  name = \"bench\"\n  url = \"{url}\"\n  token = \"{token}\"\n  executor = \"shell\"\n  \
             builds_dir = \"{b}\"\n  cache_dir = \"{c}\"\n{runner_extra}\n",
            url = fake.url(),
            b = sb.path("builds").display(),
            c = sb.path("cache").display(),
        );
        let config_path = sb.path("etc/config.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = sb.path("oxrunner.log");
        let file = std::fs::File::create(&log).unwrap();
        // Same isolation as the e2e tests: a cleared environment with a private HOME, so the measured shells
        // do not depend on the developer's ~/.profile.
        let child = std::process::Command::new(runner_bin())
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", sb.path("home"))
            .env("LANG", "C.UTF-8")
            .current_dir(sb.dir.path())
            .args(["run", "-c"])
            .arg(&config_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Runner { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGQUIT (finish running jobs, then exit) and wait, bounded.
    fn quit(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-QUIT", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("oxrunner did not exit after SIGQUIT; log:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of the process and its reaped children (the job shells), in seconds.
fn proc_cpu_s(pid: u32) -> f64 {
    proc_ticks(pid, 11..=14)
}

/// User + system CPU time of the process alone, in seconds.
fn proc_self_cpu_s(pid: u32) -> f64 {
    proc_ticks(pid, 11..=12)
}

fn proc_ticks(pid: u32, fields: std::ops::RangeInclusive<usize>) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // stat fields 14-17 (utime, stime, cutime, cstime) sit at 11-14 counting from the state field.
    let ticks: u64 = fields
        .map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum();
    ticks as f64 / 100.0
}

/// Job requests the fake has answered so far (a request held by long polling is not counted until answered).
fn job_requests(fake: &FakeGitlab) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/v4/jobs/request"))
        .count()
}

fn trivial(name: &str) -> JobSpec {
    JobSpec::new(name, &["true"]).variable("GIT_STRATEGY", "none")
}

/// Busy-polls (every 200 µs) until the job left `pending`; returns when that was seen.
fn wait_picked(fake: &FakeGitlab, id: i64) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        let job = fake.job(id).expect("unknown job");
        if job.status != "pending" {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "job {id} was never picked up");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn wait_finished(
    rt: &tokio::runtime::Runtime,
    fake: &FakeGitlab,
    id: i64,
    runner: &Runner,
) -> fake_gitlab::JobRecord {
    match rt.block_on(fake.wait_job_finished(id, WAIT)) {
        Some(job) => job,
        None => panic!("job {id} did not finish; runner log:\n{}", runner.log_text()),
    }
}

fn assert_success(job: &fake_gitlab::JobRecord, runner: &Runner) {
    assert_eq!(
        job.status,
        "success",
        "{job:?}\ntrace:\n{}\nrunner log:\n{}",
        job.trace_text(),
        runner.log_text()
    );
}

/// Polls (every 2 ms) the fake's request log for the job's first final update, which GitLab answers 202 while it
/// persists the trace: from then on the job's time is GitLab's back-off, not the runner's work.
fn wait_first_final_update(fake: &FakeGitlab, id: i64) -> Instant {
    let path = format!("/api/v4/jobs/{id}");
    let deadline = Instant::now() + WAIT;
    for i in 0u64.. {
        if fake
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path == path && r.status != 200)
        {
            return Instant::now();
        }
        // Accepted at once (no 202): the job record is the only signal; cloning it is costly, so rarely.
        if i % 50 == 49 && fake.job(id).is_some_and(|j| j.is_finished()) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "job {id} never sent its final update");
        std::thread::sleep(Duration::from_millis(2));
    }
    unreachable!()
}

/// Gives the runner time to send its first (non-held) request and park in a long poll.
fn settle() {
    std::thread::sleep(Duration::from_millis(CHECK_INTERVAL_S * 1000 + 500));
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 0.5)
}

fn unix_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

struct Results {
    lines: Vec<String>,
}

impl Results {
    fn record(&mut self, name: &str, value: f64, unit: &str, goal: &str) {
        let line = format!("{name:<40} {value:>10.2} {unit:<6} {goal}");
        println!("{line}");
        self.lines.push(line);
    }
}

async fn fake(long_poll: Duration) -> FakeGitlab {
    FakeGitlab::start(FakeOptions {
        long_poll,
        ..FakeOptions::default()
    })
    .await
    .unwrap()
}

/// Enqueue → the fake hands the job out (`running`), and enqueue → the first user command runs, with the
/// runner parked in a long poll each time.
fn bench_pickup(rt: &tokio::runtime::Runtime, res: &mut Results, runs: u64, jobs: u64) {
    let mut picked_all = Vec::new();
    let mut started_all = Vec::new();
    let mut idle_rss = Vec::new();
    for run in 0..runs {
        let fake = rt.block_on(fake(Duration::from_secs(50)));
        let sb = Sandbox::new();
        let runner = Runner::start(&fake, &sb, 1, "");
        settle();
        idle_rss.push(proc_status_kib(runner.pid(), "VmRSS:") as f64 / 1024.0);
        let before = job_requests(&fake);
        std::thread::sleep(Duration::from_secs(3));
        println!(
            "# pickup run {run}: idle RSS {:.1} MiB (anon {:.1}, file {:.1}); {} job requests in 3 s idle",
            idle_rss[idle_rss.len() - 1],
            proc_status_kib(runner.pid(), "RssAnon:") as f64 / 1024.0,
            proc_status_kib(runner.pid(), "RssFile:") as f64 / 1024.0,
            job_requests(&fake) - before
        );
        let mut picked = Vec::new();
        let mut started = Vec::new();
        for i in 0..jobs {
            let marker = sb.path(&format!("start-{i}"));
            let spec = JobSpec::new("pickup", &["date +%s%N > \"$BENCH_MARKER\""])
                .variable("GIT_STRATEGY", "none")
                .variable("BENCH_MARKER", &marker.to_string_lossy());
            let t0 = Instant::now();
            let t0_ns = unix_ns();
            let id = fake.enqueue_job(spec);
            let t1 = wait_picked(&fake, id);
            let job = wait_finished(rt, &fake, id, &runner);
            assert_success(&job, &runner);
            let ns: u128 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
            picked.push((t1 - t0).as_secs_f64() * 1000.0);
            started.push((ns.saturating_sub(t0_ns)) as f64 / 1e6);
            settle();
        }
        println!(
            "# pickup run {run}: picked median {:.2} ms, user script started median {:.2} ms",
            median(&picked),
            median(&started)
        );
        picked_all.extend(picked);
        started_all.extend(started);
        runner.quit();
    }
    picked_all.sort_by(f64::total_cmp);
    started_all.sort_by(f64::total_cmp);
    res.record(
        "pickup_p50 (enqueue->running)",
        percentile(&picked_all, 0.5),
        "ms",
        "goal <= 20 ms",
    );
    res.record("pickup_p90", percentile(&picked_all, 0.9), "ms", "");
    res.record(
        "script_start_p50 (enqueue->1st cmd)",
        percentile(&started_all, 0.5),
        "ms",
        "",
    );
    res.record("script_start_p90", percentile(&started_all, 0.9), "ms", "");
    res.record("idle_rss_after_start", median(&idle_rss), "MiB", "goal <= 10 MiB");
}

/// `jobs` trivial jobs enqueued at once with `concurrent` slots: enqueue → all finished. Each job's first final
/// update is answered 202 with a back-off of at least 1 s (GitLab persisting the live trace), and the job keeps
/// its slot meanwhile, as in gitlab-runner: that caps a slot at about one job per second.
fn bench_throughput(rt: &tokio::runtime::Runtime, res: &mut Results, runs: u64, jobs: u64, concurrent: u32) {
    let mut rates = Vec::new();
    let mut cpu_per_job = Vec::new();
    let mut idle_rss = Vec::new();
    for run in 0..runs {
        let fake = rt.block_on(fake(Duration::from_secs(50)));
        let sb = Sandbox::new();
        let runner = Runner::start(&fake, &sb, concurrent, "");
        settle();
        let cpu0 = proc_cpu_s(runner.pid());
        let t0 = Instant::now();
        let ids: Vec<i64> = (0..jobs)
            .map(|i| fake.enqueue_job(trivial(&format!("t{i}"))))
            .collect();
        for id in &ids {
            let job = wait_finished(rt, &fake, *id, &runner);
            assert_success(&job, &runner);
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu = proc_cpu_s(runner.pid()) - cpu0;
        let max_running = fake.max_concurrent_running();
        let rate = jobs as f64 / elapsed;
        println!(
            "# throughput c={concurrent} run {run}: {jobs} jobs in {elapsed:.2} s = {rate:.1} jobs/s; CPU of the runner \
             and its shells {:.1} ms/job; max running {max_running}",
            cpu * 1000.0 / jobs as f64
        );
        assert!(
            max_running <= concurrent as usize,
            "more than concurrent jobs ran at once"
        );
        rates.push(rate);
        cpu_per_job.push(cpu * 1000.0 / jobs as f64);
        // Idle again after a burst: what the allocator kept.
        settle();
        idle_rss.push(proc_status_kib(runner.pid(), "VmRSS:") as f64 / 1024.0);
        println!(
            "# throughput c={concurrent} run {run}: idle RSS after the burst {:.1} MiB (anon {:.1}, file {:.1})",
            idle_rss[idle_rss.len() - 1],
            proc_status_kib(runner.pid(), "RssAnon:") as f64 / 1024.0,
            proc_status_kib(runner.pid(), "RssFile:") as f64 / 1024.0,
        );
        runner.quit();
    }
    let goal = if concurrent == 8 { "goal >= 50 jobs/s" } else { "" };
    res.record(
        &format!("throughput_trivial_c{concurrent}"),
        median(&rates),
        "jobs/s",
        goal,
    );
    res.record(
        &format!("cpu_per_trivial_job_c{concurrent}"),
        median(&cpu_per_job),
        "ms",
        "(runner + its shells)",
    );
    res.record(
        &format!("idle_rss_after_burst_c{concurrent}"),
        median(&idle_rss),
        "MiB",
        "goal <= 10 MiB",
    );
}

/// The same script run by bash with stdout+stderr on a pipe this process drains: the baseline.
fn bash_alone(script: &str) -> f64 {
    let t0 = Instant::now();
    let mut child = std::process::Command::new("bash")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(total > 0);
    t0.elapsed().as_secs_f64()
}

/// A job printing `bytes` of log (with a masked variable, so the masker is active) vs bash alone; the runner's
/// RSS is sampled every 10 ms while the job runs.
fn bench_log(rt: &tokio::runtime::Runtime, res: &mut Results, runs: u64, bytes: u64) {
    // Not `yes | head`: under the job shell's pipefail, `yes` dying of SIGPIPE would fail the job.
    let script = format!(
        "head -c {bytes} < <(yes 'oxrunner benchmark log line: the quick brown fox jumps over the lazy dog 0123456789')"
    );
    let mut ratios = Vec::new();
    let mut peaks = Vec::new();
    let mut job_s = Vec::new();
    let mut bash_s = Vec::new();
    for run in 0..runs {
        let fake = rt.block_on(fake(Duration::from_secs(50)));
        let sb = Sandbox::new();
        let runner = Runner::start(&fake, &sb, 1, "");
        settle();
        let base = bash_alone(&script);

        let pid = runner.pid();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let stop = Arc::clone(&stop);
            let peak = Arc::clone(&peak);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    peak.fetch_max(proc_status_kib(pid, "VmRSS:"), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let spec = JobSpec::new("log", &[script.as_str()])
            .variable("GIT_STRATEGY", "none")
            .masked_variable("BENCH_SECRET", "not-in-the-output-Xy7");
        let cpu0 = proc_self_cpu_s(pid);
        let t0 = Instant::now();
        let id = fake.enqueue_job(spec);
        let done = wait_first_final_update(&fake, id);
        let took = (done - t0).as_secs_f64();
        let job = wait_finished(rt, &fake, id, &runner);
        let with_accept = t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        sampler.join().unwrap();
        assert_success(&job, &runner);
        assert!(
            job.trace_text().contains("Job's log exceeded limit"),
            "trace was not truncated: {} bytes",
            job.trace.len()
        );
        let peak_mib = peak.load(Ordering::SeqCst).max(proc_status_kib(pid, "VmHWM:")) as f64 / 1024.0;
        println!(
            "# log run {run}: bash alone {base:.2} s, job {took:.2} s (until GitLab accepted it {with_accept:.2} s), \
             ratio {:.3}, runner peak RSS {peak_mib:.1} MiB, runner CPU {:.2} s",
            took / base,
            proc_self_cpu_s(pid) - cpu0
        );
        ratios.push(took / base);
        peaks.push(peak_mib);
        job_s.push(took);
        bash_s.push(base);
        runner.quit();
    }
    let gib = bytes as f64 / (1u64 << 30) as f64;
    res.record(&format!("log_{gib:.2}GiB_bash_alone"), median(&bash_s), "s", "");
    res.record(
        &format!("log_{gib:.2}GiB_job (enqueue->final PUT)"),
        median(&job_s),
        "s",
        "",
    );
    res.record("log_job_over_bash_ratio", median(&ratios), "x", "goal <= 1.3x");
    res.record("log_job_peak_rss", median(&peaks), "MiB", "goal <= 32 MiB");
}

fn main() {
    // `cargo bench` passes `--bench`; anything not starting with `-` selects sections.
    let selected: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |name: &str| selected.is_empty() || selected.iter().any(|s| s == name);
    let runs = env_num("BENCH_RUNS", 3).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut res = Results { lines: Vec::new() };
    println!(
        "# machine: {} cores; load average at start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if want("pickup") || want("rss") {
        bench_pickup(&rt, &mut res, runs, env_num("BENCH_PICKUP_JOBS", 15).max(1));
    }
    if want("throughput") {
        let jobs = env_num("BENCH_THROUGHPUT_JOBS", 200).max(1);
        let levels = std::env::var("BENCH_CONCURRENT").unwrap_or_else(|_| "8,64".into());
        for c in levels.split(',').filter_map(|c| c.trim().parse::<u32>().ok()) {
            bench_throughput(&rt, &mut res, runs, jobs, c.max(1));
        }
    }
    if want("scrape") {
        let jobs = env_num("BENCH_SCRAPE_JOBS", 64).max(1);
        scrape::bench_scrape(&rt, &mut res, runs, jobs, env_num("BENCH_SCRAPES", 500).max(1));
    }
    if want("log") {
        bench_log(&rt, &mut res, runs, env_num("BENCH_LOG_BYTES", 1 << 30).max(1));
    }
    println!("\n# summary (median over {runs} runs)");
    for l in &res.lines {
        println!("{l}");
    }
}

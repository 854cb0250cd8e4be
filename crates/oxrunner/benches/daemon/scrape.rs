//! Issue #13: latency of a `/metrics` scrape while 64 jobs run (goal: p99 <= 5 ms), and the runner's RSS then.

use std::time::{Duration, Instant};

use fake_gitlab::JobSpec;

use super::{Results, Runner, Sandbox, WAIT, fake, percentile, proc_status_kib};

/// The address the runner's metrics server reports in its log.
fn metrics_address(runner: &Runner) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = runner.log_text();
        if let Some(addr) = log
            .lines()
            .find(|l| l.contains("Metrics server listening"))
            .and_then(|l| l.split("address=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
        {
            return addr.to_string();
        }
        assert!(Instant::now() < deadline, "no metrics server; log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn bench_scrape(rt: &tokio::runtime::Runtime, res: &mut Results, runs: u64, jobs: u64, scrapes: u64) {
    let mut all = Vec::new();
    let mut rss = Vec::new();
    for run in 0..runs {
        let fake = rt.block_on(fake(Duration::from_secs(1)));
        let sb = Sandbox::new();
        let concurrent = u32::try_from(jobs).unwrap_or(64);
        let runner = Runner::start_with(&fake, &sb, concurrent, "", &["--listen-address", "127.0.0.1:0"]);
        let addr = metrics_address(&runner);
        let release = sb.path("release");
        let mut ids = Vec::new();
        for i in 0..jobs {
            let marker = sb.path(&format!("running-{i}"));
            let spec = JobSpec::new(
                "scrape",
                &[
                    "touch \"$BENCH_MARKER\"",
                    "while [ ! -e \"$BENCH_RELEASE\" ]; do sleep 0.5; done",
                ],
            )
            .variable("GIT_STRATEGY", "none")
            .variable("BENCH_MARKER", &marker.to_string_lossy())
            .variable("BENCH_RELEASE", &release.to_string_lossy());
            ids.push((fake.enqueue_job(spec), marker));
        }
        let deadline = Instant::now() + WAIT;
        while !ids.iter().all(|(_, m)| m.exists()) {
            assert!(
                Instant::now() < deadline,
                "not all jobs started; log:\n{}",
                runner.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/metrics");
        let mut samples = Vec::new();
        let mut last = String::new();
        for _ in 0..scrapes {
            let t0 = Instant::now();
            last = rt.block_on(async { client.get(&url).send().await.unwrap().text().await.unwrap() });
            samples.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let running = last
            .lines()
            .find(|l| l.starts_with("gitlab_runner_jobs{") && l.contains("state=\"running\""))
            .unwrap_or_default()
            .to_string();
        assert!(
            running.ends_with(&format!(" {jobs}")) || running.ends_with(&format!(" {jobs}.0")),
            "{running}"
        );
        rss.push(proc_status_kib(runner.pid(), "VmRSS:") as f64 / 1024.0);
        samples.sort_by(f64::total_cmp);
        println!(
            "# scrape run {run}: {} scrapes with {jobs} running jobs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             {} bytes; runner RSS {:.1} MiB",
            samples.len(),
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples.last().copied().unwrap_or(f64::NAN),
            last.len(),
            rss[rss.len() - 1]
        );
        all.extend(samples);
        std::fs::write(&release, "").unwrap();
        for (id, _) in &ids {
            super::wait_finished(rt, &fake, *id, &runner);
        }
        runner.quit();
    }
    all.sort_by(f64::total_cmp);
    res.record(
        &format!("scrape_p50 ({jobs} running jobs)"),
        percentile(&all, 0.5),
        "ms",
        "",
    );
    res.record(
        &format!("scrape_p99 ({jobs} running jobs)"),
        percentile(&all, 0.99),
        "ms",
        "goal <= 5 ms",
    );
    rss.sort_by(f64::total_cmp);
    res.record("rss_with_64_running_jobs", percentile(&rss, 0.5), "MiB", "");
}

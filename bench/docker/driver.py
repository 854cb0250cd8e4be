#!/usr/bin/env python3
"""Docker executor benchmark driver (issue #5), started by bench/docker/run.sh.

Times a trivial docker job (image oxrunner-test/busybox, GIT_STRATEGY none, script `true`) through `oxrunner run`
against the fake-gitlab binary, from the moment the fake hands the job out (pickup) to the runner's first final job
update (`PUT /jobs/:id` with state success; GitLab's 202 back-off after it is excluded), against
`docker run --rm oxrunner-test/busybox true` measured in the same run, alternating the two. Both ends of the job
time are taken from the fake's job record, polled every POLL_S over one keep-alive connection.

It also reads the engine's event stream (`docker events`) for each job and prints when, relative to pickup, the
volume, container and network operations happened, so a ratio above the goal can be traced to its phase.
Only 127.0.0.1 is contacted; every process started here is stopped here.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

POLL_S = 0.002
GOAL = 1.3


class Fake:
    """The fake-gitlab binary and a keep-alive connection to its admin API."""

    def __init__(self, binary):
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--long-poll-secs", "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"fake-gitlab did not print a loopback URL: {self.url!r}")
        host, port = self.url.removeprefix("http://").rstrip("/").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        headers = {"content-type": "application/json"} if data else {}
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, ConnectionError):
                if attempt:
                    raise
                self.conn.close()
        if resp.status >= 300:
            raise SystemExit(f"{method} {path}: {resp.status} {raw[:200]!r}")
        return json.loads(raw) if raw else None

    def stop(self):
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def short_token(token):
    # oxrunner-config's short_token: known prefixes removed, then 9 characters.
    for prefix in ("glrt-t1_", "glrt-t2_", "glrt-t3_", "glrtr-", "glrt-", "glcbt-", "t1_", "t2_", "t3_"):
        if token.startswith(prefix):
            return token[len(prefix):][:9]
    return token[:9]


def docker_run_baseline(image):
    start = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", image, "true"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_job(fake, image):
    """Enqueues one trivial job; returns (pickup→final update s, pickup wall ns, final wall ns, record)."""
    spec = {
        "name": "trivial",
        "script": ["true"],
        "variables": [["GIT_STRATEGY", "none", {"public": True}]],
        "image": {"name": image},
    }
    job_id = fake.call("POST", "/fake-admin/jobs", spec)["id"]
    picked = final = None
    picked_ns = final_ns = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rec = fake.call("GET", f"/fake-admin/jobs/{job_id}")
        now, now_ns = time.perf_counter(), time.time_ns()
        if picked is None and rec["status"] != "pending":
            picked, picked_ns = now, now_ns
        if final is None and any(u.get("state") not in (None, "running") for u in rec["updates"]):
            final, final_ns = now, now_ns
        if rec["status"] in ("success", "failed", "canceled"):
            if rec["status"] != "success":
                raise SystemExit(f"job {job_id} {rec['status']}: {rec.get('trace', '')[-2000:]}")
            return final - picked, picked_ns, final_ns, rec
        time.sleep(POLL_S)
    raise SystemExit(f"job {job_id} did not finish in 120 s")


def engine_events(short, since_ns, until_ns):
    """This runner's engine events between the two instants: containers by label, volumes by name, networks by
    name or by one of our containers (other users of the engine are left out)."""
    out = subprocess.run(
        [
            "docker", "events", "--format", "{{json .}}",
            "--since", f"{since_ns / 1e9:.9f}", "--until", f"{until_ns / 1e9:.9f}",
        ],
        check=True, capture_output=True, text=True,
    ).stdout
    prefix = f"runner-{short}-"
    raw = [json.loads(line) for line in out.splitlines()]
    ours = {
        ev["Actor"]["ID"]
        for ev in raw
        if ev.get("Type") == "container"
        and (ev.get("Actor") or {}).get("Attributes", {}).get("com.oxrunner.runner") == short
    }
    events = []
    for ev in raw:
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        kind, action = ev.get("Type"), ev.get("Action", "")
        if kind == "container":
            keep = actor.get("ID") in ours
        elif kind == "volume":
            keep = actor.get("ID", "").startswith(prefix) or attrs.get("container") in ours
        elif kind == "network":
            keep = attrs.get("name", "").startswith(prefix) or attrs.get("container") in ours
        else:
            keep = False
        if keep:
            # exec_create/exec_start carry the command after a colon; keep the verb.
            events.append((ev["timeNano"], f"{kind} {action.split(':')[0]}"))
    return sorted(events)


def phases(timeline):
    """Sums a job's engine timeline into phases (ms): set-up (pickup → the engine begins starting the container,
    seen as its first attach or network connect), container starts, stage execs (exec_start → exec_die), runner
    work between engine calls, stop (last stage → container die), teardown (die → destroy), and destroy → final
    update. Works for a start per stage (attach model) and for one start with an exec per stage."""
    out = {"setup": 0.0, "start": 0.0, "execs": 0.0, "between": 0.0, "stop": 0.0, "teardown": 0.0,
           "to_final": 0.0}
    begin = last_end = last_die = destroy = None
    for ms, name in sorted(timeline):
        if name in ("container attach", "network connect"):
            if begin is None:
                out["setup"] = ms
            if last_end is not None and begin is None:
                out["between"] += ms - last_end
            if begin is None:
                begin = ms
        elif name == "container start" and begin is not None:
            out["start"] += ms - begin
            begin, last_end = None, ms
        elif name == "container exec_start":
            exec_began = ms
            if last_end is not None:
                out["between"] += ms - last_end
        elif name == "container exec_die":
            out["execs"] += ms - exec_began
            last_end = ms
        elif name == "container die":
            if last_end is not None:
                out["stop"] += ms - last_end
            last_die, last_end = ms, None
        elif name == "container destroy":
            destroy = ms
            if last_die is not None:
                out["teardown"] += ms - last_die
        elif name == "-- final job update seen" and destroy is not None:
            out["to_final"] = ms - destroy
    return out


def cli_micro(image, runs):
    """CLI-level costs of the two ways to run a command in an existing container: `docker start -a` of a created
    container (what a start per stage pays) and `docker exec` in a running one."""
    label = "com.oxrunner.bench=micro"
    created = subprocess.run(["docker", "create", "--label", label, image, "true"],
                             check=True, capture_output=True, text=True).stdout.strip()
    running = subprocess.run(["docker", "run", "-d", "--label", label, image, "sleep", "3600"],
                             check=True, capture_output=True, text=True).stdout.strip()
    starts, execs = [], []
    try:
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run(["docker", "start", "-a", created], check=True, stdout=subprocess.DEVNULL)
            starts.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(["docker", "exec", running, "true"], check=True, stdout=subprocess.DEVNULL)
            execs.append(time.perf_counter() - t)
    finally:
        subprocess.run(["docker", "rm", "-f", created, running], check=False, stdout=subprocess.DEVNULL)
    return statistics.median(starts), statistics.median(execs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oxrunner", required=True)
    ap.add_argument("--fake", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--image", default="oxrunner-test/busybox:latest")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="oxrunner-docker-bench-")
    fake = Fake(args.fake)
    runner = None
    try:
        token = fake.call("POST", "/fake-admin/runners",
                          {"description": "bench-docker", "tags": [], "run_untagged": True})["token"]
        short = short_token(token)
        for sub in ("home", "tmp"):
            os.makedirs(os.path.join(work, sub))
        config = os.path.join(work, "config.toml")
        with open(config, "w") as f:
            f.write(
                "concurrent = 1\ncheck_interval = 1\nshutdown_timeout = 10\n\n"
                "[[runners]]\n  name = \"bench-docker\"\n"
                f"  url = \"{fake.url}\"\n  token = \"{token}\"\n  executor = \"docker\"\n"
                f"  [runners.docker]\n    image = \"{args.image}\"\n    pull_policy = [\"if-not-present\"]\n"
            )
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": f"{work}/home",
               "TMPDIR": f"{work}/tmp", "LANG": "C.UTF-8"}
        # The runner must use the engine the `docker` CLI calls of this driver use.
        env.update({k: os.environ[k] for k in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
                    if k in os.environ})
        log = open(os.path.join(work, "runner.log"), "w")
        runner = subprocess.Popen([args.oxrunner, "run", "-c", config], env=env, cwd=work,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_for(lambda: any(r["method"] == "POST" and r["path"].startswith("/api/v4/jobs/request")
                             for r in fake.call("GET", "/fake-admin/requests")), 30, "the runner's first poll")

        # Warm-up (page cache, the engine's image metadata, the runner's connection): not measured.
        docker_run_baseline(args.image)
        run_job(fake, args.image)
        time.sleep(1.5)

        jobs, bases, timelines = [], [], []
        for i in range(args.runs):
            base = docker_run_baseline(args.image)
            time.sleep(0.3)
            took, picked_ns, final_ns, rec = run_job(fake, args.image)
            last_trace = rec.get("trace", "")
            # The runner removes the container after the final update; give it time, then read the events.
            time.sleep(1.5)
            events = engine_events(short, picked_ns - 50_000_000, time.time_ns())
            timelines.append([((t - picked_ns) / 1e6, name) for t, name in events]
                             + [((final_ns - picked_ns) / 1e6, "-- final job update seen")])
            jobs.append(took)
            bases.append(base)
            print(f"run {i + 1}: job {took * 1000:7.1f} ms   docker run --rm {base * 1000:7.1f} ms   "
                  f"ratio {took / base:.2f}   final update at +{(final_ns - picked_ns) / 1e6:.0f} ms", flush=True)

        job_med, base_med = statistics.median(jobs), statistics.median(bases)
        ratio = job_med / base_med
        mid = sorted(range(len(jobs)), key=lambda k: jobs[k])[len(jobs) // 2]
        print(f"\n# engine events of the median run (run {mid + 1}), ms after pickup (gap to the previous)")
        prev = 0.0
        for ms, name in sorted(timelines[mid]):
            print(f"  {ms:8.1f}  (+{ms - prev:6.1f})  {name}")
            prev = ms
        starts = [sum(1 for _, n in tl if n == "container start") for tl in timelines]
        execs = [sum(1 for _, n in tl if n == "container exec_start") for tl in timelines]
        print(f"# container starts per job: {starts}; stage execs per job: {execs}")
        sums = [phases(tl) for tl in timelines]
        print("# phases, ms (median over runs): " + ", ".join(
            f"{k} {statistics.median(p[k] for p in sums):.0f}" for k in sums[0]))
        sections = sorted(set(re.findall(r"section_start:\d+:([a-z_0-9]+)", last_trace)),
                          key=last_trace.index)
        print(f"# trace sections of a job: {' '.join(sections)}")
        start_s, exec_s = cli_micro(args.image, args.runs)
        print(f"# CLI: docker start -a (created container, true) {start_s * 1000:.0f} ms; "
              f"docker exec (running container, true) {exec_s * 1000:.0f} ms")
        print("\n# name value unit goal")
        print(f"docker_job_pickup_to_final_update_median {job_med * 1000:.1f} ms -")
        print(f"docker_run_rm_busybox_true_median {base_med * 1000:.1f} ms -")
        print(f"ratio {ratio:.2f} x <={GOAL} {'met' if ratio <= GOAL else 'MISSED'}")
    finally:
        if runner is not None:
            runner.send_signal(signal.SIGQUIT)
            try:
                runner.wait(timeout=30)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.wait()
        fake.stop()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

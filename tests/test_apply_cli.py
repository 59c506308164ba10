"""`hpt apply` / `hpt status` as a user runs them: real `hpt` subprocesses, real signals, a real
store (a folder and fake-gcs-server), with the scripted stand-in trainer so each case takes seconds."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from executor_support import attempts, kill_leftovers, child_env, fake_env, hpt_exe, write_plan
from hpt.schemas.manifest import TrialManifest, canonical_json
from hpt.store import open_store
from trial_factory import make_manifest


@pytest.fixture(autouse=True)
def _no_leftover_trials(tmp_path):
    yield
    kill_leftovers(tmp_path)


def manifests(n: int):
    return [make_manifest("/data/none", "bag-of-words", epochs=1, seed=i, experiment="e-abcdefabcdef") for i in range(n)]


def plan_with(tmp_path: Path, n: int, behaviour: dict[str, str]):
    ms = manifests(n)
    ids = [m.id for m in ms]
    env = child_env(fake_env(tmp_path, {ids[int(k)] if k.isdigit() else k: v for k, v in behaviour.items()}))
    return write_plan(tmp_path / "plan", ms), ids, env


def hpt(*args, env, timeout=120, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def rows_in(uri: str) -> list[str]:
    store = open_store(uri)
    return [k for k in store.list("rows/")]


def results_table(uri: str) -> list[dict[str, str]]:
    try:
        text = open_store(uri).get("results.csv").decode()
    except KeyError:
        return []
    return list(csv.DictReader(io.StringIO(text)))


def wait_for(predicate, timeout=60.0, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def test_exit_codes_json_events_and_dry_run(tmp_path):
    plan_dir, ids, env = plan_with(tmp_path, 3, {"2": "fail"})
    results = tmp_path / "results"

    dry = hpt("apply", plan_dir, "--results", results, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert len(dry.stdout.splitlines()) == 3 and f"trials/{ids[0]}.json" in dry.stdout
    assert not results.exists() and not (plan_dir / ".hpt").exists()  # changed nothing

    proc = hpt("apply", plan_dir, "--results", results, "--format", "json", "--junit", tmp_path / "junit.xml", env=env)
    assert proc.returncode == 1 and proc.stdout, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run-started" and names[-1] == "run-finished"
    assert names.count("trial-started") == 3 and names.count("trial-finished") == 2 and names.count("trial-failed") == 1
    assert events[-1]["done"] == 2 and events[-1]["failed"] == 1 and events[-1]["exit_code"] == 1
    assert "failures=\"1\"" in (tmp_path / "junit.xml").read_text()

    status = hpt("status", plan_dir, "--results", results, "--format", "json", env=env)
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["counts"] == {"done": 2, "failed": 1}
    assert {t["trial_id"]: t["state"] for t in doc["trials"]}[ids[2]] == "failed"
    table = hpt("status", plan_dir, "--results", results, env=env)
    assert "loss became NaN" in table.stdout

    # --skip-failed: nothing runs, the failure stays (exit 1); dry run says what a retry would run
    kept = hpt("apply", plan_dir, "--results", results, "--skip-failed", env=env)
    assert kept.returncode == 1 and "nothing to run" in kept.stderr
    again = hpt("apply", plan_dir, "--results", results, "--dry-run", env=env)
    assert f"trials/{ids[2]}.json" in again.stdout and len(again.stdout.splitlines()) == 1

    # user errors: exit 2, one line, no traceback
    bad = hpt("apply", tmp_path / "no-such-plan", env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "does not exist" in bad.stderr
    bad = hpt("apply", plan_dir, "--backend", "nomad", env=env)
    assert bad.returncode == 2 and "unknown backend" in bad.stderr
    bad = hpt("apply", plan_dir, "--namespace", "x", env=env)
    assert bad.returncode == 2 and "--namespace" in bad.stderr
    bad = hpt("status", tmp_path, env=env)
    assert bad.returncode == 2 and "plan.json" in bad.stderr


@pytest.mark.parametrize("field, value", [
    ("image", "someone-elses:latest"),
    ("resources", {"gpus": 0, "cpus": 64, "memory": "1Ti"}),
    ("metrics", ["mse"]),
    ("objective", {"metric": "mse", "goal": "maximize"}),
])
def test_a_manifest_edited_after_compile_is_refused(tmp_path, field, value):
    plan_dir, ids, env = plan_with(tmp_path, 2, {})
    path = plan_dir / "trials" / f"{ids[1]}.json"
    doc = json.loads(path.read_text())
    doc[field] = value
    path.write_text(canonical_json(doc) + "\n")
    assert TrialManifest.from_json(path.read_text()).id == ids[1]   # still a valid manifest: its id does not hash these
    proc = hpt("apply", plan_dir, "--results", tmp_path / "res", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "immutable" in lines[0], proc.stderr
    assert not (tmp_path / "res").exists() or rows_in(str(tmp_path / "res")) == []   # nothing ran


def _not_a_manifest_but_digest_kept(plan_dir: Path, tid: str) -> Path:
    """trials/<tid>.json made into bytes that are no manifest, with plan.json's digest of them: compiled so."""
    from hpt.schemas.plan import manifest_digest

    path = plan_dir / "trials" / f"{tid}.json"
    path.write_bytes(b"[not a manifest")
    doc = json.loads((plan_dir / "plan.json").read_text())
    doc["digests"][tid] = manifest_digest(path.read_bytes())
    (plan_dir / "plan.json").write_text(json.dumps(doc))
    return path


def test_a_re_apply_parses_the_manifests_of_the_trials_it_runs_before_it_starts_any(tmp_path):
    plan_dir, ids, env = plan_with(tmp_path, 4, {})
    res = tmp_path / "res"
    assert hpt("apply", plan_dir, "--results", res, "--parallel", "1", env=env).returncode == 0
    open_store(str(res)).delete(f"rows/{ids[3]}.csv")
    _not_a_manifest_but_digest_kept(plan_dir, ids[1])   # done: never run again, so never parsed
    proc = hpt("apply", plan_dir, "--results", res, "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    started = [e["trial_id"] for e in map(json.loads, proc.stdout.splitlines()) if e["event"] == "trial-started"]
    assert started == [ids[3]] and attempts(tmp_path, ids[3]) == 2
    open_store(str(res)).delete(f"rows/{ids[2]}.csv")
    open_store(str(res)).delete(f"rows/{ids[3]}.csv")
    path = _not_a_manifest_but_digest_kept(plan_dir, ids[3])   # to run: refused before ids[2] starts
    for args in ([], ["--dry-run"]):
        proc = hpt("apply", plan_dir, "--results", res, *args, env=env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "not a trial manifest" in proc.stderr and str(path) in proc.stderr, proc.stderr
    assert attempts(tmp_path, ids[2]) == 1 and sorted(rows_in(str(res))) == sorted(f"rows/{t}.csv" for t in ids[:2])


def test_a_plan_without_manifest_digests_is_one_clear_error(tmp_path):
    plan_dir, ids, env = plan_with(tmp_path, 1, {})
    doc = json.loads((plan_dir / "plan.json").read_text())
    del doc["digests"]
    (plan_dir / "plan.json").write_text(json.dumps(doc))
    proc = hpt("apply", plan_dir, "--results", tmp_path / "res", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no manifest digests" in proc.stderr and "hpt compile" in proc.stderr and "plan.json" in proc.stderr


def test_default_results_is_the_plans_then_hpt_results(tmp_path):
    plan_dir, ids, env = plan_with(tmp_path, 1, {})
    proc = hpt("apply", plan_dir, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert rows_in(str(tmp_path / "hpt-results")) == [f"rows/{ids[0]}.csv"]


@pytest.mark.parametrize("warm", [[], ["--warm"]], ids=["process", "warm"])
def test_sigkill_mid_run_then_reapply_ends_with_one_row_per_trial(tmp_path, warm):
    # the first trial finishes fast; the long ones wait on a gate the test opens once the re-apply has them,
    # so they are still running when apply is killed and when it is run again, however slow the machine
    gate = tmp_path / "gate"
    plan_dir, ids, env = plan_with(tmp_path, 4, {"0": "sleep:0.3", "1": f"gate:{gate}", "2": f"gate:{gate}", "3": "sleep:0.3"})
    results = str(tmp_path / "results")
    apply = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--parallel", "2",
                              "--format", "json", *warm], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(rows_in(results)) >= 1)
    apply.send_signal(signal.SIGKILL)
    apply.wait()
    done_at_kill = {Path(k).stem for k in rows_in(results)}
    records = [p.name.split(".")[0] for p in (plan_dir / ".hpt" / "local").rglob("*.pid.json")]
    survivors = [t for t in records if t not in done_at_kill]
    assert survivors  # the running trials outlive the killed apply

    again = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--format", "json", *warm],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, gate.touch)   # a re-apply that never reports them must fail, not hang
    watchdog.start()
    seen: set[str] = set()
    lines = []
    for line in again.stdout:
        lines.append(line)
        event = json.loads(line)
        if event.get("event") in ("trial-adopted", "trial-started"):
            seen.add(event["trial_id"])
        if set(survivors) <= seen or event.get("event") == "run-finished":
            gate.touch()
    watchdog.cancel()
    assert again.wait(timeout=120) == 0, again.stderr.read()
    finished = json.loads(lines[-1])
    assert finished["adopted"] == len(survivors)
    assert sorted(rows_in(results)) == sorted(f"rows/{t}.csv" for t in ids)
    assert sorted(r["trial_id"] for r in results_table(results)) == sorted(ids)
    # nothing ran twice: the trials running at the kill were adopted, not restarted
    assert [attempts(tmp_path, t) for t in ids] == [1] * 4
    assert not list((plan_dir / ".hpt" / "local").rglob("*.pid.json"))
    assert (plan_dir / ".hpt" / "local" / "warm-worker.log").is_file() == bool(warm)


def test_trials_that_finish_while_apply_is_dead_keep_their_logs(tmp_path):
    plan_dir, ids, env = plan_with(tmp_path, 2, {"0": "sleep:0.2", "1": "sleep:2"})
    results = str(tmp_path / "results")
    apply = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--parallel", "2"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: attempts(tmp_path, ids[1]) == 1)
    apply.send_signal(signal.SIGKILL)
    apply.wait()
    wait_for(lambda: len(rows_in(results)) == 2)  # both finish with nobody watching
    proc = hpt("apply", plan_dir, "--results", results, "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    store = open_store(results)
    for tid in ids:
        assert f"fake trial {tid} attempt 1" in store.get(f"logs/{tid}.log").decode()
    assert [attempts(tmp_path, t) for t in ids] == [1, 1]


def test_ctrl_c_cancels_running_trials_and_says_how_to_resume(tmp_path):
    plan_dir, ids, env = plan_with(tmp_path, 3, {"*": "hang"})
    results = str(tmp_path / "results")
    apply = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--parallel", "2"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: sum(attempts(tmp_path, t) for t in ids) == 2)
    status = hpt("status", plan_dir, "--results", results, "--format", "json", env=env)
    assert json.loads(status.stdout)["counts"] == {"running": 2, "pending": 1}, status.stderr
    second = hpt("apply", plan_dir, "--results", results, env=env)  # one apply per plan at a time
    assert second.returncode == 2 and "another `hpt apply`" in second.stderr
    apply.send_signal(signal.SIGINT)
    _, err = apply.communicate(timeout=60)
    assert apply.returncode == 130
    assert "Resume with: hpt apply" in " ".join(err.split())
    pids = [int((tmp_path / "counts" / t).read_text().split()[0]) for t in ids if attempts(tmp_path, t)]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert rows_in(results) == []  # cancelled trials are pending, not failed


@pytest.mark.parametrize("where", ["folder", "gcs"])
def test_results_csv_grows_while_the_run_is_in_progress(tmp_path, where, request):
    results = request.getfixturevalue("gcs_bucket") + "/run" if where == "gcs" else str(tmp_path / "results")
    plan_dir, ids, env = plan_with(tmp_path, 3, {"*": "sleep:1"})  # env inherits STORAGE_EMULATOR_HOST
    apply = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--parallel", "1"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = set()
    while apply.poll() is None:
        rows = results_table(results)
        if rows and apply.poll() is None:
            seen.add(len(rows))
        time.sleep(0.1)
    assert apply.returncode == 0, apply.stderr.read()
    assert seen & {1, 2}, f"results.csv never showed a partial run (saw {seen})"
    assert sorted(r["trial_id"] for r in results_table(results)) == sorted(ids)
    assert open_store(results).exists(f"logs/{ids[0]}.log")


def test_failed_trial_retried_on_reapply_against_gcs(tmp_path, gcs_bucket):
    """The one replaced row (a failed trial's, moved to rows-failed/ first) works on a bucket too."""
    results = gcs_bucket + "/retry"
    plan_dir, ids, env = plan_with(tmp_path, 2, {"0": "failfirst"})
    first = hpt("apply", plan_dir, "--results", results, env=env)
    assert first.returncode == 1, first.stderr
    second = hpt("apply", plan_dir, "--results", results, env=env)
    assert second.returncode == 0, second.stderr
    store = open_store(results)
    assert store.list("rows-failed/") == [f"rows-failed/{ids[0]}.1.csv"]
    assert {r["trial_id"]: r["status"] for r in results_table(results)} == {ids[0]: "done", ids[1]: "done"}
    assert attempts(tmp_path, ids[0]) == 2 and attempts(tmp_path, ids[1]) == 1


def test_the_resume_hint_is_a_command_the_cli_accepts():
    import shlex

    import typer.main

    from hpt.cli import app
    from hpt.commands.apply import _resume_command

    hint = _resume_command("plan dir", "k8s", "gs://b/p", {"cancel_on_exit": False, "context": "ctx", "namespace": None})
    argv = shlex.split(hint)
    assert argv[:2] == ["hpt", "apply"] and "--keep-on-exit" in argv
    command = typer.main.get_command(app).get_command(None, "apply")  # type: ignore[attr-defined]
    ctx = command.make_context("apply", argv[2:], resilient_parsing=False)
    assert ctx.params["cancel_on_exit"] is False and ctx.params["context"] == "ctx" and Path(ctx.params["plan_dir"]).name == "plan dir"


def test_junit_lists_every_trial_of_the_plan_even_after_a_stopped_run(tmp_path):
    import xml.etree.ElementTree as ET

    plan_dir, ids, env = plan_with(tmp_path, 3, {"*": "fail"})
    junit = tmp_path / "junit.xml"
    proc = hpt("apply", plan_dir, "--results", tmp_path / "results", "--parallel", "1", "--max-failures", "1",
               "--junit", junit, env=env)
    assert proc.returncode == 1, proc.stderr
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 3 and suite.get("tests") == "3"
    assert sum(c.find("failure") is not None for c in cases) == 1
    assert sum(c.find("skipped") is not None for c in cases) == 2


@pytest.mark.parametrize("where", ["folder", "gcs"])
def test_two_copies_of_a_plan_applied_at_once_train_every_trial_once(tmp_path, where, request):
    """Claims in the store: two plan folders (a copy, or another machine), one store, two applies at once."""
    import shutil

    results = str(tmp_path / "results") if where == "folder" else request.getfixturevalue("gcs_bucket") + "/two"
    plan_dir, ids, env = plan_with(tmp_path, 6, {"*": "sleep:0.5"})
    copy = tmp_path / "plan-copy"
    shutil.copytree(plan_dir, copy)
    procs = [subprocess.Popen([hpt_exe(), "apply", str(p), "--results", results, "--parallel", "2", "--format", "json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in (plan_dir, copy)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert {tid: attempts(tmp_path, tid) for tid in ids} == {tid: 1 for tid in ids}
    events = [json.loads(line) for out, _ in outs for line in out.splitlines()]
    assert sum(e["event"] == "trial-started" for e in events) == 6
    assert all(e["done"] == 6 for e in events if e["event"] == "run-finished")
    assert sorted(rows_in(results)) == sorted(f"rows/{t}.csv" for t in ids)
    assert open_store(results).list("claims/") == []  # every claim released


def test_a_dead_applys_claim_is_taken_over_and_a_live_one_is_waited_for(tmp_path):
    from hpt.store.claims import Claims

    plan_dir, ids, env = plan_with(tmp_path, 2, {})
    results = str(tmp_path / "results")
    store = open_store(results)
    dead, live = Claims(store, "elsewhere:/dead", lease_s=0.01), Claims(store, "elsewhere:/live", lease_s=600)
    dead.acquire(ids[0])
    time.sleep(0.05)
    claim = live.acquire(ids[1])
    proc = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--format", "json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: open_store(results).exists(f"rows/{ids[0]}.csv"))  # the dead claim was taken over
    time.sleep(1.5)
    assert proc.poll() is None and attempts(tmp_path, ids[1]) == 0      # the live one is left to its owner
    from hpt.schemas.row import row_csv

    store.put_once(f"rows/{ids[1]}.csv", row_csv({"trial_id": ids[1], "status": "done", "mse": 0.5}).encode())
    live.release(claim)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["trial_id"] for e in events if e["event"] == "trial-claimed-elsewhere"] == [ids[1]]
    assert events[-1]["done"] == 2 and attempts(tmp_path, ids[0]) == 1 and attempts(tmp_path, ids[1]) == 0


def test_a_claim_from_a_skewed_clock_is_said_once_and_never_waited_for(tmp_path):
    """A lease ending far past what the protocol allows (another machine's clock is wrong): not waited for."""
    from hpt.store.claims import Claims

    plan_dir, ids, env = plan_with(tmp_path, 2, {})
    results = str(tmp_path / "results")
    Claims(open_store(results), "far:/future", lease_s=10**9).acquire(ids[1])
    proc = hpt("apply", plan_dir, "--results", results, "--format", "json", env=env, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    said = [e["text"] for e in events if e["event"] == "message" and ids[1] in e.get("text", "")]
    assert len(said) == 1 and "far:/future" in said[0] and "skewed clock" in said[0] and f"claims/{ids[1]}" in said[0]
    assert events[-1]["done"] == 1 and events[-1]["not_run"] == 1 and attempts(tmp_path, ids[1]) == 0


def test_a_damaged_pid_record_is_data_never_a_path(tmp_path):
    """A pid record naming files elsewhere (its "log", "manifest_copy"): apply neither reads nor deletes them."""
    plan_dir, ids, env = plan_with(tmp_path, 2, {})
    results = str(tmp_path / "results")
    victims = [tmp_path / "precious.log", tmp_path / "precious.json"]
    for victim in victims:
        victim.write_text("keep me")
    folder = plan_dir / ".hpt" / "local" / "e-abcdefabcdef"
    folder.mkdir(parents=True)
    (folder / f"{ids[0]}.pid.json").write_text(json.dumps({"pid": -1, "trial_id": ids[0], "log": str(victims[0]),
                                                           "manifest_copy": str(victims[1]), "results": results}))
    (folder / f"{ids[1]}.pid.json").write_text(json.dumps({"pid": 999999, "trial_id": ids[1], "log": "/dev/zero"}))
    proc = hpt("apply", plan_dir, "--results", results, "--format", "json", env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert [v.read_text() for v in victims] == ["keep me", "keep me"]
    assert b"keep me" not in open_store(results).get(f"logs/{ids[0]}.log")
    assert [attempts(tmp_path, t) for t in ids] == [1, 1]


def killed_apply_with_two_trials_running(tmp_path):
    """A plan of 3 trials applied with -j3: one done, two hanging, then the apply is killed with SIGKILL.
    Returns (plan_dir, trial ids, env, results, the dead apply's Popen)."""
    plan_dir, ids, env = plan_with(tmp_path, 3, {"0": "sleep:0.2", "*": "hang"})
    results = str(tmp_path / "results")
    apply = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--parallel", "3"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(rows_in(results)) == 1 and attempts(tmp_path, ids[1]) and attempts(tmp_path, ids[2]))
    apply.send_signal(signal.SIGKILL)
    apply.wait()
    return plan_dir, ids, env, results, apply


def test_status_after_a_killed_apply_and_killed_trials(tmp_path):
    plan_dir, ids, env, results, apply = killed_apply_with_two_trials_running(tmp_path)

    # The apply is dead, its trials still run: status says both, and how to resume.
    proc = hpt("status", plan_dir, "--results", results, env=env)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert f"pid {apply.pid}" in text and "not running" in text and "Resume with: hpt apply" in text, text
    doc = json.loads(hpt("status", plan_dir, "--results", results, "--format", "json", env=env).stdout)
    assert doc["counts"] == {"done": 1, "running": 2} and doc["apply"]["alive"] is False

    kill_leftovers(tmp_path)  # now the trials die too: nothing runs any more
    doc = json.loads(hpt("status", plan_dir, "--results", results, "--format", "json", env=env).stdout)
    assert doc["counts"] == {"done": 1, "pending": 2}, doc
    assert doc["apply"]["resume"].startswith(f"hpt apply {plan_dir}")


def test_hpt_delete_backend_local_stops_the_trials_a_killed_apply_left_running(tmp_path):
    plan_dir, ids, env, results, _ = killed_apply_with_two_trials_running(tmp_path)

    k8s_only = hpt("delete", plan_dir, "--backend", "local", "--namespace", "ns", env=env)
    assert k8s_only.returncode == 2 and "--namespace applies to --backend k8s only" in k8s_only.stderr
    listed = hpt("delete", plan_dir, "--backend", "local", "--dry-run", env=env)
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == sorted(f"process/{t}" for t in ids[1:])
    assert "would delete 2 trial process(es)" in listed.stderr
    other = hpt("delete", plan_dir, "--backend", "local", "--results", tmp_path / "other", "--format", "json", env=env)
    assert json.loads(other.stdout)["processes"] == []              # another store's apply left nothing
    status = json.loads(hpt("status", plan_dir, "--results", results, "--format", "json", env=env).stdout)
    assert status["counts"] == {"done": 1, "running": 2}             # listing stopped nothing

    deleted = hpt("delete", plan_dir, "--backend", "local", "--results", results, "--format", "json", env=env)
    assert deleted.returncode == 0, deleted.stderr
    doc = json.loads(deleted.stdout)
    assert doc["backend"] == "local" and sorted(doc["processes"]) == sorted(ids[1:]) and "namespace" not in doc
    status = json.loads(hpt("status", plan_dir, "--results", results, "--format", "json", env=env).stdout)
    assert status["counts"] == {"done": 1, "pending": 2}, status     # stopped; the store keeps its row
    left = {p.name.split(".")[0] for p in (plan_dir / ".hpt" / "local").rglob("*.pid.json")}
    assert not left & set(ids[1:])   # (a trial that ended unwatched keeps its record: the next apply saves its log)
    assert json.loads(hpt("delete", plan_dir, "-b", "local", "-f", "json", env=env).stdout)["processes"] == []


def test_status_of_a_big_plan_summarises_and_all_lists_every_trial_as_a_line(tmp_path):
    from hpt.commands.common import SUMMARY_AT
    from hpt.schemas.row import row_csv

    n = SUMMARY_AT + 5
    plan_dir, ids, env = plan_with(tmp_path, n, {})
    store = open_store(str(tmp_path / "res"))
    for i, tid in enumerate(ids[:-1]):
        failed = i % 2
        store.put_once(f"rows/{tid}.csv", row_csv({"trial_id": tid, "status": "failed" if failed else "done",
                                                   "reason": "bad\x1b[2Jthing" if failed else "", "mse": i}).encode())
    short = hpt("status", plan_dir, "--results", tmp_path / "res", env=env)
    assert short.returncode == 0 and f"(--all lists all {n} trials" in short.stdout, short.stderr
    assert len(short.stdout.splitlines()) < 60 and "\x1b" not in short.stdout
    every = hpt("status", plan_dir, "--results", tmp_path / "res", "--all", env=env)
    assert every.returncode == 0, every.stderr
    lines = every.stdout.splitlines()
    listed = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("t-")}
    assert set(listed) == set(ids) and listed[ids[-1]] == ["pending"] and listed[ids[0]][0] == "done"
    assert listed[ids[1]] == ["failed", "bad\\x1b[2Jthing"] and "\x1b" not in every.stdout   # data, never a control code
    assert f"{(n - 1) // 2} failed" in every.stdout

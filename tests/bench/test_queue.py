"""The protocols' queue (bench/queue.py) when a worker's heartbeats come late: another worker fails its job as stale
and queues it again while it is still running. Neither worker may crash, and the job's records are kept once."""

import threading

from mnistlab.bench.queue import Queue, _held, collect, open_queue, work


def _fail_as_stale(study) -> None:
    """What `optuna.storages.fail_stale_trials` does in another worker to a running trial whose heartbeats are late."""
    from optuna.trial import TrialState

    storage = study._storage
    (running,) = [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    assert storage.set_trial_state_values(running._trial_id, state=TrialState.FAIL)
    storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(running._trial_id))


def test_a_job_failed_as_stale_while_it_runs_is_kept_once(tmp_path):
    q = Queue("test", {"n": 2}, f"sqlite:///{tmp_path / 'q.db'}", "q", locks=str(tmp_path))
    jobs = [{"key": "a/1"}, {"key": "a/2"}]
    study, calls, said = open_queue(q, jobs), [], []

    def run(job):
        calls.append(job["key"])
        if len(calls) == 1:
            _fail_as_stale(study)
        return [{"key": job["key"], "call": len(calls)}]

    assert work(q, jobs, run, said.append) == "done"
    assert calls == ["a/1", "a/2", "a/1"]  # the retry queued last, run after the late worker was done with it
    records, counts = collect(study)
    assert sorted((r["key"], r["call"]) for r in records) == [("a/1", 3), ("a/2", 2)]
    assert counts["states"] == {"fail": 1, "complete": 2} and counts["runs"] == 2
    assert any("failed as stale by another worker" in s for s in said)


def test_a_job_waits_for_the_worker_that_holds_it(tmp_path):
    q = Queue("test", {"n": 1}, f"sqlite:///{tmp_path / 'q.db'}", "q", locks=str(tmp_path))
    jobs, calls = [{"key": "a/1"}], []
    lock = _held(q, jobs[0])
    lock.acquire()  # as a worker still running the job would hold it
    worker = threading.Thread(target=work, args=(q, jobs, lambda job: calls.append(job["key"]) or [{}], print))
    worker.start()
    worker.join(timeout=3)
    assert worker.is_alive() and calls == []  # it cannot run the job while the lock is held
    lock.release()
    worker.join(timeout=60)
    assert not worker.is_alive() and calls == ["a/1"]

"""Faults on the production topology, as hosts (scripts/cluster.py): network
namespaces on a bridge, nginx as deploy/nginx.conf is written, Daphnes, Celery
workers and beats as Procfile.production starts them, a PostgreSQL cluster and a
redis-server of their own, a scripted upstream host.

- a worker host loses power mid-load: every run ends on the other host or fails in
  words within the sweeper's bound, none stuck, no text lost;
- a web host loses power: Chromium, through nginx, resumes from its last event id on
  the other web host;
- PostgreSQL restarts mid-load: the runs in flight end in words, new runs start;
- beat runs on two hosts: the schedule is sent once, and the standby takes over.

One cluster for the module (about 25 s to start); each test puts back what it broke.
Root only (namespaces): elsewhere they skip saying why, except on CI, where they fail.
"""

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, checked_page

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import cluster as topology  # noqa: E402  (scripts/cluster.py)

pytestmark = pytest.mark.cluster

# Short, so a lost worker is noticed in seconds: the sweeper runs every TTL / 3 and
# closes a run within 1⅓ TTL of its last heartbeat; a standby beat takes over within
# the lease.
TTL_S = 6
LEASE_S = 6
SWEEP_BOUND_S = TTL_S * 4 / 3 + LEASE_S + 3  # + the beat lease if its beat died; + slack
# Seats stream 3 s, the synthesizer 3 s: a run is in flight long enough to be hit.
SCRIPT = topology.Script(seat_chunks=30, synth_chunks=30, gap=0.1, seat_first=0.3)


@pytest.fixture(scope="module")
def cluster():
    reason = topology.unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the cluster tests must run on CI: {reason}")
        pytest.skip(f"no cluster here: {reason}")
    with topology.Cluster(
        script=SCRIPT,
        heartbeat_ttl_s=TTL_S,
        beat_lease_s=LEASE_S,
        worker_concurrency=20,
        logs_to=ARTIFACTS / "cluster",
        quiet=True,
    ) as running:
        yield running


def assert_every_run_ended_in_words(result: topology.LoadResult) -> None:
    assert not result.stuck, f"stuck runs: {topology.failures(result)}"
    assert not result.lost_text, "\n".join(result.lost_text)
    for run in result.runs:
        assert run["status"] in ("done", "failed"), run
        if run["status"] == "failed":
            assert len(run["detail"]) > 20, f"run {run['id']} failed without words: {run}"


def streaming_in_every_run(cluster, runs: int, since: int):
    """True once `runs` runs after `since` each have a seat answer that has begun."""

    def check() -> bool:
        rows = cluster.sql(
            "select a.run_id, a.id from chat_answer a join chat_run r on r.id = a.run_id "
            "where a.run_id > %s and a.role = 'seat' and r.status = 'panel'",
            (since,),
        )
        client = cluster.redis()
        # Its live text in Redis: the seat has streamed words (chat/engine/live.py).
        begun = {run for run, answer in rows if client.exists(f"fr:answer:{answer}:text")}
        return len(begun) >= runs

    return check


def last_run(cluster) -> int:
    return cluster.sql("select coalesce(max(id), 0) from chat_run")[0][0]


def test_beat_on_two_hosts_sends_the_schedule_once_and_the_standby_takes_over(cluster):
    interval = TTL_S / 3
    logs = {name: cluster.hosts[name].processes["beat"].log for name in topology.WORKER_HOSTS}
    sent = re.compile(r"Sending due task sweep-abandoned-runs")

    def sends() -> dict[str, int]:
        return {name: len(sent.findall(log.read_text())) for name, log in logs.items()}

    cluster.wait(lambda: sum(sends().values()) >= 2, "beat to send the sweeper twice", 30)
    first = sends()
    window_start = time.monotonic()
    cluster.wait(lambda: sum(sends().values()) >= sum(first.values()) + 4, "4 sweeps", 30)
    window = time.monotonic() - window_start
    now = sends()
    leaders = [name for name in now if now[name] > 0]
    assert len(leaders) == 1, f"both beats sent the sweeper: {now}"
    # Once per interval, not once per beat: at most one more than the window holds.
    added = sum(now.values()) - sum(first.values())
    assert added <= window / interval + 1, f"{added} sweeps in {window:.1f} s"
    # The workers ran each sweep once; each worker also sweeps once as it starts.
    ran = sum(
        len(re.findall(r"chat\.sweep_abandoned_runs\[[^\]]+\] succeeded", log.read_text()))
        for log in (cluster.hosts[n].processes["worker"].log for n in topology.WORKER_HOSTS)
    )
    started = len(topology.WORKER_HOSTS)
    assert ran <= sum(sends().values()) + started, "a sweep ran more often than beat sent it"

    # The sending beat dies outright: the other takes the lease within its TTL.
    leader = leaders[0]
    standby = next(name for name in logs if name != leader)
    beat = cluster.hosts[leader].processes.pop("beat")
    os.killpg(beat.popen.pid, signal.SIGKILL)
    beat.popen.wait(10)
    killed_at, before = time.monotonic(), sends()[standby]
    cluster.wait(
        lambda: sends()[standby] > before, "the standby beat to send", LEASE_S + interval + 5
    )
    assert time.monotonic() - killed_at <= LEASE_S + interval + 5
    # Started again, the first beat stands by: the schedule still goes out once.
    cluster.start_beat(leader, "beat-again")
    again = cluster.hosts[leader].processes["beat-again"].log
    before = sends()[standby]
    cluster.wait(lambda: sends()[standby] >= before + 3, "3 more sweeps", 30)
    assert not sent.search(again.read_text()), "the restarted beat sent while the other held"


def test_a_worker_host_killed_mid_load_leaves_no_run_stuck_and_no_text_lost(cluster):
    runs, since = 6, last_run(cluster)
    result = topology.run_load(
        cluster,
        runs,
        kill_when=streaming_in_every_run(cluster, runs, since),
        kill=lambda: cluster.kill_host("worker-1"),
        timeout_s=90,
    )
    try:
        assert result.killed == ["worker-1"], "the kill did not happen mid-load"
        assert_every_run_ended_in_words(result)
        failed = result.by_status("failed")
        assert failed, "no run was on the killed host: the test proved nothing"
        for run in failed:
            assert run["failure"] == "worker_lost", run
            assert "stopped before it finished" in run["detail"]
            assert run["finished"] - result.killed_wall <= SWEEP_BOUND_S, run
        # Each caller was told, in words, or got the whole answer.
        for request in result.requests:
            assert request.error or request.text == SCRIPT.synth_text(), request
        # The surviving host answers what comes next.
        after = topology.run_load(cluster, 2, timeout_s=60)
        assert [run["status"] for run in after.runs] == ["done", "done"], after.runs
        assert not after.lost_text
    finally:
        cluster.start_worker("worker-1")
        cluster.start_beat("worker-1")
        cluster.wait(lambda: cluster.worker_answers("worker-1"), "worker-1 again", 90)


def test_postgresql_restarted_mid_load_ends_runs_in_words_and_new_runs_start(cluster):
    runs, since = 4, last_run(cluster)

    def restart() -> None:
        cluster.stop_postgres()
        time.sleep(2)  # down for a while, as a restart on a real host is
        cluster.start_postgres()

    result = topology.run_load(
        cluster,
        runs,
        kill_when=streaming_in_every_run(cluster, runs, since),
        kill=restart,
        timeout_s=90,
    )
    assert result.killed_at_s is not None, "PostgreSQL was not restarted mid-load"
    assert_every_run_ended_in_words(result)
    assert len(result.runs) == runs
    after = topology.run_load(cluster, 2, timeout_s=60)
    assert [run["status"] for run in after.runs] == ["done", "done"], after.runs


@pytest.fixture
def tab(browser):
    """The refused connections while the page reconnects are expected console errors."""
    with checked_page(
        browser, expected_console_error="WebSocket connection to", ignore_https_errors=True
    ) as page:
        yield page


LIVE_TEXT = "document.querySelector('.answer .live-text')?.textContent || ''"
CONVERSATION = "document.querySelector('[data-conversation]').dataset"


@pytest.mark.browser
def test_a_web_host_killed_its_browser_resumes_on_the_other_through_nginx(cluster, tab):
    words = SCRIPT.story_words()
    tab.goto(f"{cluster.url}/accounts/login/")
    tab.fill("#id_username", cluster.site["username"])
    tab.fill("#id_password", cluster.site["password"])
    tab.click("button[type=submit]")
    tab.wait_for_url(re.compile(r"^(?!.*login).*$"))
    tab.goto(cluster.url + cluster.site["story_path"])
    tab.locator("[data-role=connection][data-state=open]").wait_for()
    tab.fill("#id_content", "Tell me a long story.")
    tab.click(".composer button[type=submit]")
    tab.wait_for_function(f"() => ({LIVE_TEXT}).length > 40")

    # The web host whose Daphne holds this page's websocket (its access log says).
    conversation = cluster.site["story_conversation"]
    wsconnect = f"WSCONNECT /ws/conversations/{conversation}/"
    serving = [
        name
        for name in topology.WEB_HOSTS
        if wsconnect in cluster.hosts[name].processes["daphne"].log.read_text()
    ]
    assert len(serving) == 1, f"the websocket's host is not known: {serving}"
    cluster.kill_host(serving[0])
    try:
        before = tab.evaluate(f"() => {LIVE_TEXT}")
        last_id = tab.evaluate("() => window.__frames.filter(f => f.event_id).at(-1).event_id")
        frames_before = tab.evaluate("() => window.__frames.length")
        snapshots_before = tab.evaluate(f"() => {CONVERSATION}.snapshots")
        assert "".join(words).startswith(before)

        tab.wait_for_function(f"() => {CONVERSATION}.resumes === '1'", timeout=30_000)
        assert tab.evaluate(f"() => {CONVERSATION}.resumedFrom") == last_id
        first = tab.evaluate(f"() => window.__frames[{frames_before}]")
        assert first == {"type": "resumed", "after": last_id}, "resumed with a snapshot"
        other = next(name for name in topology.WEB_HOSTS if name != serving[0])
        assert wsconnect in cluster.hosts[other].processes["daphne"].log.read_text()
        tab.wait_for_function(f"() => ({LIVE_TEXT}).length > {len(before)}")
        assert tab.evaluate(f"() => {CONVERSATION}.snapshots") == snapshots_before

        tab.locator(".answer[data-status=done]").wait_for(timeout=60_000)
        body = tab.locator(".answer [data-role=body]").inner_text()
        assert body.split() == "".join(words).split()
        seqs = tab.evaluate(
            "() => window.__frames.filter(f => f.type === 'answer.delta').map(f => f.seq)"
        )
        assert seqs == list(range(1, len(seqs) + 1)), "a delta doubled or skipped"
        tab.screenshot(path=str(ARTIFACTS / "cluster-resume-after-web-host-kill.png"))
    finally:
        cluster.start_web(serving[0])
        cluster.wait(lambda: cluster.web_answers(serving[0]), f"{serving[0]} again", 60)

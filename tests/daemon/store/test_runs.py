"""The run records both backends keep alike: interrupted runs, and the crash-loop count."""

import os

import pytest

from daemon.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "dropd.db")
    else:
        from daemon.store.postgres import PostgresStore

        server = request.getfixturevalue("postgresql")
        opened = PostgresStore(server.database(), server.password_file)
    yield opened
    opened.close()


def test_runs_cut_by_a_chosen_stop_are_told_apart_from_crashes(store):
    with store.transaction() as tx:
        mine = tx.runs.start("p", "a", "contacts", "arrival", "x.csv", "aa", instance="one", lease_until="9999")
        theirs = tx.runs.start("p", "b", "contacts", "arrival", "y.csv", "bb", instance="two", lease_until="2000")
    with store.transaction() as tx:
        assert tx.runs.fail_interrupted("one", cut_at_stop=True) == [(mine, "a"), (theirs, "b")]
        # One instance's chosen stop does not make another's expired run a chosen stop.
        assert tx.runs.get(mine).reason.startswith("cut-at-stop: ")
        assert tx.runs.get(theirs).reason.startswith("interrupted: ")


def test_interruptions_count_the_crashes_in_a_row_on_one_content(store):
    def run(sha256, reason, status="failed"):
        with store.transaction() as tx:
            run_id = tx.runs.start("p", "a", "contacts", "recovery", "x.csv", sha256)
            tx.runs.finish(run_id, status, reason)

    with store.transaction() as tx:
        assert tx.runs.interruptions("a", "aa") == 0
    run("aa", "interrupted: the daemon stopped")
    run("aa", "cut-at-stop: the daemon was stopped")
    run("bb", "interrupted: the daemon stopped")  # another content in between: not this one's
    run("aa", "interrupted: the daemon stopped")
    with store.reading() as tx:
        assert tx.runs.interruptions("a", "aa") == 2
        assert tx.runs.interruptions("a", "bb") == 1
        assert tx.runs.interruptions("other", "aa") == 0
    run("aa", None, "success")
    with store.reading() as tx:
        assert tx.runs.interruptions("a", "aa") == 0


def test_artefacts_older_than_keep_days_are_pruned_and_the_runs_kept(store, tmp_path):
    import datetime

    from daemon.artefacts import prune
    from daemon.clock import utc_now

    errors = tmp_path / "errors"
    errors.mkdir()
    with store.transaction() as tx:
        run_id = tx.runs.start("p", "a", "contacts", "arrival", "x.csv", "aa")
        error_file = errors / f"run-{run_id}-a.csv"
        error_file.write_text("row,code\n2,invalid-phone\n")
        tx.runs.add_errors(run_id, [(2, "invalid-phone", "complete", "not a phone")])
        tx.runs.finish(run_id, "success", None, 1, 0, 1, {}, str(error_file))
        tx.outbox.add("recap", "<m1@x>", run_id, ["a@example.org"], "recap", b"body with the error file")
        [queued] = tx.outbox.unsent()
        tx.outbox.sent(queued.id)
    orphan = errors / "run-999-dry.csv"
    orphan.write_text("left by a run cut short\n")
    old = (utc_now() - datetime.timedelta(days=100)).timestamp()
    os.utime(orphan, (old, old))
    now = utc_now()
    assert prune(store, errors, 90, now + datetime.timedelta(days=89)) == {"runs": 0, "files": 1, "mails": 0}
    assert error_file.exists() and not orphan.exists()
    assert prune(store, errors, 90, now + datetime.timedelta(days=91)) == {"runs": 1, "files": 1, "mails": 1}
    assert not error_file.exists()
    with store.reading() as tx:
        run = tx.runs.get(run_id)
        assert (run.status, run.rows_rejected, run.error_file) == ("success", 1, None)
        mail = tx.outbox.get(queued.id)
        assert (mail.status, mail.message, mail.subject) == ("sent", b"", "recap")
    assert prune(store, errors, 90, now + datetime.timedelta(days=92)) == {"runs": 0, "files": 0, "mails": 0}

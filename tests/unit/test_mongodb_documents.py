"""The MongoDB store's documents, filters and updates, its URL handling and error mapping.

No MongoDB server runs here: these tests check the documents the store would send and
how it reads documents back, not what a server does with them (the contract suite does,
with ``BACKBEAT_MONGODB_URL``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

pytest.importorskip("pymongo")

from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DuplicateKeyError,
    InvalidURI,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WTimeoutError,
)

from backbeat.api.config import MongoJobStoreConfig, build_store, store_config_from_settings
from backbeat.errors import ConfigurationError, CorruptRecordError, StoreError, StoreUnavailableError
from backbeat.model.records import DeadLetter, Run, RunOutcome, RunResult, Task, TaskFilter, TaskOptions
from backbeat.stores import store_from_url
from backbeat.stores.mongodb import MongoStore
from backbeat.stores.mongodb import documents as d
from backbeat.stores.mongodb.connection import parse_url
from backbeat.stores.mongodb.errors import (
    duplicate_indexes,
    is_duplicate_key,
    map_error,
    redact,
    refused_indexes,
)
from backbeat.stores.mongodb.indexes import Names
from backbeat.stores.mongodb.wakeups import unsupported

T0 = datetime(2024, 1, 1, 12, 0, 0, 123457, tzinfo=UTC)
NOW = d.to_us(T0)


def a_task(**fields: object) -> Task:
    base: dict[str, object] = {
        "id": "t1",
        "name": "reminder",
        "job": "tests:job",
        "trigger": {"type": "interval", "seconds": 60},
        "next_run_time": T0,
        "tags": ("order", "A-1"),
        "options": TaskOptions(max_instances=3),
        "created_at": T0,
    }
    return Task(**{**base, **fields})  # type: ignore[arg-type]


def a_result(**fields: object) -> RunResult:
    run = Run(id="t1@x", task_id="t1", fire_time=T0, owner="w1", lease_until=T0)
    base: dict[str, object] = {"run": run, "outcome": RunOutcome.SUCCESS, "finished_at": T0}
    return RunResult(**{**base, **fields})  # type: ignore[arg-type]


# -- times ---------------------------------------------------------------------------------


def test_times_are_exact_epoch_microseconds() -> None:
    assert d.from_us(d.to_us(T0)) == T0
    assert d.to_us(T0.replace(tzinfo=None)) == NOW
    assert d.opt_us(None) is None
    with pytest.raises(TypeError):
        d.from_us("1700000000000000")  # type: ignore[arg-type]


# -- task documents ------------------------------------------------------------------------


def test_a_task_document_round_trips_and_keeps_its_json_as_a_string() -> None:
    task = a_task(
        kwargs={"$where": 1, "a.b": 2**63 + 5}, running=1, runs=4, failures=2, last_outcome="failure"
    )
    doc = d.task_document(task)
    assert doc["_id"] == "t1" and isinstance(doc["doc"], str)
    assert (doc["next"], doc["max_instances"], doc["tags"]) == (NOW, 3, ["order", "A-1"])
    assert (doc["paused"], doc["orphaned"], doc["claimed_by"], doc["quarantine"]) == (
        False,
        False,
        None,
        None,
    )
    back = d.task_from_document(doc)
    assert back == task, "keys with $ and . and integers beyond BSON's int64 survive: user data is never BSON"


def test_live_fields_win_over_the_copy_in_the_json() -> None:
    doc = d.task_document(a_task())
    doc.update(next=NOW + 60_000_000, version=7, running=2, runs=9, failures=1, last_run_at=NOW)
    doc["last_outcome"] = "success"
    task = d.task_from_document(doc)
    assert (task.next_run_time, task.version, task.running, task.runs, task.failures) == (
        T0 + timedelta(minutes=1),
        7,
        2,
        9,
        1,
    )
    assert (task.last_run_at, task.last_outcome) == (T0, "success")


@pytest.mark.parametrize(
    "change",
    [
        {"doc": "{not json"},
        {"doc": '{"id": "t1"}'},
        {"doc": {"id": "t1"}},
        {"running": "2"},
        {"next": "2024-01-01"},
        {"_id": "other"},
    ],
)
def test_an_undecodable_task_document_raises_corrupt_record(change: dict[str, object]) -> None:
    doc = {**d.task_document(a_task()), **change}
    with pytest.raises(CorruptRecordError):
        d.task_from_document(doc)


def test_quarantine_marks_the_record_as_read_and_drops_its_claim() -> None:
    doc = {**d.task_document(a_task()), "doc": "{not json"}
    assert d.quarantine_filter(doc) == {"_id": "t1", "doc": "{not json"}
    assert d.quarantine_filter({"_id": "t1"}) == {"_id": "t1", "doc": {"$exists": False}}
    update = d.quarantine_update("bad JSON")
    assert update == {
        "$set": {"quarantine": {"error": "bad JSON"}, "claimed_by": None, "claim_until": None, "token": None}
    }
    assert "$unset" not in update and "doc" not in update["$set"], "a quarantined record is kept as it was"
    assert d.raw_of(doc) == "{not json"
    assert d.raw_of({"_id": "x", "doc": {"id": "x"}}) == '{"id":"x"}'


def test_replace_keeps_live_counters_and_the_claim_and_bumps_the_version() -> None:
    [stage] = d.replace_pipeline(a_task(version=0, name="$name"))
    fields = stage["$set"]
    assert fields["name"] == {"$literal": "$name"}, "values are literals, never field paths"
    assert fields["running"] == {"$ifNull": ["$running", {"$literal": 0}]}
    assert fields["claimed_by"] == {"$ifNull": ["$claimed_by", {"$literal": None}]}
    assert fields["version"] == {"$max": [{"$add": [{"$ifNull": ["$version", -1]}, 1]}, {"$literal": 0}]}
    assert fields["quarantine"] == {"$literal": None}


def test_update_sets_next_run_time_only_when_the_user_changed_it() -> None:
    task = a_task(version=3, paused=True)
    assert "next" not in d.update_set(task, next_changed=False)
    changed = d.update_set(task, next_changed=True)
    assert (changed["next"], changed["version"], changed["paused"]) == (NOW, 3, True)
    for live in ("running", "runs", "failures", "last_run_at", "last_outcome", "claimed_by"):
        assert live not in changed, f"{live} is changed by claims and completions only"


def test_list_filter_pushes_the_task_filter_into_the_query() -> None:
    assert d.list_filter(None, None) == {"quarantine": None}
    query = d.list_filter(TaskFilter(tag="x", name="n", job="j", paused=False, orphaned=True), "t3")
    assert query == {
        "quarantine": None,
        "_id": {"$gt": "t3"},
        "tags": "x",
        "name": "n",
        "job": "j",
        "paused": False,
        "orphaned": True,
    }


# -- claims ----------------------------------------------------------------------------------


def test_the_claim_filter_takes_only_due_schedulable_unclaimed_tasks() -> None:
    query = d.due_filter(NOW)
    assert query["next"] == {"$lte": NOW}, "due by the caller's clock (a null next run time never is)"
    assert (query["paused"], query["orphaned"], query["quarantine"]) == (False, False, None)
    assert query["$or"] == [
        {"claimed_by": None},
        {"$expr": {"$lte": ["$claim_until", d.SERVER_NOW]}},
    ], "unclaimed or claim ended by the server's clock"


def test_the_server_clock_is_now_in_microseconds() -> None:
    assert d.SERVER_NOW == {"$multiply": [{"$toLong": "$$NOW"}, 1000]}
    assert d.server_until(10) == {"$add": [d.SERVER_NOW, {"$literal": 10}]}


def test_a_task_claim_is_a_compare_and_set_on_what_was_read() -> None:
    query = d.claim_task_filter("t1", "old-token", NOW)
    assert (query["_id"], query["token"]) == ("t1", "old-token")
    assert {k: v for k, v in query.items() if k not in ("_id", "token")} == d.due_filter(NOW)
    assert d.claim_task_update("w1", 10, "new") == [
        {
            "$set": {
                "claimed_by": {"$literal": "w1"},
                "claim_until": d.server_until(10),
                "token": {"$literal": "new"},
            }
        }
    ]


def test_a_run_claim_matches_owner_token_and_an_ended_lease() -> None:
    seen = {"_id": "r", "owner": "dead", "token": "t0"}
    assert d.claim_run_filter("r", seen, NOW) == {
        "_id": "r",
        "owner": "dead",
        "token": "t0",
        "$expr": {"$lte": ["$lease_until", d.SERVER_NOW]},  # a lease ends by the server's clock
        "quarantine": None,
    }
    waiting = {"_id": "r", "owner": None, "token": None}
    assert d.claim_run_filter("r", waiting, NOW) == {
        "_id": "r",
        "owner": None,
        "token": None,
        "lease_until": {"$lte": NOW},  # a waiting run by the caller's
        "quarantine": None,
    }
    [recovered] = d.claim_run_update("w2", 10, "t1", 7, recovered=True)
    assert recovered == {
        "$set": {
            "owner": {"$literal": "w2"},
            "lease_until": d.server_until(10),
            "token": {"$literal": "t1"},
            "attempt": {"$add": ["$attempt", 1]},
            "fencing": {"$max": [{"$add": [{"$ifNull": ["$fencing", 0]}, 1]}, {"$literal": 7}]},
        }
    }
    [fresh] = d.claim_run_update("w2", 10, "t1", 7, recovered=False)
    assert fresh["$set"]["attempt"] == {"$add": ["$attempt", 0]}


def test_claimable_runs_are_waiting_ones_due_by_now_or_leased_ones_ended_by_the_server() -> None:
    assert d.claimable_runs_filter(NOW) == {
        "$or": [
            {"owner": None, "lease_until": {"$lte": NOW}},
            {"owner": {"$ne": None}, "$expr": {"$lte": ["$lease_until", d.SERVER_NOW]}},
        ],
        "quarantine": None,
    }


def test_a_fired_run_is_upserted_with_a_lease_by_the_server_clock_and_extended_so() -> None:
    run = Run(id="t1@x", task_id="t1", fire_time=T0, owner="w1", lease_until=T0)
    [stage] = d.leased_run_upsert(run, "tok", 10)
    assert stage["$set"]["lease_until"] == d.server_until(10)
    assert stage["$set"]["owner"] == {"$literal": "w1"} and "_id" not in stage["$set"]
    assert stage["$set"]["fire_time"] == {"$literal": T0.isoformat()}
    assert d.extend_update(10) == [{"$set": {"lease_until": d.server_until(10)}}]


# -- fire ------------------------------------------------------------------------------------


def test_fire_admits_runs_only_below_max_instances_and_keeps_a_newer_user_change() -> None:
    [stage] = d.fire_pipeline("w1", 3, 5, NOW, None)
    fields = stage["$set"]
    mine = {"$eq": ["$claimed_by", {"$literal": "w1"}]}
    room = {"$max": [0, {"$min": [{"$literal": 3}, {"$subtract": ["$max_instances", "$running"]}]}]}
    assert fields["running"] == {"$add": ["$running", room]}
    assert fields["next"] == {
        "$cond": [{"$and": [mine, {"$eq": ["$version", {"$literal": 5}]}]}, {"$literal": NOW}, "$next"]
    }
    assert fields["claimed_by"] == {"$cond": [mine, None, "$claimed_by"]}


@pytest.mark.parametrize(
    ("running", "max_instances", "created", "admitted"),
    [(0, 1, 1, 1), (1, 1, 1, 0), (0, 2, 3, 2), (3, 2, 1, 0), (0, 5, 0, 0)],
)
def test_granted_matches_the_pipeline(running: int, max_instances: int, created: int, admitted: int) -> None:
    assert d.granted({"running": running, "max_instances": max_instances}, created, None) == admitted


@pytest.mark.parametrize(
    ("overlap", "running", "created", "admitted"),
    [
        ("skip", 0, 2, 1),
        ("skip", 1, 1, 0),
        ("buffer_one", 1, 3, 1),
        ("buffer_one", 2, 1, 0),
        ("buffer_all", 1, 3, 3),
    ],
)
def test_one_at_a_time_policies_cap_runs_at_one_plus_their_buffer(
    overlap: str, running: int, created: int, admitted: int
) -> None:
    cap = d.run_cap(overlap)
    assert d.granted({"running": running, "max_instances": 1}, created, cap) == admitted
    [stage] = d.fire_pipeline("w1", created, 5, NOW, cap)
    room = {"$max": [0, {"$min": [{"$literal": created}, {"$subtract": [{"$literal": cap}, "$running"]}]}]}
    assert stage["$set"]["running"] == {"$add": ["$running", room]}
    assert d.run_cap("allow_all") is None


def test_a_task_is_removed_only_with_no_runs_no_next_time_and_no_claim() -> None:
    assert d.finished_filter("t1") == {
        "_id": "t1",
        "running": {"$lte": 0},
        "next": None,
        "claimed_by": None,
        "quarantine": None,
    }
    assert d.is_finished({"running": 0, "next": None, "claimed_by": None})
    assert not d.is_finished({"running": 1, "next": None, "claimed_by": None}), (
        "a one-shot's run is in flight"
    )
    assert not d.is_finished({"running": 0, "next": NOW, "claimed_by": None})
    assert not d.is_finished({"running": 0, "next": None, "claimed_by": "w1"})
    assert not d.is_finished({"running": 0, "next": None, "claimed_by": None, "quarantine": {"error": "x"}})


def test_reserving_a_run_is_a_conditional_increment() -> None:
    assert d.reserve_filter("t1") == {
        "_id": "t1",
        "quarantine": None,
        "$expr": {"$lt": ["$running", "$max_instances"]},
    }
    assert d.RESERVE == {"$inc": {"running": 1}}


# -- completion ------------------------------------------------------------------------------


def test_complete_decrements_running_never_below_zero_and_counts_the_outcome() -> None:
    [stage] = d.complete_pipeline(a_result(outcome=RunOutcome.FAILURE))
    fields = stage["$set"]
    assert fields["running"] == {"$max": [0, {"$subtract": ["$running", 1]}]}
    assert (fields["runs"], fields["failures"]) == ({"$add": ["$runs", 1]}, {"$add": ["$failures", 1]})
    assert (fields["last_outcome"], fields["last_run_at"]) == ({"$literal": "failure"}, {"$literal": NOW})
    [ok] = d.complete_pipeline(a_result())
    assert ok["$set"]["failures"] == {"$add": ["$failures", 0]}


def test_a_requeued_run_keeps_its_count_and_waits_with_the_next_attempt() -> None:
    retry = a_result(outcome=RunOutcome.FAILURE, retry_at=T0 + timedelta(seconds=5))
    assert d.complete_pipeline(retry)[0]["$set"]["running"] == "$running"
    assert d.requeue_update(retry) == {
        "$set": {"owner": None, "lease_until": NOW + 5_000_000, "token": None},
        "$inc": {"attempt": 1},
    }
    deferred = a_result(outcome=RunOutcome.DEFERRED, retry_at=T0)
    assert d.requeue_update(deferred)["$inc"] == {"attempt": 0}, "a deferral keeps its attempt"


def test_release_makes_runs_waiting_with_the_next_attempt() -> None:
    assert d.release_runs_update(NOW) == {
        "$set": {"owner": None, "lease_until": NOW, "token": None},
        "$inc": {"attempt": 1},
    }
    assert d.owned_runs_filter(["a"], "w1") == {"_id": {"$in": ["a"]}, "owner": "w1"}
    assert d.DROP_CLAIM == {"$set": {"claimed_by": None, "claim_until": None, "token": None}}


def test_next_wakeup_reads_unclaimed_next_times_and_claim_ends_apart() -> None:
    assert d.next_task_filter(claimed=False)["claimed_by"] is None
    assert d.next_task_filter(claimed=True)["claimed_by"] == {"$ne": None}
    assert d.next_task_filter(claimed=True)["quarantine"] is None


# -- runs, dead letters, state ---------------------------------------------------------------


def test_a_run_document_round_trips() -> None:
    run = Run(id="t1@x", task_id="t1", fire_time=T0, attempt=2, owner="w1", lease_until=T0)
    doc = d.run_document(run, "tok")
    assert (doc["lease_until"], doc["token"], doc["fire_time"]) == (NOW, "tok", T0.isoformat())
    assert d.run_from_document(doc) == run
    with pytest.raises(CorruptRecordError):
        d.run_from_document({**doc, "attempt": "2"})


def test_a_dead_letter_round_trips_with_its_task_snapshot() -> None:
    letter = DeadLetter.of(a_result(outcome=RunOutcome.FAILURE, error="ValueError: x"), a_task())
    doc = d.dead_letter_document(letter)
    assert (doc["_id"], doc["task_id"], doc["failed_at"]) == ("t1@x", "t1", NOW)
    assert d.dead_letter_from_document(doc) == letter
    with pytest.raises(CorruptRecordError):
        d.dead_letter_from_document({**doc, "doc": "[1]"})


def test_a_state_document_keeps_its_value_as_json() -> None:
    doc = d.state_document("breaker:x", {"$state": "open"}, 2)
    assert doc == {"_id": "breaker:x", "value": orjson.dumps({"$state": "open"}).decode(), "version": 2}


# -- URLs, names and configuration ---------------------------------------------------------


def test_a_url_names_database_and_collection_and_keeps_driver_options() -> None:
    parsed = parse_url("mongodb://u:p%40ss@h1:27017,h2/jobs?authSource=admin&collection=bg&replicaSet=rs")
    assert parsed.client_url == "mongodb://u:p%40ss@h1:27017,h2/jobs?authSource=admin&replicaSet=rs"
    assert (parsed.database, parsed.collection) == ("jobs", "bg")
    assert set(parsed.secrets) == {"p%40ss", "p@ss"}
    assert parse_url("mongodb+srv://cluster.example.net").database is None
    with pytest.raises(ConfigurationError):
        parse_url("redis://localhost")


def test_collections_are_derived_from_the_configured_name() -> None:
    names = Names("background_jobs")
    assert (names.tasks, names.runs, names.dead_letters, names.state) == (
        "background_jobs",
        "background_jobs.runs",
        "background_jobs.dead_letters",
        "background_jobs.state",
    )
    for bad in ("", "a$b", "system.x"):
        with pytest.raises(ConfigurationError):
            Names(bad)


def test_store_from_url_makes_a_mongo_store_without_connecting() -> None:
    store = store_from_url("mongodb://user:s3cret@db.example:27017/app?collection=jobs")
    assert isinstance(store, MongoStore)
    assert (store.database, store.collection) == ("app", "jobs")
    assert "s3cret" not in repr(store)
    srv = store_from_url("mongodb+srv://cluster.example.net/")
    assert isinstance(srv, MongoStore) and (srv.database, srv.collection) == ("backbeat", "background_jobs")


def test_seed_000_settings_make_a_mongo_store() -> None:
    settings = {
        "mongo_uri": "mongodb://root:pass@mongodb:27017/?authSource=admin",  # pragma: allowlist secret
        "mongo_db": "cml_cloud_manager",
        "mongo_collection": "background_jobs",
    }
    config = store_config_from_settings(settings)
    assert isinstance(config, MongoJobStoreConfig)
    store = build_store(config)
    assert isinstance(store, MongoStore)
    assert (store.database, store.collection) == ("cml_cloud_manager", "background_jobs")


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        AutoReconnect("connection closed"),
        NetworkTimeout("timed out"),
        NotPrimaryError("not primary"),
        ServerSelectionTimeoutError("db.example:27017: [Errno 111] Connection refused"),
        WTimeoutError("waiting for replication timed out", 64),
    ],
)
def test_unreachable_or_timed_out_servers_are_unavailable(exc: Exception) -> None:
    mapped = map_error(exc, "mongodb://db.example:27017/")
    assert isinstance(mapped, StoreUnavailableError)
    assert "db.example" in str(mapped)


def test_other_driver_errors_are_store_errors_without_credentials() -> None:
    failure = OperationFailure("Authentication failed for mongodb://admin:hunter2@db/", 18)
    mapped = map_error(failure, redact("mongodb://admin:hunter2@db/"), secrets=("hunter2",))
    assert type(mapped) is StoreError
    assert "hunter2" not in str(mapped) and "admin" not in str(mapped)
    refused = map_error(OperationFailure("unknown operator: $foo", 2), "db")
    assert type(refused) is StoreError and "unknown operator" in str(refused)
    bad_uri = map_error(InvalidURI("bad port in mongodb://u:pw@h:x"), "h", secrets=("pw",))
    assert isinstance(bad_uri, ConfigurationError) and "pw" not in str(bad_uri)


def test_redact_masks_user_info() -> None:
    assert redact("mongodb+srv://me:pw@cluster.example.net/db") == "mongodb+srv://***@cluster.example.net/db"
    assert redact("mongodb://h1,h2/db") == "mongodb://h1,h2/db"


def test_duplicate_keys_are_recognized_in_single_and_bulk_writes() -> None:
    assert is_duplicate_key(DuplicateKeyError("E11000 duplicate key", 11000))
    bulk = BulkWriteError(
        {
            "writeErrors": [{"index": 1, "code": 11000, "errmsg": "dup"}, {"index": 3, "code": 11000}],
            "writeConcernErrors": [],
            "nInserted": 2,
        }
    )
    assert is_duplicate_key(bulk) and duplicate_indexes(bulk) == {1, 3}
    other = BulkWriteError({"writeErrors": [{"index": 0, "code": 121, "errmsg": "validation"}]})
    assert not is_duplicate_key(other)


def test_the_documents_a_bulk_write_refused_are_known_whatever_the_reason() -> None:
    # an unordered insert wrote every other document: the store undoes those (all or nothing)
    bulk = BulkWriteError({"writeErrors": [{"index": 1, "code": 11000}, {"index": 2, "code": 10334}]})
    assert refused_indexes(bulk) == {1, 2} and duplicate_indexes(bulk) == {1}


def test_a_standalone_server_refusing_change_streams_is_recognized() -> None:
    assert unsupported(OperationFailure("The $changeStream stage is only supported on replica sets", 40573))
    assert not unsupported(OperationFailure("not authorized", 13))
    assert not unsupported(AutoReconnect("closed"))


# -- an unreachable server (a real client, a closed port: no server is needed) ---------------


async def test_an_unreachable_server_raises_store_unavailable_without_the_password() -> None:
    store = MongoStore("mongodb://user:hunter2@127.0.0.1:1/app", serverSelectionTimeoutMS=200)
    with pytest.raises(StoreUnavailableError) as raised:
        await store.open()
    assert "hunter2" not in str(raised.value) and "127.0.0.1:1" in str(raised.value)
    with pytest.raises(StoreUnavailableError):
        await store.get("t1")
    await store.close()


async def test_wakeups_end_when_the_store_closes_even_without_a_server() -> None:
    store = MongoStore("mongodb://127.0.0.1:1/app", serverSelectionTimeoutMS=200)
    iterator = store.wakeups()
    pending = asyncio.ensure_future(anext(iterator))
    await asyncio.sleep(0.3)
    assert not pending.done(), "an unreachable server is retried, never raised"
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)

"""Keyspaces seeded the way job queues and session stores lay them out (their documentation).

Celery/kombu: https://docs.celeryq.dev (Redis broker; kombu's redis transport keeps
a list per queue, ``_kombu.binding.<exchange>`` sets, ``unacked`` hash,
``unacked_index`` sorted set, ``unacked_mutex``; the Redis result backend writes
``celery-task-meta-<id>`` with ``result_expires``, 1 day by default).
RQ: https://python-rq.org/docs/ (``rq:queue:<name>`` list of ids, ``rq:job:<id>``
hash, registries ``rq:wip|finished|failed:<queue>`` sorted sets, ``rq:results:<id>``
streams, ``rq:queues``/``rq:workers`` sets, ``rq:worker:<name>`` hashes).
BullMQ: https://docs.bullmq.io (``bull:<queue>:wait``/``active`` lists, ``delayed``/
``completed``/``failed`` sorted sets, ``meta`` hash, ``id`` counter, ``events``
stream, a hash per job ``bull:<queue>:<id>``, ``bull:<queue>:<id>:logs``).
Sidekiq: https://github.com/sidekiq/sidekiq/wiki (``queues`` set, ``queue:<name>``
lists of JSON, ``schedule``/``retry``/``dead`` sorted sets, ``processes`` set, a hash
per process ``<host>:<pid>:<nonce>`` and its ``:work``, ``stat:processed``/
``stat:failed`` and their daily copies).
Dramatiq: its RedisBroker (``dramatiq:<queue>`` list of ids, ``<queue>.msgs`` hash,
``<queue>.XQ`` dead letters, ``__acks__.<worker>.<queue>`` sets, ``__heartbeats__``).
arq: https://arq-docs.helpmanual.io (``arq:queue`` sorted set, ``arq:job:<id>``,
``arq:result:<id>``, ``arq:in-progress:<id>``).
Sessions: Django's cache engine (``:1:django.contrib.sessions.cache<key>``) and
cached_db engine, Flask-Session (``session:<sid>``), connect-redis (``sess:<sid>``),
redis-session-store for Rails (``_session_id:2::<hash>``), rack (``rack:session:<id>``).
"""

from __future__ import annotations

import json
import secrets
import uuid

import redis

DAY = 86_400


def _msg(**body: object) -> str:
    return json.dumps(body)


def seed_celery(c: redis.Redis) -> None:
    for queue in ("celery", "emails"):
        c.sadd(f"_kombu.binding.{queue}", f"{queue}\x06\x16\x06\x16{queue}")
        for _ in range(5):
            c.lpush(queue, _msg(headers={"id": str(uuid.uuid4()), "task": "app.send"}, body="e30="))
    c.sadd("_kombu.binding.celery.pidbox", "\x06\x16\x06\x16celery@host.celery.pidbox")
    c.sadd("_kombu.binding.celeryev", "worker.#\x06\x16\x06\x16celeryev.abc")
    for tag in range(3):
        c.hset("unacked", str(uuid.uuid4()), _msg(body="e30=", exchange="", routing_key="celery"))
        c.zadd("unacked_index", {str(uuid.uuid4()): 1_700_000_000 + tag})
    c.set("unacked_mutex", "1", ex=300)
    for _ in range(10):
        c.set(f"celery-task-meta-{uuid.uuid4()}", _msg(status="SUCCESS", result=4), ex=DAY)


def seed_rq(c: redis.Redis) -> None:
    ids = [str(uuid.uuid4()) for _ in range(10)]
    c.sadd("rq:queues", "rq:queue:default")
    c.rpush("rq:queue:default", *ids[:5])
    for job_id in ids:
        c.hset(f"rq:job:{job_id}", mapping={"status": "queued", "origin": "default", "data": "x"})
    c.zadd("rq:wip:default", {ids[5]: 1_700_000_100})
    c.zadd("rq:finished:default", {ids[6]: 1_700_000_200})
    c.zadd("rq:failed:default", {ids[7]: 1_700_000_300})
    c.xadd(f"rq:results:{ids[6]}", {"type": "1", "return_value": "e30="})
    c.sadd("rq:workers", "rq:worker:host.123")
    c.sadd("rq:workers:default", "rq:worker:host.123")
    c.hset("rq:worker:host.123", mapping={"state": "busy", "queues": "default"})


def seed_bullmq(c: redis.Redis) -> None:
    base = "bull:emails"
    c.hset(f"{base}:meta", mapping={"opts.maxLenEvents": "10000", "version": "bullmq:5.0.0"})
    c.set(f"{base}:id", "20")
    c.rpush(f"{base}:wait", *[str(i) for i in range(1, 6)])
    c.rpush(f"{base}:active", "6")
    c.zadd(f"{base}:delayed", {"7": 1_700_000_000})
    c.zadd(f"{base}:completed", {"8": 1_700_000_000})
    c.zadd(f"{base}:failed", {"9": 1_700_000_000})
    c.xadd(f"{base}:events", {"event": "added", "jobId": "5"})
    for i in range(1, 10):
        c.hset(f"{base}:{i}", mapping={"name": "send", "data": "{}", "timestamp": "1700000000"})
    c.rpush(f"{base}:9:logs", "retrying")


def seed_sidekiq(c: redis.Redis) -> None:
    c.sadd("queues", "default")
    for i in range(5):
        c.lpush("queue:default", _msg(**{"class": "HardWorker", "jid": secrets.token_hex(12),
                                         "args": [i], "queue": "default"}))  # fmt: skip
    c.zadd("schedule", {_msg(jid=secrets.token_hex(12)): 1_700_000_000})
    c.zadd("retry", {_msg(jid=secrets.token_hex(12), retry_count=1): 1_700_000_000})
    c.zadd("dead", {_msg(jid=secrets.token_hex(12)): 1_700_000_000})
    process = f"web-1:1234:{secrets.token_hex(6)}"
    c.sadd("processes", process)
    c.hset(process, mapping={"busy": "0", "beat": "1700000000"})
    c.expire(process, 60)
    c.hset(f"{process}:work", "tid", _msg(queue="default"))
    c.expire(f"{process}:work", 60)
    c.set("stat:processed", "1000")
    c.set("stat:failed", "3")
    c.set("stat:processed:2026-12-02", "100", ex=5 * 365 * DAY)


def seed_dramatiq(c: redis.Redis) -> None:
    for _ in range(3):
        mid = str(uuid.uuid4())
        c.rpush("dramatiq:default", mid)
        c.hset("dramatiq:default.msgs", mid, _msg(queue_name="default", actor_name="send"))
    c.zadd("dramatiq:default.XQ", {str(uuid.uuid4()): 1_700_000_000})
    c.zadd("dramatiq:__heartbeats__", {str(uuid.uuid4()): 1_700_000_000})
    c.sadd(f"dramatiq:__acks__.{uuid.uuid4()}.default", str(uuid.uuid4()))


def seed_arq(c: redis.Redis) -> None:
    for _ in range(3):
        job = uuid.uuid4().hex
        c.zadd("arq:queue", {job: 1_700_000_000_000})
        c.set(f"arq:job:{job}", b"\x80pickled-job", px=DAY * 1000)
    done = uuid.uuid4().hex
    c.set(f"arq:result:{done}", b"\x80pickled-result", ex=DAY)
    c.set(f"arq:in-progress:{uuid.uuid4().hex}", b"1", px=300_000)


def seed_sessions(c: redis.Redis) -> None:
    for _ in range(5):
        c.set(f":1:django.contrib.sessions.cache{secrets.token_hex(16)}", "e30=", ex=1209600)
        c.set(f":1:django.contrib.sessions.cached_db{secrets.token_hex(16)}", "e30=", ex=1209600)
        c.set(f"session:{secrets.token_urlsafe(32)}", b"\x80flask", ex=DAY)
        c.set(f"sess:{secrets.token_urlsafe(24)}", '{"cookie":{}}', ex=DAY)
        c.set(f"_session_id:2::{secrets.token_hex(32)}", b"\x04\x08rails", ex=DAY)
        c.set(f"rack:session:{secrets.token_hex(32)}", b"\x04\x08rack", ex=DAY)


def seed_all(c: redis.Redis) -> None:
    for seed in (seed_celery, seed_rq, seed_bullmq, seed_sidekiq, seed_dramatiq, seed_arq,
                 seed_sessions):  # fmt: skip
        seed(c)


EXPECTED: set[tuple[str, str]] = {
    ("job-queue", "celery"),
    ("job-queue", "emails"),
    ("job-queue", "unacked"),
    ("job-queue", "celery-task-meta-*"),
    ("job-queue", "rq:queue:default"),
    ("job-queue", "rq:job:*"),
    ("job-queue", "rq:wip:default"),
    ("job-queue", "rq:finished:default"),
    ("job-queue", "rq:failed:default"),
    ("job-queue", "rq:results:*"),
    ("job-queue", "bull:emails:wait"),
    ("job-queue", "bull:emails:active"),
    ("job-queue", "bull:emails:delayed"),
    ("job-queue", "bull:emails:completed"),
    ("job-queue", "bull:emails:failed"),
    ("job-queue", "bull:emails:*"),
    ("job-queue", "queue:default"),
    ("job-queue", "schedule"),
    ("job-queue", "retry"),
    ("job-queue", "dead"),
    ("job-queue", "stat:processed"),
    ("job-queue", "stat:failed"),
    ("job-queue", "stat:processed:*"),
    ("job-queue", "dramatiq:default"),
    ("job-queue", "dramatiq:default.msgs"),
    ("job-queue", "dramatiq:default.XQ"),
    ("job-queue", "arq:queue"),
    ("job-queue", "arq:job:*"),
    ("job-queue", "arq:result:*"),
    ("session-store", "*django.contrib.sessions.cache*"),
    ("session-store", "session:*"),
    ("session-store", "sess:*"),
    ("session-store", "_session_id:*::*"),
    ("session-store", "rack:session:*"),
}

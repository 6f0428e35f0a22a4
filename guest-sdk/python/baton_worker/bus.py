"""Serve the registered commands over Baton's Redis Streams bus (docs/PROTOCOL.md).

::

    python -m baton_worker.bus --module app --redis redis://127.0.0.1:6379 --prefix baton

or, from Python, ``baton_worker.bus.run(url=..., prefix=..., group=..., consumer=...)``.

What it does, in the protocol's terms:

- joins the consumer group (``workers`` by default, the group Baton's own worker pools use)
  of each registered command's stream ``<prefix>:cmd:<command>``, creating it from the
  stream's start when missing, so commands sent before any worker ran are served;
- every half visibility timeout, claims the entries another consumer of the group left
  pending longer than the visibility timeout (``XAUTOCLAIM``: that consumer died), then
  reads new entries (``XREADGROUP ... >``), one command at a time;
- answers each from its record, with ``expired`` when it arrives past its ``start_by`` or
  ``deadline`` (the handler does not run), or by running the handler once
  (:func:`baton_worker.runner.answer`);
- records the outcome first, then adds the result to ``<prefix>:results`` and acknowledges
  and deletes the command entry, all three in one ``MULTI``: a command is acknowledged only
  once its result is out, and a crash before that leaves it pending for another worker;
- when Redis goes away, keeps the result in hand and reconnects with backoff (0.1 s doubling
  to 5 s), recreating the groups a Redis that lost its data no longer has;
- on SIGTERM or SIGINT, finishes the command in hand, sends its result, and returns 0.

One command at a time per process: run several processes (each its own ``--consumer``, the
same ``--group``) to serve more at once.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import Any, Optional, Sequence, Tuple

import redis

from . import protocol, runner
from .handlers import Registry
from .handlers import registry as default_registry
from .record import open_record

log = logging.getLogger("baton_worker")

#: The group Baton's own worker pools read command streams with.
DEFAULT_GROUP = "workers"
#: The stream entry field that holds the event's JSON.
FIELD = "event"
#: Longest wait between two tries to reach Redis.
MAX_BACKOFF = 5.0
#: How long a stop waits for Redis to take the result in hand before giving up on it (the
#: command then stays pending, and another worker answers it, from the record if it shares it).
DRAIN = 10.0


def redact(url: str) -> str:
    """``url`` with its password, if any, as ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


Entry = Tuple[str, str, Optional[dict]]


class Worker:
    """One consumer of the command streams of a registry's commands (see the module)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        group: str,
        consumer: str,
        registry: Registry,
        record: Any,
        visibility_timeout: float,
        block: float,
        source: str,
        stop: threading.Event,
    ) -> None:
        if not len(registry):
            raise ValueError(
                "no command is registered: decorate functions with @baton_worker.command(NAME) before serving"
            )
        if visibility_timeout <= 0 or block <= 0:
            raise ValueError("visibility_timeout and block are seconds, more than 0")
        self.url, self.prefix, self.group, self.consumer = url, prefix, group, consumer
        self.registry, self.record, self.source, self.stop = registry, record, source, stop
        self.visibility_ms = int(visibility_timeout * 1000)
        self.block_ms = max(1, int(block * 1000))
        self.streams = [f"{prefix}:cmd:{name}" for name in registry.names()]
        self.results = f"{prefix}:results"
        #: A result not yet sent, with the entry it answers: (stream, entry id, event text).
        self._unsent: Optional[Tuple[str, str, str]] = None
        self._last_claim: Optional[float] = None
        #: How many commands this worker answered, by how (``ran``, ``recorded``, ``expired``).
        self.answered = {"ran": 0, "recorded": 0, "expired": 0}

    def run(self) -> int:
        """Serve until :attr:`stop` is set; 0 after a clean stop, 1 when Redis refuses us."""
        con: Optional[redis.Redis] = None
        backoff = 0.1
        give_up_at: Optional[float] = None
        while True:
            if self.stop.is_set() and self._unsent is None:
                log.info("stopped (%s)", ", ".join(f"{k} {v}" for k, v in self.answered.items()))
                return 0
            try:
                if con is None:
                    con = self._connect()
                    backoff = 0.1
                if self._unsent is not None:
                    self._flush(con)
                    continue
                if self.stop.is_set():
                    continue
                entry = self._next(con)
                if entry is not None:
                    self._handle(con, entry)
            except redis.AuthenticationError as e:
                log.error("Redis at %s refused the credentials: %s; fix the user or password in the URL", redact(self.url), e)
                return 1
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                con = None
                if self.stop.is_set():
                    give_up_at = give_up_at or time.monotonic() + DRAIN
                    if time.monotonic() >= give_up_at:
                        log.warning(
                            "stopping with a result unsent (Redis at %s is away): its command stays pending and is answered again",
                            redact(self.url),
                        )
                        return 0
                    time.sleep(min(backoff, 1.0))
                else:
                    log.warning("Redis at %s is away (%s); reconnecting in %.1fs", redact(self.url), e, backoff)
                    self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except redis.ResponseError as e:
                if con is None or not any(s in str(e) for s in ("NOGROUP", "UNBLOCKED")):
                    raise
                # The stream or its group is gone (deleted, or Redis restarted without its
                # data): create them again, as at the start.
                log.warning("a command stream or its group is gone (%s); creating them again", e)
                self._create_groups(con)

    def _connect(self) -> redis.Redis:
        con = redis.Redis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=5,
            # A blocking read waits for `block`: give its answer that much time and more.
            socket_timeout=self.block_ms / 1000 + 5,
        )
        con.ping()
        self._create_groups(con)
        log.info(
            "serving %s on %s (prefix %s, group %s, consumer %s)",
            ", ".join(self.registry.names()),
            redact(self.url),
            self.prefix,
            self.group,
            self.consumer,
        )
        return con

    def _create_groups(self, con: redis.Redis) -> None:
        for stream in self.streams:
            try:
                # From "0": commands sent before any worker existed are not lost.
                con.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def _next(self, con: redis.Redis) -> Optional[Entry]:
        """The next entry to answer: one left pending by a dead consumer, else a new one
        (waiting up to `block` for it)."""
        now = time.monotonic()
        if self._last_claim is None or now - self._last_claim >= self.visibility_ms / 2000:
            entry = self._claim(con)
            if entry is not None:
                return entry
            self._last_claim = now
        reply = con.xreadgroup(
            self.group, self.consumer, {s: ">" for s in self.streams}, count=1, block=self.block_ms
        )
        items = reply.items() if isinstance(reply, dict) else (reply or [])
        for stream, entries in items:
            for entry_id, fields in entries:
                return (stream, entry_id, fields)
        return None

    def _claim(self, con: redis.Redis) -> Optional[Entry]:
        for stream in self.streams:
            reply = con.xautoclaim(stream, self.group, self.consumer, self.visibility_ms, start_id="0-0", count=1)
            for entry_id, fields in reply[1]:
                if entry_id is None:
                    continue  # deleted while pending (Redis 6.2 says so this way)
                log.info("claimed %s of %s: its consumer left it pending past the visibility timeout", entry_id, stream)
                return (stream, entry_id, fields)
        return None

    def _handle(self, con: redis.Redis, entry: Entry) -> None:
        stream, entry_id, fields = entry
        try:
            cmd = protocol.decode_command((fields or {}).get(FIELD))
        except protocol.ProtocolError as e:
            log.error("dropping entry %s of %s, which is not a Baton command: %s", entry_id, stream, e)
            con.pipeline(transaction=True).xack(stream, self.group, entry_id).xdel(stream, entry_id).execute()
            return
        ans = runner.answer(cmd, self.registry, self.record, worker=self.consumer)
        self.answered[ans.how] += 1
        # Recorded (by `answer`) before it is sent: a result is never seen before its record.
        self._unsent = (stream, entry_id, protocol.encode_result(cmd, ans.outcome, self.source))
        self._flush(con)

    def _flush(self, con: redis.Redis) -> None:
        """Send the result in hand, then acknowledge and delete its command, in one MULTI."""
        assert self._unsent is not None
        stream, entry_id, result = self._unsent
        pipe = con.pipeline(transaction=True)
        pipe.xadd(self.results, {FIELD: result})
        pipe.xack(stream, self.group, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.execute()
        self._unsent = None


def run(
    url: str = "redis://127.0.0.1:6379",
    prefix: str = "baton",
    group: str = DEFAULT_GROUP,
    consumer: Optional[str] = None,
    *,
    registry: Optional[Registry] = None,
    record: Any = None,
    visibility_timeout: float = 30.0,
    block: float = 1.0,
    source: str = "baton-worker",
    stop: Optional[threading.Event] = None,
    handle_signals: bool = True,
) -> int:
    """Serve the commands of ``registry`` (default: those registered with ``@command``) until
    SIGTERM or SIGINT (with ``handle_signals``, from the main thread) or until ``stop`` is set.
    Returns 0 after a clean stop.

    - ``group``: the consumer group; every worker of a command must use the same one (two
      groups on one stream would each run every command). ``workers`` is Baton's.
    - ``consumer``: this process's name in the group, unique (default ``<host>-<pid>``).
    - ``record``: ``None`` keeps outcomes in memory, a path in a SQLite file (shared by the
      processes of a machine, kept across restarts), ``False`` keeps none, or any object
      with ``get(command, key)`` and ``put(command, key, outcome)``.
    - ``visibility_timeout``: seconds an entry may stay pending with a consumer before this
      worker claims it; longer than your slowest command.
    - ``block``: seconds one read waits for a command (and how soon a stop is noticed).
    """
    stop = stop or threading.Event()
    worker = Worker(
        url,
        prefix,
        group,
        consumer or f"{socket.gethostname()}-{os.getpid()}",
        registry if registry is not None else default_registry,
        open_record(record),
        visibility_timeout,
        block,
        source,
        stop,
    )
    previous = {}
    if handle_signals and threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: Any) -> None:
            if not stop.is_set():
                log.info("%s: finishing the command in hand, then stopping", signal.Signals(signum).name)
            stop.set()

        for s in (signal.SIGTERM, signal.SIGINT):
            previous[s] = signal.signal(s, on_signal)
    try:
        return worker.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _import(spec: str) -> None:
    """Import the module that registers the commands: a dotted name (found on ``sys.path``,
    which starts with the current directory) or a ``.py`` file."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        name = os.path.splitext(os.path.basename(path))[0]
        loader = importlib.util.spec_from_file_location(name, path)
        if loader is None or loader.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module
        loader.loader.exec_module(module)
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        importlib.import_module(spec)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m baton_worker.bus``: the command line of :func:`run`."""
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m baton_worker.bus",
        description="Serve the commands a Python module registers (@baton_worker.command) on Baton's Redis Streams bus.",
    )
    p.add_argument("--module", "-m", action="append", required=True, metavar="MODULE",
                   help="the module (dotted name, or a .py file) whose @command functions to serve; repeatable")
    p.add_argument("--redis", "--url", dest="url", default=env("BATON_REDIS", "redis://127.0.0.1:6379"),
                   help="the Redis the Baton hosts use (env BATON_REDIS; default redis://127.0.0.1:6379)")
    p.add_argument("--prefix", default=env("BATON_PREFIX", "baton"),
                   help="the hosts' --prefix (env BATON_PREFIX; default baton)")
    p.add_argument("--group", default=DEFAULT_GROUP, help=f"the consumer group (default {DEFAULT_GROUP}, Baton's)")
    p.add_argument("--consumer", help="this process's name in the group (default <host>-<pid>)")
    p.add_argument("--record", metavar="PATH",
                   help="keep outcome records in this SQLite file (default: in memory)")
    p.add_argument("--no-record", action="store_true", help="keep no outcome records (duplicates run again)")
    p.add_argument("--visibility-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="claim entries left pending this long by another consumer (default 30)")
    p.add_argument("--block", type=float, default=1.0, metavar="SECONDS",
                   help="how long one read waits for a command (default 1)")
    p.add_argument("--source", default="baton-worker", help="the CloudEvents source of results (default baton-worker)")
    p.add_argument("--log", default=env("BATON_WORKER_LOG", "info"),
                   help="log level: debug, info, warning, error (env BATON_WORKER_LOG; default info)")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s baton_worker: %(message)s",
        stream=sys.stderr,
    )
    if args.record and args.no_record:
        p.error("give --record PATH or --no-record, not both")
    for spec in args.module:
        try:
            _import(spec)
        except Exception as e:  # noqa: BLE001
            log.error("cannot import --module %s: %s: %s", spec, type(e).__name__, e)
            return 2
    if not len(default_registry):
        log.error("no command is registered: the module(s) %s define no @baton_worker.command function", ", ".join(args.module))
        return 2
    record = False if args.no_record else args.record
    return run(
        args.url,
        args.prefix,
        args.group,
        args.consumer,
        record=record,
        visibility_timeout=args.visibility_timeout,
        block=args.block,
        source=args.source,
    )


if __name__ == "__main__":
    sys.exit(main())

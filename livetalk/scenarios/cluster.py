"""Scenario batches as Ray tasks, on a Ray cluster or a local Ray instance (``--ray``).

Theory of operation. The driver (``livetalk script --ray`` or :func:`run_on_ray`) validates
every scenario and packs it with the bytes of its recordings
(:class:`~livetalk.scenarios.bundle.ScenarioBundle`), so no node needs the files. Scenarios go
out in batches of ``concurrency``, one Ray task per batch. A task is a streaming generator: it
runs its batch in one event loop on a thread of the worker (``concurrency`` calls at once)
and yields ``(index, ScenarioResult)`` as each scenario finishes, so the driver reports
progress across the cluster and keeps every result a task produced even if the task dies
later. With ``local=True`` each task starts its own local server on 127.0.0.1 of its node
(its phrase list holds every scenario's phrases), so media never crosses the network;
otherwise each task connects straight to the base URL.

Accounting: the driver holds one slot per scenario. A result fills its slot once (a second
one for the same slot is dropped); when a task ends without filling all its slots (its worker
died, it raised, it was cancelled) the slots left get an error result naming the reason
(``error_kind`` one of :data:`CLUSTER_ERROR_KINDS`). No scenario is lost or counted twice,
and tasks are never retried by Ray (a retry would run scenarios twice).

Rate limits: with :class:`~livetalk.scenarios.limits.CallLimits` set, one Ray actor holds a
:class:`~livetalk.scenarios.limits.RateGate` for the whole cluster; every call takes a lease
from it before connecting, and a 429 pauses every task for its ``Retry-After``. Leases of a
task that died are returned by the driver.

Loopback: when livetalk starts the Ray instance itself, or connects to one at a loopback
address, it sets :data:`LOOPBACK_ENV` first: Ray then uses 127.0.0.1 as the node address
for its GCS, raylet, object manager and workers (by default Ray advertises the machine's
external address even on one machine), and usage statistics stay off.

Resources: each task asks for ``concurrency`` times :data:`CPU_PER_CALL` at its speed (plus
:data:`CPU_PER_LOCAL_CALL` with local servers) and :data:`MEMORY_PER_TASK` bytes, from the
measurements in ``docs/researchers.md``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Final

from livetalk._extras import missing_extra
from livetalk._net import is_loopback_url
from livetalk.errors import ConfigError, RayUnavailable
from livetalk.scenarios.bundle import ScenarioBundle
from livetalk.scenarios.limits import CallLimits, LimiterStatistics, LocalLimiter
from livetalk.scenarios.pricing import DEFAULT_PRICES, PriceTable
from livetalk.scenarios.runner import (
    DEFAULT_RATE_LIMIT_RETRIES,
    ResultCallback,
    ScenarioResult,
    run_scenario,
)
from livetalk.scenarios.schema import Scenario, local_recogniser, scenario_phrases

__all__ = [
    "CLUSTER_ERROR_KINDS",
    "CallCpu",
    "CPU_PER_CALL",
    "CPU_PER_LOCAL_CALL",
    "LOCAL_API_KEY",
    "LOOPBACK_ENV",
    "MEMORY_PER_TASK",
    "RayUnavailable",
    "RayRun",
    "run_on_ray",
    "task_resources",
]

@dataclass(frozen=True, slots=True)
class CallCpu:
    """CPUs one live scenario call keeps busy: a fixed part (synthesis, connecting, events)
    and a part that grows with the media speed (encoding, pacing, decoding)."""

    fixed: float
    per_speed: float

    def at(self, speed: float) -> float:
        """CPUs per call at media ``speed``."""
        return self.fixed + self.per_speed * speed


CPU_PER_CALL: Final = CallCpu(fixed=0.04, per_speed=0.035)
"""The client side of a scenario call (measured by ``bench/scenarios_scale.py``: 0.074 CPUs
per live call at speed 1, 0.17 at speed 4)."""
CPU_PER_LOCAL_CALL: Final = CallCpu(fixed=0.045, per_speed=0.015)
"""What the local server's side of a call adds (recognition, synthesis, its WebRTC peer)."""
MEMORY_PER_TASK: Final = 400 * 1024 * 1024
"""Bytes reserved per task: a worker holding aiortc, PyAV, numpy, and with local servers the
recogniser's model (250 MB resident measured for 4 calls and a local server in one process,
plus Ray's own share of the worker)."""
LOCAL_API_KEY: Final = "sk-livetalk-local"
"""The key the calls present to the local servers (they accept any)."""
LOOPBACK_ENV: Final = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                       "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/"}
"""Set before Ray starts a loopback-only instance: the first makes Ray use 127.0.0.1 as the
node address (its single-machine mode), the second turns usage statistics off, the third
sends the notice Ray posts even then (for ``ray start`` clusters) to a closed loopback port."""

WORKER_DIED: Final = "WorkerDied"
TASK_FAILED: Final = "TaskFailed"
INTERRUPTED: Final = "Interrupted"
CLUSTER_ERROR_KINDS: Final = (WORKER_DIED, TASK_FAILED, INTERRUPTED)
"""``error_kind`` of scenarios that ended because of the cluster, not of the call."""

_log = logging.getLogger(__name__)



def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "--ray", ["ray"]) from None
    return ray


def task_resources(concurrency: int, speed: float, local: bool) -> dict[str, float]:
    """The ``num_cpus`` and ``memory`` one task of ``concurrency`` calls asks Ray for."""
    per_call = CPU_PER_CALL.at(speed) + (CPU_PER_LOCAL_CALL.at(speed) if local else 0.0)
    return {"num_cpus": round(concurrency * per_call, 2),
            "memory": float(MEMORY_PER_TASK)}


def _is_loopback_target(address: str | None) -> bool:
    """True when Ray must run on loopback: a new local instance, or a GCS at 127.0.0.0/8."""
    if address in (None, "local"):
        return True
    if address == "auto" or address.startswith("ray://"):
        return False
    return is_loopback_url(f"//{address}")


def _connect(address: str | None) -> tuple[Any, bool]:
    """Import Ray and join (or start) the cluster; returns ``(ray, we_started_it)``."""
    loopback = _is_loopback_target(address)
    if loopback:
        for key, value in LOOPBACK_ENV.items():
            os.environ.setdefault(key, value)
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    if loopback:
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise RayUnavailable(
                "Ray was imported before livetalk could keep it on 127.0.0.1; set "
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment before starting Python")
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address in (None, "local"):
        kwargs.update(address="local", include_dashboard=False)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot join the Ray cluster at {address}: "
                             f"{str(exc).splitlines()[0]}") from None
    return ray, True


# ---------------------------------------------------------------------- worker side
_EARS: dict[tuple[str, ...], Any] = {}
"""Recognisers by phrase list, kept for the life of the worker process (loading one takes
about 0.3 s; the tasks of a run share one phrase list)."""
_VOICE: list[Any] = []


def _ears_and_voice(phrases: tuple[str, ...]) -> tuple[Any, Any]:
    from livetalk.server.asr import make_transcriber
    from livetalk.server.tts import EspeakSynthesizer

    if phrases not in _EARS:
        _EARS.clear()
        _EARS[phrases] = make_transcriber(local_recogniser(phrases),
                                          phrases=list(phrases) or None)
    if not _VOICE:
        _VOICE.append(EspeakSynthesizer())
    return _EARS[phrases], _VOICE[0]


class _ActorLimiter:
    """The :class:`~livetalk.scenarios.limits.CallLimiter` of a task: the cluster's actor."""

    def __init__(self, actor: Any, owner: str) -> None:
        self.actor = actor
        self.owner = owner

    async def acquire(self) -> int:
        lease: int = await self.actor.acquire.remote(self.owner)
        return lease

    async def release(self, lease: int) -> None:
        self.actor.release.remote(lease)  # not awaited: a closing call never waits on it

    async def backoff(self, seconds: float) -> None:
        await self.actor.backoff.remote(seconds)


class _LimiterActor:
    """The cluster-wide gate (an async Ray actor around a LocalLimiter)."""

    def __init__(self, limits: CallLimits) -> None:
        self.limiter = LocalLimiter(limits)

    async def acquire(self, owner: str) -> int:
        return await self.limiter.acquire(owner)

    async def release(self, lease: int) -> None:
        await self.limiter.release(lease)

    async def release_owner(self, owner: str) -> int:
        return await self.limiter.release_owner(owner)

    async def backoff(self, seconds: float) -> None:
        await self.limiter.backoff(seconds)

    async def statistics(self) -> LimiterStatistics:
        return self.limiter.statistics()


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one task runs: its id, its scenarios (with their indexes in the run), how."""

    batch_id: str
    items: tuple[tuple[int, ScenarioBundle], ...]
    options: dict[str, Any]
    local_phrases: tuple[str, ...] | None
    limiter: Any


async def _run_batch(batch: _Batch, scenarios: list[tuple[int, Scenario]],
                     emit: Callable[[tuple[int, ScenarioResult]], None]) -> None:
    options = dict(batch.options)
    if batch.limiter is not None:
        options["limiter"] = _ActorLimiter(batch.limiter, batch.batch_id)

    async def one(index: int, scenario: Scenario) -> None:
        try:
            result = await run_scenario(scenario, **options)
        except Exception as exc:  # a bug or a broken option: this scenario only
            result = _error_result(scenario, f"the task raised {type(exc).__name__}: {exc}",
                                   TASK_FAILED, options.get("api_key"))
        emit((index, result))

    if batch.local_phrases is None:
        await asyncio.gather(*(one(i, s) for i, s in scenarios))
        return
    from livetalk.server import serve

    ears, voice = _ears_and_voice(batch.local_phrases)
    async with serve(port=0, transcriber=ears, synthesizer=voice,
                     realtime_factor=options.get("speed", 1.0)) as server:
        options.update(base_url=server.base_url, api_key=LOCAL_API_KEY)
        options.setdefault("synthesizer", voice)
        await asyncio.gather(*(one(i, s) for i, s in scenarios))


_DONE: Final = object()


def _batch_task(batch: _Batch) -> Iterator[tuple[int, ScenarioResult]]:
    """One Ray task (a streaming generator): run a batch, yield each result as it finishes.

    The batch runs in its own event loop on a thread, so media keeps flowing while Ray
    stores what was yielded; closing the generator (a cancel) cancels the batch.
    """
    results: queue.Queue[Any] = queue.Queue()
    stack = ExitStack()
    with stack:  # closed here only if unpacking fails; else in the finally below
        scenarios = [(i, stack.enter_context(bundle.unpacked())) for i, bundle in batch.items]
        stack = stack.pop_all()
    loop = asyncio.new_event_loop()
    main = loop.create_task(_run_batch(batch, scenarios, results.put))

    def run() -> None:
        try:
            loop.run_until_complete(main)
        except BaseException as exc:  # noqa: B036 - handed to the generator below
            results.put(exc)
        finally:
            results.put(_DONE)

    thread = threading.Thread(target=run, name=f"livetalk-batch-{batch.batch_id}", daemon=True)
    thread.start()
    try:
        while (item := results.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(main.cancel)
        thread.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        stack.close()


# ---------------------------------------------------------------------- driver side
def _error_result(scenario: Scenario, reason: str, kind: str,
                  api_key: str | None = None) -> ScenarioResult:
    if api_key:
        reason = reason.replace(api_key, "***")
    return ScenarioResult(name=scenario.name,
                          path=str(scenario.path) if scenario.path else None, turns=(),
                          model=scenario.session.model, error=reason, error_kind=kind)


def _failure(exc: BaseException) -> tuple[str, str]:
    """The reason and kind for the scenarios a failed task left."""
    from ray import exceptions as rex

    first = (str(exc).strip().splitlines() or [""])[0][:300]
    died = (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError,
            rex.ObjectLostError, rex.ActorDiedError)
    if isinstance(exc, died):
        return (f"the Ray worker running this scenario died before it finished "
                f"({type(exc).__name__}: {first})", WORKER_DIED)
    if isinstance(exc, rex.TaskCancelledError):
        return "the Ray task running this scenario was cancelled", INTERRUPTED
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        text = (str(cause).strip().splitlines() or [""])[-1][:300]
        return (f"the Ray task running this scenario raised {type(cause).__name__}: {text}",
                TASK_FAILED)
    return f"the Ray task running this scenario failed ({type(exc).__name__}: {first})", \
        TASK_FAILED


class RayRun:
    """One run on a cluster: the slots of every scenario, filled exactly once.

    Build it with the scenarios, then ``await run.run()``; :func:`run_on_ray` does both.
    ``statistics`` holds the limiter's counters at the end (None without limits).
    """

    def __init__(
        self,
        scenarios: Sequence[Scenario],
        *,
        address: str | None = None,
        concurrency: int = 1,
        local: bool = False,
        base_url: str | None = None,
        api_key: str | None = None,
        speed: float = 1.0,
        prices: PriceTable = DEFAULT_PRICES,
        connect_timeout: float = 15.0,
        limits: CallLimits | None = None,
        rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
        on_result: ResultCallback | None = None,
        num_cpus: float | None = None,
        synthesizer: Any = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.scenarios = list(scenarios)
        self.bundles = [ScenarioBundle.pack(s) for s in self.scenarios]
        self.address = address
        self.concurrency = concurrency
        self.local = local
        self.limits = limits if limits is not None else CallLimits()
        self.on_result = on_result
        self.resources = task_resources(concurrency, speed, local)
        if num_cpus is not None:
            self.resources["num_cpus"] = num_cpus
        self.options: dict[str, Any] = {
            "speed": speed, "prices": prices, "connect_timeout": connect_timeout,
            "rate_limit_retries": rate_limit_retries}
        if synthesizer is not None:
            self.options["synthesizer"] = synthesizer
        if not local:
            self.options.update(base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
                                api_key=api_key or os.environ.get("OPENAI_API_KEY"))
        self.phrases = tuple(scenario_phrases(self.scenarios)) if local else None
        self.results: list[ScenarioResult | None] = [None] * len(self.scenarios)
        self.duplicates = 0
        """Results that arrived for a slot already filled (dropped)."""
        self.statistics: LimiterStatistics | None = None

    def _fill(self, index: int, result: ScenarioResult) -> None:
        if self.results[index] is not None:
            self.duplicates += 1
            _log.warning("dropped a second result for scenario %d (%s)", index, result.name)
            return
        self.results[index] = result
        if self.on_result is not None:
            self.on_result(result)

    def _fill_missing(self, indexes: Sequence[int], reason: str, kind: str) -> None:
        for i in indexes:
            if self.results[i] is None:
                self._fill(i, _error_result(self.scenarios[i], reason, kind,
                                            self.options.get("api_key")))

    async def run(self) -> list[ScenarioResult]:
        """Run every scenario on the cluster; returns the results in scenario order.

        Cancelling it (Ctrl-C) cancels the cluster's tasks and reports every unfinished
        scenario to ``on_result`` as an ``Interrupted`` error before re-raising.

        Raises:
            RayUnavailable: Ray is not installed or the cluster cannot be joined.
        """
        ray, started = _connect(self.address)
        actor = None
        generators: list[Any] = []
        try:
            self._check_fits(ray)
            task = ray.remote(max_retries=0, num_returns="streaming")(_batch_task).options(
                name="livetalk_scenarios", **self.resources)
            if self.limits.active:
                actor = ray.remote(num_cpus=0, max_restarts=0)(_LimiterActor).remote(
                    self.limits)
            consumers = []
            indexes = list(range(len(self.scenarios)))
            for n, start in enumerate(range(0, len(indexes), self.concurrency)):
                chunk = indexes[start:start + self.concurrency]
                batch = _Batch(f"batch-{n}", tuple((i, self.bundles[i]) for i in chunk),
                               self.options, self.phrases, actor)
                generator = task.remote(batch)
                generators.append(generator)
                consumers.append(self._consume(batch.batch_id, chunk, generator, actor))
            try:
                await asyncio.gather(*consumers)
            except asyncio.CancelledError:
                for generator in generators:
                    ray.cancel(generator, force=True)
                self._fill_missing(indexes, "interrupted before it finished (Ctrl-C); the "
                                   "cluster's tasks were cancelled", INTERRUPTED)
                raise
            if actor is not None:
                self.statistics = await actor.statistics.remote()
        finally:
            if actor is not None:
                ray.kill(actor)
            if started:
                ray.shutdown()
        self._fill_missing(range(len(self.scenarios)), "no result came back", TASK_FAILED)
        return [r for r in self.results if r is not None]

    def _check_fits(self, ray: Any) -> None:
        """Refuse a run whose tasks no node can hold (Ray would keep them pending forever)."""
        need_cpus = self.resources["num_cpus"]
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not nodes or any(r.get("CPU", 0.0) >= need_cpus for r in nodes):
            return
        largest = max(r.get("CPU", 0.0) for r in nodes)
        raise RayUnavailable(
            f"each task of {self.concurrency} calls asks for {need_cpus:g} CPUs but the "
            f"largest node of the cluster has {largest:g}; lower --concurrency")

    async def _consume(self, batch_id: str, indexes: list[int], generator: Any,
                       actor: Any) -> None:
        try:
            async for ref in generator:
                index, result = await ref
                self._fill(index, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # ray.exceptions.RayError and whatever a task raised
            reason, kind = _failure(exc)
            self._fill_missing(indexes, reason, kind)
        else:
            self._fill_missing(indexes, "the Ray task ended without reporting it", TASK_FAILED)
        finally:
            if actor is not None:
                actor.release_owner.remote(batch_id)


async def run_on_ray(scenarios: Sequence[Scenario], **options: Any) -> list[ScenarioResult]:
    """Run scenarios as Ray tasks and return one result per scenario, in order.

    Args:
        scenarios: validated scenarios; their recordings are read now and travel with the
            tasks.
        **options: ``address`` (None or ``"local"``: a new local Ray instance on 127.0.0.1;
            ``"auto"``: the local cluster; ``"host:port"`` or ``"ray://host:port"``: that
            cluster; an already initialised Ray is used as it is), ``concurrency`` (calls
            per task), ``local`` (a local server in every task), ``base_url``, ``api_key``,
            ``speed``, ``prices``, ``connect_timeout``, ``limits``
            (:class:`~livetalk.scenarios.limits.CallLimits`), ``rate_limit_retries``,
            ``on_result`` (called with each result as it arrives), ``num_cpus`` (override
            the CPUs per task): see :class:`RayRun`.

    Raises:
        RayUnavailable: Ray is missing or the cluster cannot be joined.
        ScenarioError: a recording cannot be read.
    """
    return await RayRun(scenarios, **options).run()

"""Retry and circuit-breaker policies, as decorators (``@retry_policy``, ``@circuit_breaker``) or options.

A policy given to a task (``retry=RetryPolicy(...)`` or by decorating the function it runs)
is stored with the task as JSON; the engine then applies it durably: a retry is a waiting
run in the store (it survives restarts and may run on another process), and a breaker's
state is a document in the store, so a breaker opened by one process is open in all.

Called directly (not by a scheduler), a decorated function applies the policies in
process: it retries with backoff, and a breaker fails fast while open.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from backbeat.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])

POLICIES_ATTR = "__backbeat_policies__"
"""Attribute of a decorated function: ``{"retry": RetryPolicy | str, "circuit_breaker": ...}``;
a string names the attribute of the instance that holds the policy."""

engine_applies_policies: ContextVar[bool] = ContextVar("backbeat_engine_applies_policies", default=False)
"""True while the engine runs a job: it applies the stored policies, the decorators step aside."""


class CircuitOpenError(Exception):
    """A call was refused because its circuit breaker is open."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Re-run a failed run up to ``max_attempts`` times in all, waiting
    ``initial_delay * backoff_factor ** (attempt - 1)`` seconds (at most ``max_delay``),
    randomised by ``jitter`` (a fraction: 0.1 is +-10%)."""

    max_attempts: int = 3
    backoff_factor: float = 2.0
    max_delay: float = 300.0
    initial_delay: float = 1.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigurationError(
                f"RetryPolicy.max_attempts must be an integer >= 1, got {self.max_attempts!r}"
            )
        for name in ("backoff_factor", "max_delay", "initial_delay", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"RetryPolicy.{name} must be a number >= 0, got {value!r}")
        if self.backoff_factor < 1:
            raise ConfigurationError(f"RetryPolicy.backoff_factor must be >= 1, got {self.backoff_factor!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        try:
            base = min(self.initial_delay * self.backoff_factor ** max(attempt - 1, 0), self.max_delay)
        except OverflowError:  # the factor's power is beyond any float: far past max_delay
            base = self.max_delay if self.initial_delay else 0.0
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, min(base, self.max_delay))

    def allows_another(self, attempt: int) -> bool:
        """Whether a run that failed attempt ``attempt`` is tried again."""
        return attempt < self.max_attempts

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RetryPolicy:
        """Raises ``ConfigurationError`` naming an unknown or invalid field."""
        policy: RetryPolicy = _from_json(cls, doc)
        return policy

    def apply(self, func: F) -> F:
        """Decorate ``func``: tasks that run it retry durably; direct calls retry in process."""
        return _decorate(func, "retry", self)


@dataclass(slots=True)
class _LocalBreaker:
    state: str = "closed"
    failures: int = 0
    successes: int = 0
    opened_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerPolicy:
    """After ``failure_threshold`` failures in a row the circuit opens: runs are deferred (not
    failed, not lost) for ``recovery_timeout`` seconds; then it is half-open, and
    ``success_threshold`` successes close it (a failure opens it again).

    Runs of tasks sharing a ``name`` share one breaker; without a name, each task name has its own.
    """

    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    success_threshold: int = 1
    name: str | None = None
    _local: _LocalBreaker = field(
        init=False, default_factory=lambda: _LocalBreaker(), compare=False, repr=False
    )
    """The state of direct calls, in this process."""

    def __post_init__(self) -> None:
        for attr in ("failure_threshold", "success_threshold"):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"CircuitBreakerPolicy.{attr} must be an integer >= 1, got {value!r}"
                )
        if not isinstance(self.recovery_timeout, int | float) or self.recovery_timeout < 0:
            raise ConfigurationError(
                f"CircuitBreakerPolicy.recovery_timeout must be a number >= 0, got {self.recovery_timeout!r}"
            )

    def key(self, task_name: str) -> str:
        """The state document of this breaker for a task named ``task_name``."""
        return f"breaker:{self.name or task_name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "failure_threshold": self.failure_threshold,
            "recovery_timeout": self.recovery_timeout,
            "success_threshold": self.success_threshold,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CircuitBreakerPolicy:
        """Raises ``ConfigurationError`` naming an unknown or invalid field."""
        policy: CircuitBreakerPolicy = _from_json(cls, doc)
        return policy

    def apply(self, func: F) -> F:
        """Decorate ``func``: tasks that run it share a breaker through the store; direct calls
        use one in this process."""
        return _decorate(func, "circuit_breaker", self)


class _InstancePolicy:
    """The module-level ``retry_policy`` / ``circuit_breaker``: as a decorator inside a class
    it names the instance attribute of that name, read when the method is scheduled or called
    (``@retry_policy.apply`` on methods of a class whose ``__init__`` sets ``self.retry_policy``)."""

    def __init__(self, kind: str, attribute: str) -> None:
        self.kind = kind
        self.attribute = attribute

    def apply(self, func: F) -> F:
        return _decorate(func, self.kind, self.attribute)

    def __repr__(self) -> str:
        return f"<{self.kind} policy read from self.{self.attribute}>"


retry_policy = _InstancePolicy("retry", "retry_policy")
circuit_breaker = _InstancePolicy("circuit_breaker", "circuit_breaker")


def policies_of(func: Callable[..., Any]) -> dict[str, RetryPolicy | CircuitBreakerPolicy]:
    """The policies decorating ``func`` (a bound method's instance attributes resolved).

    Raises:
        ConfigurationError: a decorator names an instance attribute that holds no such policy.
    """
    declared: dict[str, Any] = getattr(func, POLICIES_ATTR, None) or {}
    return _resolve(func, declared, getattr(func, "__self__", None))


def _resolve(
    func: Callable[..., Any], declared: dict[str, Any], owner: Any
) -> dict[str, RetryPolicy | CircuitBreakerPolicy]:
    found: dict[str, RetryPolicy | CircuitBreakerPolicy] = {}
    for kind, policy in declared.items():
        if isinstance(policy, str):
            policy = getattr(owner, policy, None)
            expected = RetryPolicy if kind == "retry" else CircuitBreakerPolicy
            if not isinstance(policy, expected):
                raise ConfigurationError(
                    f"{getattr(func, '__qualname__', func)} is decorated with @{declared[kind]}.apply, "
                    f"but its instance has no {expected.__name__} in attribute {declared[kind]!r}"
                )
        found[kind] = policy
    return found


def option_json(kind: str, value: Any) -> dict[str, Any] | None:
    """A ``retry`` / ``circuit_breaker`` task option (policy object, dict or None) as stored JSON.

    Raises:
        ConfigurationError: the value is not such a policy.
    """
    if value is None:
        return None
    cls: type[RetryPolicy] | type[CircuitBreakerPolicy] = (
        RetryPolicy if kind == "retry" else CircuitBreakerPolicy
    )
    if isinstance(value, dict):
        value = cls.from_json(value)
    if not isinstance(value, cls):
        raise ConfigurationError(f"task option {kind!r} must be a {cls.__name__}, got {value!r}")
    return value.to_json()


def _from_json(cls: Any, doc: dict[str, Any]) -> Any:
    known = {name for name, f in cls.__dataclass_fields__.items() if f.init}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown {cls.__name__} field(s) {', '.join(unknown)}; known: {sorted(known)}"
        )
    try:
        return cls(**doc)
    except TypeError as exc:
        raise ConfigurationError(f"invalid {cls.__name__} {doc!r}: {exc}") from exc


def _decorate(func: F, kind: str, policy: RetryPolicy | CircuitBreakerPolicy | str) -> F:
    existing: dict[str, Any] = dict(getattr(func, POLICIES_ATTR, None) or {})
    inner = getattr(func, "__backbeat_undecorated__", func)
    existing[kind] = policy
    if not inspect.iscoroutinefunction(inner):
        raise ConfigurationError(f"@{kind} policies decorate async functions; {inner!r} is not one")

    takes_self = next(iter(inspect.signature(inner).parameters), None) == "self"

    @functools.wraps(inner)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if engine_applies_policies.get():
            return await inner(*args, **kwargs)
        resolved = _resolve(inner, existing, args[0] if takes_self and args else None)
        return await _call_in_process(inner, args, kwargs, resolved)

    setattr(call, POLICIES_ATTR, existing)
    call.__backbeat_undecorated__ = inner  # type: ignore[attr-defined]
    return call  # type: ignore[return-value]


async def _call_in_process(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policies: dict[str, RetryPolicy | CircuitBreakerPolicy],
) -> Any:
    retry = policies.get("retry")
    breaker = policies.get("circuit_breaker")
    attempt = 1
    while True:
        try:
            if isinstance(breaker, CircuitBreakerPolicy):
                return await _through_local_breaker(breaker, func, args, kwargs)
            return await func(*args, **kwargs)
        except CircuitOpenError:
            raise
        except Exception:
            if not isinstance(retry, RetryPolicy) or not retry.allows_another(attempt):
                raise
            await asyncio.sleep(retry.delay(attempt))
            attempt += 1


async def _through_local_breaker(
    policy: CircuitBreakerPolicy, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    state = policy._local
    now = time.monotonic()
    if state.state == "open":
        if now - state.opened_at < policy.recovery_timeout:
            raise CircuitOpenError(f"circuit {policy.name or getattr(func, '__qualname__', func)} is open")
        state.state, state.successes = "half_open", 0
    try:
        result = await func(*args, **kwargs)
    except Exception:
        state.failures += 1
        if state.state == "half_open" or state.failures >= policy.failure_threshold:
            state.state, state.opened_at, state.failures = "open", time.monotonic(), 0
        raise
    if state.state == "half_open":
        state.successes += 1
        if state.successes >= policy.success_threshold:
            state.state, state.failures = "closed", 0
    else:
        state.failures = 0
    return result

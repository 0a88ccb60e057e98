"""The dependency-injection container: registration, constructor injection, lifetimes, scopes, errors."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Generic, TypeVar

import pytest

from backbeat.errors import BackbeatError, ConfigurationError
from backbeat.hosting.di import (
    ServiceCollection,
    ServiceDescriptor,
    ServiceLifetime,
    ServiceProvider,
    ServiceProviderBase,
    ServiceResolutionError,
    ServiceScope,
    SupportsGetRequiredService,
)

T = TypeVar("T")


class Config:
    def __init__(self) -> None:
        self.url = "memory://"


class Repository:
    def __init__(self, config: Config) -> None:
        self.config = config


class Service:
    def __init__(self, repository: Repository, provider: ServiceProviderBase, retries: int = 3) -> None:
        self.repository = repository
        self.provider = provider
        self.retries = retries


class Notifier:
    """A base type with several implementations."""


class EmailNotifier(Notifier):
    pass


class SmsNotifier(Notifier):
    pass


class WithOptional:
    def __init__(self, config: Config | None, notifier: Notifier | None = None, name: str = "x") -> None:
        self.config = config
        self.notifier = notifier
        self.name = name


class CircularA:
    def __init__(self, b: CircularB) -> None:
        self.b = b


class CircularB:
    def __init__(self, a: CircularA) -> None:
        self.a = a


class Missing:
    pass


class NeedsMissing:
    def __init__(self, missing: Missing) -> None:
        self.missing = missing


class Top:
    def __init__(self, middle: NeedsMissing) -> None:
        self.middle = middle


class Exploding:
    def __init__(self, config: Config) -> None:
        raise RuntimeError("boom")


class UsesExploding:
    def __init__(self, exploding: Exploding) -> None:
        self.exploding = exploding


class Box(Generic[T]):
    def __init__(self, value: T) -> None:
        self.value = value


class UsesBox:
    def __init__(self, box: Box[int]) -> None:
        self.box = box


class Resource:
    """A scoped service that records when it is closed."""

    closed: list[str] = []

    def __init__(self) -> None:
        self.name = type(self).__name__

    def close(self) -> None:
        Resource.closed.append(self.name)


class OtherResource(Resource):
    def __init__(self, resource: Resource) -> None:
        super().__init__()
        self.resource = resource


class AsyncResource:
    closed: list[str] = []

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        AsyncResource.closed.append("aclose")


class BrokenResource:
    def dispose(self) -> None:
        raise OSError("cannot close")


class SingletonNeedsScoped:
    def __init__(self, resource: Resource) -> None:
        self.resource = resource


def build(*register: tuple[str, type, type | None]) -> ServiceProvider:
    services = ServiceCollection()
    for lifetime, service_type, implementation in register:
        getattr(services, f"add_{lifetime}")(service_type, implementation)
    return services.build()


# -- constructor injection ---------------------------------------------------------------------------


def test_constructor_injection_resolves_the_whole_chain() -> None:
    provider = build(
        ("singleton", Config, None), ("transient", Repository, None), ("transient", Service, None)
    )

    service = provider.get_required_service(Service)

    assert isinstance(service.repository, Repository)
    assert service.repository.config is provider.get_required_service(Config)
    assert service.provider is provider
    assert service.retries == 3  # not resolvable: keeps its default


def test_optional_parameters_get_none_or_keep_their_defaults() -> None:
    provider = build(("transient", WithOptional, None))
    built = provider.get_required_service(WithOptional)
    assert (built.config, built.notifier, built.name) == (None, None, "x")

    provider = build(
        ("transient", WithOptional, None), ("singleton", Config, None), ("singleton", Notifier, SmsNotifier)
    )
    built = provider.get_required_service(WithOptional)
    assert isinstance(built.config, Config)
    assert isinstance(built.notifier, SmsNotifier)


def test_classes_declared_in_a_function_are_injected_despite_postponed_annotations() -> None:
    class LocalDependency:
        pass

    class LocalService:
        def __init__(self, dependency: LocalDependency, config: Config) -> None:
            self.dependency = dependency
            self.config = config

    provider = build(
        ("singleton", LocalDependency, None), ("singleton", Config, None), ("transient", LocalService, None)
    )

    service = provider.get_required_service(LocalService)

    assert isinstance(service.dependency, LocalDependency)
    assert isinstance(service.config, Config)


def test_generic_aliases_are_registered_and_injected() -> None:
    services = ServiceCollection().add_singleton(Box[int], singleton=Box(7)).add_transient(UsesBox)
    assert services.build().get_required_service(UsesBox).box.value == 7


# -- registrations -----------------------------------------------------------------------------------


def test_instances_factories_and_implementation_types() -> None:
    config = Config()
    services = (
        ServiceCollection()
        .add_singleton(Config, singleton=config)
        .add_singleton(Notifier, EmailNotifier)
        .add_transient(
            Repository, implementation_factory=lambda p: Repository(p.get_required_service(Config))
        )
    )
    provider = services.build()

    assert provider.get_required_service(Config) is config
    assert isinstance(provider.get_required_service(Notifier), EmailNotifier)
    assert provider.get_required_service(Repository).config is config


def test_get_service_returns_the_first_registration_and_get_services_all_of_them() -> None:
    provider = build(("singleton", Notifier, EmailNotifier), ("transient", Notifier, SmsNotifier))

    assert isinstance(provider.get_service(Notifier), EmailNotifier)
    assert [type(n) for n in provider.get_services(Notifier)] == [EmailNotifier, SmsNotifier]
    assert provider.get_services(Missing) == []


def test_try_add_singleton_keeps_an_existing_registration() -> None:
    services = (
        ServiceCollection().add_singleton(Notifier, EmailNotifier).try_add_singleton(Notifier, SmsNotifier)
    )
    services.try_add_singleton(Config)

    assert len(services) == 2
    assert isinstance(services.build().get_required_service(Notifier), EmailNotifier)


def test_an_instance_can_only_be_a_singleton() -> None:
    with pytest.raises(ConfigurationError, match="only be a singleton"):
        ServiceCollection().add_scoped(Config, singleton=Config())
    with pytest.raises(ConfigurationError, match="not a class"):
        ServiceDescriptor(Config, implementation_type="Config")


def test_the_provider_resolves_itself() -> None:
    provider = ServiceCollection().build()

    assert provider.get_service(ServiceProviderBase) is provider
    assert provider.get_required_service(ServiceProvider) is provider
    assert provider.get_services(ServiceProviderBase) == [provider]
    assert provider.get_service(ServiceScope) is None
    assert isinstance(provider, SupportsGetRequiredService)


# -- lifetimes ---------------------------------------------------------------------------------------


def test_singletons_are_built_once_and_transients_every_time() -> None:
    provider = build(("singleton", Config, None), ("transient", Repository, None))

    assert provider.get_required_service(Config) is provider.get_required_service(Config)
    assert provider.get_required_service(Repository) is not provider.get_required_service(Repository)
    with provider.create_scope() as scope:
        assert scope.get_required_service(Config) is provider.get_required_service(Config)


def test_scoped_services_are_shared_within_a_scope_only() -> None:
    provider = build(("singleton", Config, None), ("scoped", Repository, None), ("transient", Service, None))

    with provider.create_scope() as first, provider.create_scope() as second:
        assert first.get_required_service(Repository) is first.get_required_service(Repository)
        assert first.get_required_service(Repository) is not second.get_required_service(Repository)
        service = first.get_required_service(Service)
        assert service.repository is first.get_required_service(Repository)
        assert service.provider is first
        assert first.get_service_provider() is first
        assert first.get_service(ServiceScope) is first


def test_scoped_factories_receive_the_scope() -> None:
    seen: list[ServiceProviderBase] = []

    def factory(provider: ServiceProviderBase) -> Config:
        seen.append(provider)
        return Config()

    provider = ServiceCollection().add_scoped(Config, implementation_factory=factory).build()
    with provider.create_scope() as scope:
        scope.get_required_service(Config)
    assert seen == [scope]


def test_scoped_services_cannot_be_resolved_from_the_root_nor_captured_by_a_singleton() -> None:
    provider = build(("scoped", Resource, None), ("singleton", SingletonNeedsScoped, None))

    with pytest.raises(
        ServiceResolutionError, match="scoped service Resource cannot be resolved from the root"
    ):
        provider.get_service(Resource)
    with (
        provider.create_scope() as scope,
        pytest.raises(ServiceResolutionError, match="SingletonNeedsScoped"),
    ):
        scope.get_required_service(SingletonNeedsScoped)


def test_a_singleton_is_built_once_under_concurrent_threads() -> None:
    built: list[int] = []

    def slow_factory(provider: ServiceProviderBase) -> Config:
        time.sleep(0.02)
        built.append(1)
        return Config()

    provider = ServiceCollection().add_singleton(Config, implementation_factory=slow_factory).build()
    results: list[Config] = []
    threads = [
        threading.Thread(target=lambda: results.append(provider.get_required_service(Config)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(built) == 1
    assert all(result is results[0] for result in results)


# -- errors ------------------------------------------------------------------------------------------


def test_a_missing_service_names_its_type() -> None:
    provider = ServiceCollection().build()

    assert provider.get_service(Missing) is None
    with pytest.raises(ServiceResolutionError, match="no service registered for Missing") as caught:
        provider.get_required_service(Missing)
    assert isinstance(caught.value, BackbeatError)
    assert caught.value.service_type is Missing


def test_a_missing_dependency_names_the_chain_and_the_parameter() -> None:
    provider = build(("transient", Top, None), ("transient", NeedsMissing, None))

    with pytest.raises(ServiceResolutionError) as caught:
        provider.get_required_service(Top)

    message = str(caught.value)
    assert "cannot build NeedsMissing (Top -> NeedsMissing)" in message
    assert "parameter 'missing' of type Missing" in message
    assert caught.value.chain == (Top, NeedsMissing)


def test_a_missing_service_asked_for_by_a_factory_names_the_chain() -> None:
    provider = (
        ServiceCollection()
        .add_transient(Top)
        .add_transient(NeedsMissing, implementation_factory=lambda p: p.get_required_service(Missing))
        .build()
    )
    with pytest.raises(
        ServiceResolutionError,
        match=r"no service registered for Missing \(while building Top -> NeedsMissing\)",
    ):
        provider.get_required_service(Top)


def test_a_circular_dependency_is_reported_with_its_cycle() -> None:
    provider = build(("singleton", CircularA, None), ("transient", CircularB, None))

    with pytest.raises(
        ServiceResolutionError, match="circular dependency: CircularA -> CircularB -> CircularA"
    ):
        provider.get_required_service(CircularA)


def test_a_constructor_failing_deep_in_the_chain_is_wrapped_with_the_chain() -> None:
    provider = build(
        ("singleton", Config, None), ("transient", UsesExploding, None), ("transient", Exploding, None)
    )

    with pytest.raises(ServiceResolutionError) as caught:
        provider.get_required_service(UsesExploding)

    assert str(caught.value) == "failed to build Exploding (UsesExploding -> Exploding): RuntimeError: boom"
    assert isinstance(caught.value.__cause__, RuntimeError)
    # the failed build leaves nothing behind: the next resolution fails the same way, not as a cycle
    with pytest.raises(ServiceResolutionError, match="RuntimeError: boom"):
        provider.get_required_service(UsesExploding)


# -- scopes ------------------------------------------------------------------------------------------


def test_leaving_a_scope_closes_its_scoped_services_last_built_first() -> None:
    Resource.closed.clear()
    provider = build(("scoped", Resource, None), ("scoped", OtherResource, None), ("singleton", Config, None))

    with provider.create_scope() as scope:
        scope.get_required_service(OtherResource)
        scope.get_required_service(Config)
        assert Resource.closed == []

    assert Resource.closed == ["OtherResource", "Resource"]
    with scope:  # a disposed scope builds anew and disposes again
        assert scope.get_required_service(Resource) is scope.get_required_service(Resource)
    assert Resource.closed == ["OtherResource", "Resource", "Resource"]


def test_a_failing_dispose_is_logged_and_the_other_services_still_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Resource.closed.clear()
    provider = build(("scoped", Resource, None), ("scoped", BrokenResource, None))

    with caplog.at_level(logging.ERROR, logger="backbeat.di"), provider.create_scope() as scope:
        scope.get_required_service(Resource)
        scope.get_required_service(BrokenResource)

    assert Resource.closed == ["Resource"]
    assert "disposing BrokenResource failed" in caplog.text


async def test_leaving_an_async_scope_awaits_async_closers() -> None:
    Resource.closed.clear()
    AsyncResource.closed.clear()
    provider = build(("scoped", AsyncResource, None), ("scoped", Resource, None))

    async with provider.create_scope() as scope:
        scope.get_required_service(AsyncResource)
        scope.get_required_service(Resource)

    assert AsyncResource.closed == ["aclose"]
    assert Resource.closed == ["Resource"]


def test_service_lifetime_values() -> None:
    assert {lifetime.name for lifetime in ServiceLifetime} == {"SINGLETON", "SCOPED", "TRANSIENT"}

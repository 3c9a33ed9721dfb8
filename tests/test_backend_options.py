"""Each backend declares its options once (issue 19): names, defaults and types in ``options``."""

from __future__ import annotations

import inspect

import pytest

from bayesplug import registry

BUILT_IN = sorted(
    name
    for name in registry.list_backends()
    if type(registry.get_backend(name)).__module__.startswith("bayesplug.")
)


@pytest.mark.parametrize("name", BUILT_IN)
def test_run_takes_exactly_the_declared_options_without_defaults_of_its_own(name):
    backend = registry.get_backend(name)
    parameters = inspect.signature(backend.run).parameters
    keyword = {k: p for k, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    keyword.pop("progress", None)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        assert not keyword, f"{name}: **options and named options both"  # one spec, no copy
        return
    assert set(keyword) == set(backend.options), name
    with_defaults = [k for k, p in keyword.items() if p.default is not inspect.Parameter.empty]
    assert not with_defaults, f"{name}: defaults written twice: {with_defaults}"


def test_every_declared_option_has_a_described_default():
    for name in BUILT_IN:
        for option, spec in registry.get_backend(name).options.items():
            assert spec.doc, (name, option)
            assert spec.default is None or isinstance(spec.default, spec.types), (name, option)

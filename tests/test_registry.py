import sys

import pytest

import bayesplug as bp
from bayesplug import registry
from bayesplug.errors import InputError


def test_builtins_are_listed():
    assert "gp" in bp.list_models()
    assert "nuts" in bp.list_backends()


def test_unknown_method_names_close_match():
    with pytest.raises(InputError, match="Did you mean 'nuts'") as info:
        bp.get_backend("nutz")
    assert info.value.argument == "method"


def test_unknown_model_lists_known_names():
    with pytest.raises(InputError, match="unknown model 'gpp'.*'gp'"):
        bp.get_model("gpp")


def test_register_model_in_process():
    class Dummy:
        def __init__(self, scale=1.0):
            self.scale = scale

    bp.register_model("dummy_in_process", Dummy)
    try:
        assert "dummy_in_process" in bp.list_models()
        assert bp.get_model("dummy_in_process", scale=3.0).scale == 3.0
    finally:
        registry._REGISTERED[registry.MODEL_GROUP].pop("dummy_in_process")


def test_builtin_names_cannot_be_replaced():
    with pytest.raises(InputError, match="built-in"):
        bp.register_backend("nuts", object)


def test_entry_point_plugin_listed_without_import(plugin_on_path):
    names = bp.list_models()
    assert "normal_mean" in names and "broken_model" in names
    assert "bayesplug_testplugin" not in sys.modules


def test_entry_point_plugin_fits_by_name(plugin_on_path):
    import numpy as np

    y = np.random.default_rng(0).normal(2.0, 1.0, size=30)
    fit = bp.fit("normal_mean", {"y": y}, num_warmup=300, num_samples=500, num_chains=2)
    precision = 1 / 100 + 30
    # Monte Carlo tolerance: 4 standard errors of the mean with the fit's own ESS.
    ess = fit.diagnostics()["ess_bulk_min"]
    tolerance = 4 * precision**-0.5 / np.sqrt(ess)
    assert abs(float(fit.samples["mu"].mean()) - y.sum() / precision) < tolerance


def test_broken_plugin_reported_by_name(plugin_on_path):
    with pytest.raises(ImportError, match="'broken_model'.*broken on purpose"):
        bp.get_model("broken_model")
    # the other plug-ins keep working
    assert bp.get_model("normal_mean").name == "normal_mean"
    assert "bayesplug.models:broken_model" in registry.plugin_errors()


@pytest.mark.parametrize("name", bp.list_backends())
def test_every_backend_describes_its_options(name):
    """The tutorials print these tables: every option with its default and a meaning."""
    table = bp.backend_options(name)
    options = bp.get_backend(name).options
    assert list(table.index) == list(options)
    assert all(
        table.loc[k, "default"] == opt.default or opt.default is None for k, opt in options.items()
    )
    assert table["meaning"].str.len().min() > 5

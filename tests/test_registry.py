"""The measure registry: one place that the library, the spec and the plots agree with."""

import inspect

import numpy as np
import pyarrow as pa
import pytest

import repalign.measures
from repalign.alignment_tables import as_alignment_table
from repalign.errors import RepalignError
from repalign.registry import (
    APPROXIMATIONS,
    LATER_COLUMNS,
    MEASURES,
    PARAMETERS,
    PASSES,
    RESULT_SCHEMA,
)
from repalign.spec import Measure, SpecError, parse_spec


def options(definition):
    """The keyword options of the measure's library function, with their defaults."""
    signature = inspect.signature(getattr(repalign.measures, definition.function))
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


@pytest.mark.parametrize("name", list(MEASURES))
def test_each_entry_has_the_defaults_of_its_library_function(name):
    definition = MEASURES[name]
    defaults = options(definition)
    assert defaults.get("kernel", "linear") == definition.kernels[0]
    assert defaults.get("estimator") == definition.estimators[0]
    for option, default in defaults.items():
        if option not in ("kernel", "estimator"):
            assert option in definition.parameters, option
            assert default == PARAMETERS[option], option


@pytest.mark.parametrize("name", list(MEASURES))
def test_the_library_takes_every_kernel_and_estimator_the_registry_lists(name):
    definition = MEASURES[name]
    function = getattr(repalign.measures, definition.function)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((30, 3)), rng.standard_normal((30, 3))
    takes = options(definition)
    for kernel in definition.kernels:
        for estimator in definition.estimators:
            given = {"kernel": kernel} if "kernel" in takes else {}
            if estimator is not None:
                given["estimator"] = estimator
            if "k" in takes:
                given["k"] = 5
            assert np.isfinite(function(X, Y, **given))
    if "estimator" in takes:
        with pytest.raises(RepalignError, match="estimator='nope'"):
            function(X, Y, estimator="nope")


def test_every_configuration_has_a_pass_and_every_pass_a_configuration():
    used = set()
    for definition in MEASURES.values():
        for kernel in definition.kernels:
            used.add(definition.pass_of(kernel))
        for method in definition.approximations:
            used.add(definition.pass_of("rbf", method))
        assert set(definition.approximations) <= set(APPROXIMATIONS)
        assert set(definition.parameters) <= set(PARAMETERS)
    assert used == set(PASSES)


def test_the_spec_allows_exactly_the_registered_names_kernels_and_approximations():
    schema = Measure.model_json_schema()["properties"]
    assert schema["name"]["enum"] == list(MEASURES)
    assert schema["approx"]["enum"] == ["none", *APPROXIMATIONS]
    for name, definition in MEASURES.items():
        for kernel in ("linear", "rbf"):
            content = {"store": "s", "out": "o", "measures": [{"name": name, "kernel": kernel}]}
            if kernel in definition.kernels:
                assert parse_spec(content).measures[0].kernel == kernel
            else:
                with pytest.raises(SpecError, match="has no kernel choice"):
                    parse_spec(content)
        if "rbf" not in definition.kernels:
            continue
        approximated = {e for es in definition.approximations.values() for e in es}
        for estimator in definition.estimators:
            for method in APPROXIMATIONS:
                measure = {"name": name, "kernel": "rbf", "estimator": estimator}
                content = {"store": "s", "out": "o", "measures": [{**measure, "approx": method}]}
                if estimator in approximated and method in definition.approximations:
                    assert parse_spec(content).measures[0].approx == method
                else:
                    with pytest.raises(SpecError, match="approx"):
                        parse_spec(content)


def test_plots_accept_a_table_of_the_schema_and_one_without_the_interval():
    empty = RESULT_SCHEMA.empty_table()
    assert as_alignment_table(empty) is empty
    older = empty.drop_columns(list(LATER_COLUMNS))
    assert as_alignment_table(older) is older
    with pytest.raises(RepalignError, match=r"it lacks \['reason'\]"):
        as_alignment_table(older.drop_columns(["reason"]))
    assert RESULT_SCHEMA.field("value").type == pa.float64()


def test_the_job_has_a_pass_for_every_pass_the_registry_names():
    from jobs.alignment import RUNS
    from repalign.registry import MEASURES, PASSES

    assert list(RUNS) == list(PASSES)
    named = {p for m in MEASURES.values() for p in m.passes.values()} | {
        m.approximate_pass for m in MEASURES.values() if m.approximate_pass
    }
    assert named <= set(PASSES), named - set(PASSES)

"""The job spec: one schema, refusing unknown keys and bad values by name."""

import json
from pathlib import Path

import pytest

from repalign.spec import SpecError, load_spec, parse_measure, parse_spec


def spec(**measure):
    return {"store": "s", "out": "o", "measures": [measure]}


def test_defaults_follow_the_library():
    parsed = parse_spec(
        {"store": "s", "out": "o", "measures": [{"name": "cka"}, {"name": "mmd2"}, {"name": "cca"}]}
    )
    cka, mmd, cca = parsed.measures
    assert (cka.kernel, cka.estimator, cka.sigma, cka.approx) == (
        "linear",
        "biased",
        "median",
        "none",
    )
    assert (mmd.kernel, mmd.estimator) == ("rbf", "unbiased")
    assert (cca.kernel, cca.estimator) == ("linear", None)
    assert parsed.experiment == "repalign" and parsed.representations is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"store": "s", "out": "o", "measures": [{"name": "cka"}], "colour": 1},
            "colour: Extra inputs",
        ),
        ({"store": "s", "measures": [{"name": "cka"}]}, "out: Field required"),
        ({"store": "s", "out": "o", "measures": "cka"}, "a valid list, got 'cka'"),
        ({"store": "s", "out": "o", "measures": []}, "measures: List should have at least 1"),
        (spec(name="rsa"), "measures.0.name"),
        (spec(name="cka", kernel="cubic"), "'linear' or 'rbf', got 'cubic'"),
        (
            {"store": "s", "out": "o", "measures": [{"name": "cka"}], "actors": 0},
            "actors: Input should be greater than or equal to 1, got 0",
        ),
        (spec(name="cka", estimator="unbiased"), "estimator 'unbiased' is not one of cka's"),
        (spec(name="hsic", estimator="song"), "'biased', 'unbiased'"),
        (spec(name="cca", kernel="rbf"), "cca has no kernel choice"),
        (spec(name="cka", sigma=-1.0), "sigma must be positive"),
        (spec(name="cka", sigma="mean"), "measures.0.sigma"),
        (spec(name="cka", approx="rff"), "approx='rff' applies to the rbf kernel"),
        (
            spec(name="cka", kernel="rbf", estimator="song", approx="rff"),
            "applies to the rbf kernel",
        ),
        (spec(name="mmd2", approx="nystrom"), "random Fourier features only"),
        (spec(name="cka", against="other"), "'against' (another store) applies to mmd2 only"),
        (spec(name="mutual_knn", k=0), "measures.0.k"),
        (spec(name="cka", k=3), "k=3 applies to mutual_knn, cknna; cka takes no k"),
        (spec(name="mutual_knn", sigma=1.0), "mutual_knn takes no sigma"),
        (spec(name="procrustes", squared=True), "squared=True applies to cca"),
        (spec(name="svcca", variance=1.5), "measures.0.variance"),
        (
            {
                "store": "s",
                "out": "o",
                "measures": [{"name": "cka"}, {"name": "cka", "approx": "none"}],
            },
            "share name, kernel and estimator",
        ),
    ],
)
def test_bad_specs_name_the_key_and_the_problem(content, message):
    with pytest.raises(SpecError, match="invalid job spec") as raised:
        parse_spec(content)
    assert message in str(raised.value)


def test_a_spec_read_back_parses_again():
    """`repalign run SPEC --actors 2` re-parses the spec it read, every option now given at its
    default: that must not count as setting an option a measure does not take."""
    from repalign.registry import MEASURES

    content = {"store": "s", "out": "o", "measures": [{"name": name} for name in MEASURES]}
    parsed = parse_spec(content)
    assert parse_spec(parsed.model_dump(exclude_none=True)) == parsed


def test_measure_shorthand():
    assert parse_measure("cka:linear:song") == {
        "name": "cka",
        "kernel": "linear",
        "estimator": "song",
    }
    assert parse_measure("cka:rbf,approx=rff,features=512") == {
        "name": "cka",
        "kernel": "rbf",
        "approx": "rff",
        "features": "512",
    }
    parsed = parse_spec(
        {"store": "s", "out": "o", "measures": [parse_measure("cka:rbf,approx=rff,features=512")]}
    )
    assert parsed.measures[0].features == 512 and parsed.measures[0].label == "cka:rbf:biased:rff"
    for bad in ("", "a:b:c:d", "cka,features"):
        with pytest.raises(SpecError, match="--measure"):
            parse_measure(bad)


def test_load_json_and_yaml(tmp_path):
    content = {"store": "s", "out": "o", "measures": [{"name": "ka"}]}
    (tmp_path / "job.json").write_text(json.dumps(content))
    (tmp_path / "job.yaml").write_text("store: s\nout: o\nmeasures:\n  - name: ka\n")
    assert load_spec(tmp_path / "job.json") == load_spec(tmp_path / "job.yaml")
    # the README's spec key `null`, which YAML reads as its null value
    for null in ("analytic", "permutation", "none"):
        (tmp_path / "null.yaml").write_text(
            f"store: s\nout: o\nmeasures: [{{name: cka}}]\nnull: {null}\n"
        )
        assert load_spec(tmp_path / "null.yaml").null == null
    (tmp_path / "broken.yaml").write_text("store: [")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(tmp_path / "list.yaml")
    with pytest.raises(SpecError, match="cannot read job spec"):
        load_spec(tmp_path / "missing.yaml")


def test_the_readme_spec_example_is_a_valid_spec(tmp_path):
    """The job spec in the README, as a user would copy it into a file."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "job.yaml").write_text(example)
    spec = load_spec(tmp_path / "job.yaml")
    assert (spec.null, spec.permutations, spec.jackknife) == ("analytic", 100, 16)
    assert "cka:rbf:biased:nystrom" in [m.label for m in spec.measures]


def test_measures_may_be_written_as_the_command_line_writes_them(tmp_path):
    """As README says: ``name[:kernel[:estimator]][,key=value...]`` strings, in a spec file too."""
    (tmp_path / "job.yaml").write_text(
        "store: s\nout: o\n"
        "measures: ['cka:linear:song', procrustes, 'ka:rbf,approx=rff,features=64']\n"
    )
    as_dicts = parse_spec(
        {
            "store": "s",
            "out": "o",
            "measures": [
                {"name": "cka", "kernel": "linear", "estimator": "song"},
                {"name": "procrustes"},
                {"name": "ka", "kernel": "rbf", "approx": "rff", "features": 64},
            ],
        }
    )
    assert load_spec(tmp_path / "job.yaml") == as_dicts
    with pytest.raises(SpecError, match="option 'k' must be key=value"):
        parse_spec({"store": "s", "out": "o", "measures": ["mutual_knn,k"]})

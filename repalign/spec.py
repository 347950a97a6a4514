"""Job specs: what a job computes, shared by the command line and the service.

A spec is JSON or YAML; its ``kind`` says which job it describes: ``alignment`` (the default;
``repalign run``) or ``stitching`` (``repalign stitch``). Unknown keys are refused, naming the
key. An alignment spec has these keys:

    kind: alignment
    store: path of the embedding store
    representations: names or globs (default: all)
    measures: a list of {name, kernel, estimator, sigma, approx, features, seed, k, ...}
    experiment: MLflow experiment (default "repalign")
    out: folder for alignment.parquet and the run's state
    actors: slots the work is dealt to: Ray actors, or threads in process (default: the CPUs
        Ray offers, or this machine's)
    executor: local | ray (default: chosen by the job's size, `jobs.alignment.choose_executor`)
    precision: float64 | float32 (default float64): the precision of each block's products in
        the moments pass; float32 accumulates across blocks in float64 (docs/design.md §4)
    null: analytic | permutation | none (default analytic): each pair's permutation null
        (null_mean, null_std, p_value, q_value, calibrated). analytic: in closed form for linear
        KA, biased CKA and biased HSIC (`repalign.measures.nulls`), other configurations have
        none; permutation: for every configuration but MMD², by running the job's passes again
        on B random re-pairings of the rows (`repalign.measures.permutation`, B + 1 times the
        job's work)
    permutations: B (default 100): the draws of null: permutation; the smallest p-value is
        1/(B + 1)
    jackknife: G (default none): give every linear-kernel value a std_err by the delete-one-group
        jackknife over G contiguous groups of rows, 16 being usual (`repalign.measures.jackknife`);
        the statistic is then computed in full, not incrementally

Each measure names one definition of `repalign.measures` (docs/design.md §3); the engine's value
for it equals the library function on the same arrays.

A stitching spec (`StitchingSpec`):

    kind: stitching
    store: a zoo store with its saved models and targets
    pairs: a list of {source: MODEL.LAYER, target: MODEL.LAYER} (default: every model into every
        trained model at matching relative depth, untrained controls included)
    stitcher: {affine, optimizer, max_epochs, patience, learning_rate, validation_fraction, seed}
    experiment, out: as above
    workers: parallel stitching tasks on Ray (default: the CPUs Ray offers; in process, one)
    executor: local | ray (default: chosen by the number of pairs, `jobs.stitching.choose_executor`)
"""

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from repalign.errors import RepalignError
from repalign.registry import APPROXIMATIONS, KERNELS, MEASURES, PARAMETERS


class SpecError(RepalignError):
    """A job spec is malformed: the message names each offending key and its problem."""


def _approximable():
    """``ka, cka (biased), hsic (biased) and mmd2 (biased, unbiased)``: what may be approximated."""
    parts = []
    for name, definition in MEASURES.items():
        estimators = dict.fromkeys(e for es in definition.approximations.values() for e in es)
        if estimators:
            given = ", ".join(e for e in estimators if e)
            parts.append(f"{name} ({given})" if given else name)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _choices(options):
    """Each measure's kernels or estimators (``options`` of a definition), for the schema."""
    listed = {name: [o for o in options(d) if o] for name, d in MEASURES.items()}
    return "; ".join(f"{name}: {', '.join(given)}" for name, given in listed.items() if given)


class Measure(BaseModel):
    """One measure configuration of a job; names, kernels, estimators, approximations and
    defaults come from `repalign.registry`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal[tuple(MEASURES)]
    kernel: Literal[KERNELS] | None = Field(
        default=None,
        description="the measure's first by default: " + _choices(lambda d: d.kernels),
    )
    estimator: str | None = Field(
        default=None,
        description="the measure's first by default, none for the others: "
        + _choices(lambda d: d.estimators),
    )
    sigma: float | Literal["median"] = PARAMETERS["sigma"]
    approx: Literal[("none", *APPROXIMATIONS)] = PARAMETERS["approx"]
    features: int = Field(default=PARAMETERS["features"], ge=8)
    seed: int = PARAMETERS["seed"]
    k: int = Field(default=PARAMETERS["k"], ge=1)
    variance: float = Field(default=PARAMETERS["variance"], gt=0, le=1)
    squared: bool = PARAMETERS["squared"]
    against: str | None = PARAMETERS["against"]

    @model_validator(mode="after")
    def _consistent(self):
        definition = MEASURES[self.name]
        allowed = definition.estimators
        if self.estimator is None and allowed[0] is not None:
            object.__setattr__(self, "estimator", allowed[0])
        if self.estimator not in allowed:
            choices = ", ".join(repr(a) for a in allowed if a) or "none"
            raise ValueError(f"estimator {self.estimator!r} is not one of {self.name}'s: {choices}")
        if self.kernel is None:
            object.__setattr__(self, "kernel", definition.kernels[0])
        if self.kernel not in definition.kernels:
            raise ValueError(f"{self.name} has no kernel choice: it is linear")
        if isinstance(self.sigma, float) and self.sigma <= 0:
            raise ValueError(f"sigma must be positive or 'median'; got {self.sigma}")
        if self.approx != "none":
            approximated = {e for es in definition.approximations.values() for e in es}
            if self.kernel != "rbf" or self.estimator not in approximated:
                raise ValueError(
                    f"approx={self.approx!r} applies to the rbf kernel of {_approximable()}; "
                    f"got {self.name} ({self.kernel}, {self.estimator})"
                )
            if self.approx not in definition.approximations:
                methods = definition.approximations
                raise ValueError(
                    f"{self.name} is approximated by "
                    f"{' or '.join(APPROXIMATIONS[m] for m in methods)} only ({', '.join(methods)})"
                )
        if self.against is not None and "against" not in definition.parameters:
            takers = [name for name, d in MEASURES.items() if "against" in d.parameters]
            raise ValueError(f"'against' (another store) applies to {', '.join(takers)} only")
        for option, default in PARAMETERS.items():
            # an option the measure does not take, set to anything but its default, would be
            # ignored without a word (a spec read back has every option at its default)
            if option not in definition.parameters and getattr(self, option) != default:
                takers = [name for name, d in MEASURES.items() if option in d.parameters]
                raise ValueError(
                    f"{option}={getattr(self, option)!r} applies to {', '.join(takers)}; "
                    f"{self.name} takes no {option}"
                )
        return self

    @property
    def label(self):
        """A short name of the configuration, e.g. ``cka:rbf:biased:rff``."""
        parts = [self.name, self.kernel, self.estimator or ""]
        if self.approx != "none":
            parts.append(self.approx)
        return ":".join(parts).rstrip(":")


class AlignmentSpec(BaseModel):
    """An all-pairs alignment job."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["alignment"] = "alignment"
    store: str
    representations: list[str] | None = None
    measures: list[Measure] = Field(min_length=1)
    experiment: str = "repalign"
    out: str
    actors: int | None = Field(default=None, ge=1)
    executor: Literal["local", "ray"] | None = None
    precision: Literal["float64", "float32"] = "float64"
    null: Literal["analytic", "permutation", "none"] = "analytic"
    permutations: int = Field(default=100, ge=1)
    jackknife: int | None = Field(default=None, ge=2)
    tile_bytes: int | None = Field(default=None, ge=1)

    @field_validator("measures", mode="before")
    @classmethod
    def _measure_strings(cls, measures):
        """A measure may be written as ``--measure`` and `repalign.pairwise` take it,
        ``name[:kernel[:estimator]][,key=value...]`` (`parse_measure`)."""
        if not isinstance(measures, list):
            return measures
        return [parse_measure(m) if isinstance(m, str) else m for m in measures]

    @model_validator(mode="after")
    def _distinct(self):
        seen = {}
        for measure in self.measures:
            key = (measure.name, measure.kernel, measure.estimator)
            if key in seen:
                raise ValueError(
                    f"measures {seen[key]} and {measure.label} share name, kernel and "
                    "estimator: a job computes each such configuration once"
                )
            seen[key] = measure.label
        return self


class Stitcher(BaseModel):
    """How each stitcher is trained (`repalign.stitching.train_stitcher`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    affine: bool = False
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    max_epochs: int = Field(default=30, ge=1)
    patience: int = Field(default=3, ge=1)
    learning_rate: float = Field(default=1e-2, gt=0)
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0


class StitchPair(BaseModel):
    """One stitch: the representation ``source`` mapped into the layer ``target``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(pattern=r"^[^.]+\..+$")
    target: str = Field(pattern=r"^[^.]+\..+$")


class StitchingSpec(BaseModel):
    """A stitching job: train a stitcher for each pair and put the paper's bound beside it."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["stitching"] = "stitching"
    store: str
    pairs: list[StitchPair] | None = Field(default=None, min_length=1)
    stitcher: Stitcher = Stitcher()
    experiment: str = "repalign"
    out: str
    workers: int | None = Field(default=None, ge=1)
    executor: Literal["local", "ray"] | None = None


SPECS = {"alignment": AlignmentSpec, "stitching": StitchingSpec}


def parse_spec(content, *, kind=None):
    """An `AlignmentSpec` or `StitchingSpec` from a dict, by its ``kind`` (default
    "alignment"), refusing bad keys and values with a `SpecError`.

    With ``kind`` given, a spec of another kind is refused too.
    """
    given = content.get("kind", "alignment") if isinstance(content, dict) else "alignment"
    if given not in SPECS:
        raise SpecError(f"invalid job spec: kind: {given!r} is not one of {', '.join(SPECS)}")
    if kind is not None and given != kind:
        raise SpecError(f"this is a {given} spec; a {kind} job needs kind: {kind}")
    try:
        return SPECS[given].model_validate(content)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}{_given(e)}"
            for e in exc.errors()
        )
        raise SpecError(f"invalid job spec: {problems}") from None


def _given(error):
    """The suffix that names the value a pydantic error refused, such as ``, got 'cubic'``,
    when it is one value: not for a missing key, nor the mapping or list holding the problem."""
    if error["type"] == "missing" or isinstance(error.get("input"), dict | list):
        return ""
    return f", got {error['input']!r}"


def load_spec(path, *, kind=None):
    """Read a spec from a .json, .yaml or .yml file (see `parse_spec`)."""
    return parse_spec(read_spec_file(path), kind=kind)


def read_spec_file(path):
    """The mapping a .json, .yaml or .yml spec file holds, not yet validated."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read job spec {path}: {exc.strerror}") from None
    try:
        content = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    if not isinstance(content, dict):
        raise SpecError(f"{path} must hold a mapping of keys to values.")
    if None in content:
        # YAML reads the key `null` as its null value, not as the string: the spec key is meant
        content["null"] = content.pop(None)
    return content


def parse_measure(text):
    """``name[:kernel[:estimator]][,key=value...]``, e.g. ``cka:rbf:biased,approx=rff``."""
    head, *options = text.split(",")
    parts = head.split(":")
    if len(parts) > 3 or not parts[0]:
        raise SpecError(f"--measure {text!r}: expected name[:kernel[:estimator]][,key=value...].")
    content = dict(zip(("name", "kernel", "estimator"), parts, strict=False))
    content = {k: v for k, v in content.items() if v}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise SpecError(f"--measure {text!r}: option {option!r} must be key=value.")
        content[key] = value
    return content

"""The job spec: what an alignment job computes, shared by ``repalign run`` and the service.

A spec is JSON or YAML with these keys (unknown keys are refused, naming the key):

    store: path of the embedding store
    representations: names or globs (default: all)
    measures: a list of {name, kernel, estimator, sigma, approx, features, seed, k, ...}
    experiment: MLflow experiment (default "repalign")
    out: folder for alignment.parquet and the run's state
    actors: number of Ray actors (default: the CPUs Ray offers)

Each measure names one definition of `repalign.measures` (design.md §3); the engine's value
for it equals the library function on the same arrays.
"""

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from repalign.errors import RepalignError

ESTIMATORS = {
    "ka": (None,),
    "cka": ("biased", "song", "lange"),
    "hsic": ("biased", "unbiased"),
    "mmd2": ("unbiased", "biased", "linear"),
    "procrustes": (None,),
    "cca": (None,),
    "svcca": (None,),
    "mutual_knn": (None,),
    "cknna": (None,),
}
KERNEL_MEASURES = ("ka", "cka", "hsic", "mmd2")
APPROXIMABLE = {
    ("ka", None),
    ("cka", "biased"),
    ("hsic", "biased"),
    ("mmd2", "biased"),
    ("mmd2", "unbiased"),
}


class SpecError(RepalignError):
    """A job spec is malformed: the message names each offending key and its problem."""


class Measure(BaseModel):
    """One measure configuration of a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["ka", "cka", "hsic", "mmd2", "procrustes", "cca", "svcca", "mutual_knn", "cknna"]
    kernel: Literal["linear", "rbf"] | None = None
    estimator: str | None = None
    sigma: float | Literal["median"] = "median"
    approx: Literal["none", "rff", "nystrom"] = "none"
    features: int = Field(default=1024, ge=8)
    seed: int = 0
    k: int = Field(default=10, ge=1)
    variance: float = Field(default=0.99, gt=0, le=1)
    squared: bool = False
    against: str | None = None

    @model_validator(mode="after")
    def _consistent(self):
        allowed = ESTIMATORS[self.name]
        if self.estimator is None and allowed[0] is not None:
            object.__setattr__(self, "estimator", allowed[0])
        if self.estimator not in allowed:
            choices = ", ".join(repr(a) for a in allowed if a) or "none"
            raise ValueError(f"estimator {self.estimator!r} is not one of {self.name}'s: {choices}")
        if self.kernel is None:
            object.__setattr__(self, "kernel", "rbf" if self.name == "mmd2" else "linear")
        if self.kernel == "rbf" and self.name not in KERNEL_MEASURES:
            raise ValueError(f"{self.name} has no kernel choice: it is linear")
        if isinstance(self.sigma, float) and self.sigma <= 0:
            raise ValueError(f"sigma must be positive or 'median'; got {self.sigma}")
        if self.approx != "none":
            if self.kernel != "rbf" or (self.name, self.estimator) not in APPROXIMABLE:
                raise ValueError(
                    f"approx={self.approx!r} applies to the rbf kernel of ka, cka (biased), "
                    f"hsic (biased) and mmd2 (biased, unbiased); got {self.name} "
                    f"({self.kernel}, {self.estimator})"
                )
            if self.approx == "nystrom" and self.name == "mmd2":
                raise ValueError("mmd2 is approximated by random Fourier features only (rff)")
        if self.against is not None and self.name != "mmd2":
            raise ValueError("'against' (another store) applies to mmd2 only")
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


def parse_spec(content):
    """An `AlignmentSpec` from a dict, refusing bad keys and values with a `SpecError`."""
    try:
        return AlignmentSpec.model_validate(content)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
        )
        raise SpecError(f"invalid job spec: {problems}") from None


def load_spec(path):
    """Read a spec from a .json, .yaml or .yml file."""
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
    return parse_spec(content)


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

"""A sweep's declared analysis plan: what will be tested, and how, written down with the spec.

A sweep spec may hold an ``analysis`` block; ``lmix sweep`` copies it into ``sweep.json``, and
``lmix report`` computes it first, as the primary analysis (or, for a plan written after the
runs were seen, as a post-hoc one), and labels everything else exploratory::

    analysis:
      written: before_runs               # before_runs (primary) or after_runs (post hoc, exploratory)
      primary: [final_acc, fgsm@2]       # final_acc, or fgsm@E: FGSM accuracy at eps E/255 (E in attack_eps)
      comparisons:
        - [lmix, fmix]                   # a - b, paired by seed; a group is a method at its defaults ...
        - [{method: lmix, k: 4}, fmix]   # ... or a method with mixing settings
        - {each: none}                   # every other group of the sweep's runs - none
        - {slope: k}                     # slope in k over FMix (k = 0) and LMix, one intercept per seed
      test: paired                       # the paired t-test over seeds
      correction: {method: holm, family: all}   # all: one family, every comparison x every primary
                                                # metric; per_metric: one family per primary metric

This module is a leaf (it imports no trainer, no yaml, no scipy), so that both the sweep, which
checks a plan against the runs its spec produces, and the report, which reads it back from
``sweep.json``, can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lmix._checks import is_real
from lmix.errors import LmixValueError

__all__ = [
    "FINAL",
    "PLAN_KEYS",
    "WRITTEN",
    "FAMILIES",
    "Group",
    "Comparison",
    "AnalysisPlan",
    "parse_plan",
    "metric_name",
]

FINAL = "final_acc"
PLAN_KEYS = ("written", "primary", "comparisons", "test", "correction")
WRITTEN = ("before_runs", "after_runs")
TESTS = ("paired",)
CORRECTIONS = ("holm",)
FAMILIES = ("all", "per_metric")
SLOPE_KEYS = ("k",)
_COMPARISON_FORMS = "[A, B] (A - B), {each: B} or {slope: k}"


@dataclass(frozen=True)
class Group:
    """The runs of one method at the given mixing settings (the others at the method's defaults).

    Attributes:
        method: the method's name, as the spec's ``method`` setting.
        settings: (mixing setting, value) pairs, sorted by setting.
    """

    method: str
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        """``lmix``, ``lmix k=4``."""
        return " ".join([self.method, *(f"{k}={_fmt(v)}" for k, v in self.settings)])

    def to_data(self) -> str | dict[str, Any]:
        """The group as a spec writes it."""
        return self.method if not self.settings else {"method": self.method, **dict(self.settings)}


@dataclass(frozen=True)
class Comparison:
    """One declared comparison.

    Attributes:
        kind: ``"difference"`` (``a - b``), ``"each"`` (every other group of the sweep - ``b``) or
            ``"slope"`` (the least-squares slope in ``key``).
        a: the first group of a difference (None otherwise).
        b: the reference group of a difference or of ``each`` (None for a slope).
        key: the setting of a slope (``"k"``; None otherwise).
    """

    kind: str
    a: Group | None = None
    b: Group | None = None
    key: str | None = None

    @property
    def label(self) -> str:
        """``lmix - fmix``, ``each - none``, ``slope in k``."""
        if self.kind == "slope":
            return f"slope in {self.key}"
        first = "each" if self.kind == "each" else self.a.label  # type: ignore[union-attr]
        return f"{first} - {self.b.label}"  # type: ignore[union-attr]

    def groups(self) -> list[Group]:
        """The groups this comparison names."""
        return [g for g in (self.a, self.b) if g is not None]

    def to_data(self) -> Any:
        """The comparison as a spec writes it."""
        if self.kind == "slope":
            return {"slope": self.key}
        if self.kind == "each":
            return {"each": self.b.to_data()}  # type: ignore[union-attr]
        return [self.a.to_data(), self.b.to_data()]  # type: ignore[union-attr]


@dataclass(frozen=True)
class AnalysisPlan:
    """A parsed, checked ``analysis`` block.

    Attributes:
        written: ``"before_runs"`` (a primary, confirmatory analysis) or ``"after_runs"`` (post hoc:
            written after results were seen, so exploratory).
        primary: the primary metrics: ``"final_acc"`` or an FGSM eps in 1/255 (a float).
        comparisons: the declared comparisons, in the spec's order.
        test: ``"paired"``: the paired t-test over the seeds both groups have.
        correction: ``"holm"``.
        family: ``"all"`` (one family: every comparison x every primary metric) or ``"per_metric"``.
    """

    written: str
    primary: tuple[str | float, ...]
    comparisons: tuple[Comparison, ...]
    test: str = "paired"
    correction: str = "holm"
    family: str = "all"

    @property
    def confirmatory(self) -> bool:
        """Written before the runs: its analysis is the primary one."""
        return self.written == "before_runs"

    def to_dict(self) -> dict[str, Any]:
        """The block as a spec writes it (``sweep.json`` holds this, and :func:`parse_plan` reads it back)."""
        return {
            "written": self.written,
            "primary": [metric_name(m) for m in self.primary],
            "comparisons": [c.to_data() for c in self.comparisons],
            "test": self.test,
            "correction": {"method": self.correction, "family": self.family},
        }


def metric_name(metric: str | float) -> str:
    """A metric as a plan names it: ``final_acc`` or ``fgsm@8``."""
    return FINAL if metric == FINAL else f"fgsm@{_fmt(float(metric))}"


def parse_plan(data: Any, *, where: str, attack_eps: tuple[float, ...] | None) -> AnalysisPlan:
    """Check an ``analysis`` block (a mapping, as ``yaml.safe_load`` or ``json.load`` returns it).

    Args:
        where: the start of every error message (``"sweep spec x.yaml: analysis"``).
        attack_eps: the eps (1/255) the sweep attacks its runs at (None: no attack), which
            ``fgsm@E`` metrics must name.

    Raises:
        LmixValueError: one line naming the key, what it holds and what is allowed.
    """
    if not isinstance(data, dict):
        raise LmixValueError(f"{where}: must be a mapping with keys {', '.join(PLAN_KEYS)}, got {_shown(data)}")
    unknown = sorted(str(k) for k in set(data) - set(PLAN_KEYS))
    missing = [k for k in PLAN_KEYS if k not in data]
    if unknown or missing:
        what = f"unknown key(s) {unknown}" if unknown else f"missing key(s) {missing}"
        raise LmixValueError(f"{where}: {what}; a plan has the keys {', '.join(PLAN_KEYS)}")
    written = _choice(data["written"], WRITTEN, f"{where}: written")
    test = _choice(data["test"], TESTS, f"{where}: test")
    method, family = _correction(data["correction"], f"{where}: correction")
    return AnalysisPlan(
        written=written,
        primary=_primary(data["primary"], f"{where}: primary", attack_eps),
        comparisons=_comparisons(data["comparisons"], f"{where}: comparisons"),
        test=test,
        correction=method,
        family=family,
    )


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise LmixValueError(f"{where}: must be one of {', '.join(allowed)}, got {_shown(value)}")
    return value


def _correction(value: Any, where: str) -> tuple[str, str]:
    keys = ("method", "family")
    if not isinstance(value, dict) or set(value) != set(keys):
        raise LmixValueError(
            f"{where}: must be a mapping {{method: holm, family: all|per_metric}} (the family named), "
            f"got {_shown(value)}"
        )
    return _choice(value["method"], CORRECTIONS, f"{where}: method"), _choice(
        value["family"], FAMILIES, f"{where}: family"
    )


def _primary(value: Any, where: str, attack_eps: tuple[float, ...] | None) -> tuple[str | float, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise LmixValueError(f"{where}: must be a non-empty list of metrics (final_acc, fgsm@E), got {_shown(value)}")
    eps = [e for e in (attack_eps or ()) if e > 0]
    allowed = "final_acc" + (f", fgsm@E with E one of {', '.join(_fmt(e) for e in eps)}" if eps else "")
    out: list[str | float] = []
    for item in value:
        metric = _metric(item)
        if metric is None:
            raise LmixValueError(f"{where}: {_shown(item)} is not a metric; allowed: {allowed}")
        if metric == 0.0:
            raise LmixValueError(f"{where}: {item} is FGSM at eps 0, the clean accuracy; name final_acc instead")
        if metric != FINAL and not any(math.isclose(float(metric), e, abs_tol=1e-6) for e in eps):
            reason = "the spec attacks no run (no attack_eps)" if not eps else "it is not an eps of attack_eps"
            raise LmixValueError(
                f"{where}: {item} names FGSM at eps {_fmt(float(metric))}, but {reason}; allowed: {allowed}"
            )
        if metric in out:
            raise LmixValueError(f"{where}: {item} is there twice")
        out.append(metric)
    return tuple(out)


def _metric(item: Any) -> str | float | None:
    """``"final_acc"`` or the eps of ``"fgsm@E"`` (None: neither)."""
    if item == FINAL:
        return FINAL
    if not isinstance(item, str) or not item.startswith("fgsm@"):
        return None
    try:
        eps = float(item.removeprefix("fgsm@"))
    except ValueError:
        return None
    return eps if math.isfinite(eps) else None


def _comparisons(value: Any, where: str) -> tuple[Comparison, ...]:
    if not isinstance(value, list) or not value:
        raise LmixValueError(f"{where}: must be a non-empty list of comparisons, each {_COMPARISON_FORMS}")
    out: list[Comparison] = []
    for i, item in enumerate(value):
        comparison = _comparison(item, f"{where}[{i}]")
        if comparison in out:
            raise LmixValueError(f"{where}[{i}]: {comparison.label} is there twice")
        out.append(comparison)
    return tuple(out)


def _comparison(item: Any, where: str) -> Comparison:
    if isinstance(item, list) and len(item) == 2:
        a, b = _group(item[0], where), _group(item[1], where)
        if a == b:
            raise LmixValueError(f"{where}: compares {a.label} with itself")
        return Comparison("difference", a=a, b=b)
    if isinstance(item, dict) and len(item) == 1 and "each" in item:
        return Comparison("each", b=_group(item["each"], where))
    if isinstance(item, dict) and len(item) == 1 and "slope" in item:
        if item["slope"] not in SLOPE_KEYS:
            raise LmixValueError(
                f"{where}: slope: {_shown(item['slope'])} is not allowed; allowed: {', '.join(SLOPE_KEYS)}"
            )
        return Comparison("slope", key=item["slope"])
    raise LmixValueError(f"{where}: must be {_COMPARISON_FORMS}, got {_shown(item)}")


def _group(value: Any, where: str) -> Group:
    """A method name, or ``{method: M, SETTING: VALUE, ...}``."""
    if isinstance(value, str) and value:
        return Group(value)
    if isinstance(value, dict) and isinstance(value.get("method"), str) and value["method"]:
        settings = {str(k): v for k, v in value.items() if k != "method"}
        for key, v in settings.items():
            if not (isinstance(v, (str, bool)) or is_real(v)) or (is_real(v) and not math.isfinite(float(v))):
                raise LmixValueError(f"{where}: group setting {key}: {_shown(v)} must be a number, text or true/false")
        return Group(value["method"], tuple(sorted(settings.items())))
    raise LmixValueError(
        f"{where}: a group is a method name or {{method: M, SETTING: VALUE}} (e.g. {{method: lmix, k: 4}}), "
        f"got {_shown(value)}"
    )


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

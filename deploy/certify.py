"""Certification: criteria per engine, judged on an evaluation; release only on a pass.

The accident-rate criterion uses a one-sided 95% Clopper-Pearson upper bound: a
controller passes only if the data make an accident rate above the limit unlikely, not
merely if the observed rate is below it. The report shows [lower, upper] one-sided 95%
bounds (a two-sided 90% interval) so its upper end is the number judged.
"""

from __future__ import annotations

import math
import shutil
import uuid
from pathlib import Path
from typing import Any

from safecritic.configs.schema import CriteriaConfig
from safecritic.deploy.artifact import CONTROLLER_FILE, MANIFEST_FILE, ONNX_FILE

CONFIDENCE = 0.95


def _binom_log_pmf(i: int, n: int, p: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    logs = [_binom_log_pmf(i, n, p) for i in range(0, k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def _bisect(f, target: float) -> float:
    """p in [0, 1] with f(p) = target, f decreasing in p."""
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided `confidence` lower and upper bounds on a binomial rate from k of n."""
    if n <= 0:
        raise ValueError("Clopper-Pearson needs at least one trial")
    alpha = 1.0 - confidence
    upper = 1.0 if k >= n else _bisect(lambda p: binom_cdf(k, n, p), alpha)
    lower = 0.0 if k <= 0 else _bisect(lambda p: binom_cdf(k - 1, n, p), 1.0 - alpha)
    return lower, upper


def judge(summary: dict[str, Any], criteria: CriteriaConfig, reference_return: float | None = None) -> list[dict[str, Any]]:
    """Each criterion with its measured value and pass/fail. `reference_return`: the mean return of
    criteria.return_reference on the same episodes (a behaviour, or a controller variant)."""
    checks = [
        ("accident_rate", "accident rate upper bound (CP 95%)", summary["accident_rate_upper"], "<=",
         criteria.accident_rate_upper),
        ("latency", "p99 latency (ms)", summary["latency_us"]["p99"] / 1000.0, "<=", criteria.latency_p99_ms),
    ]
    if criteria.success_rate_min is not None:
        if not summary.get("reports_success", True):
            raise ValueError("criterion success_rate_min needs an env that reports info['success']; this one does not: "
                             "set success_rate_min: null for it")
        checks.append(("success_rate", "success rate", summary["success_rate"], ">=", criteria.success_rate_min))
    if criteria.cost_budget is not None:
        checks.append(("normalised_cost", f"mean episode cost / budget {criteria.cost_budget:g}",
                       summary["mean_cost"] / criteria.cost_budget, "<=", 1.0))
    if criteria.mean_return_min is not None:
        checks.append(("mean_return", "mean return", summary["mean_return"], ">=", criteria.mean_return_min))
    if criteria.return_reference is not None:
        if reference_return is None:
            raise ValueError(f"criterion return_reference={criteria.return_reference!r} needs that reference's mean "
                             "return on the same episodes")
        checks.append(("return_reference", f"mean return vs {criteria.return_reference} (same episodes)",
                       summary["mean_return"], ">=", reference_return))
    out = []
    for key, name, value, op, limit in checks:
        ok = value <= limit if op == "<=" else value >= limit
        out.append({"key": key, "criterion": name, "value": value, "op": op, "limit": limit, "passed": bool(ok)})
    return out


def release(artifact_dir: Path, report_dir: Path | None, releases_dir: Path, name: str, sha256: str) -> Path:
    """Copy a passing artifact (and its report) to releases/<name>-<sha12>/, atomically."""
    target = Path(releases_dir) / f"{name}-{sha256[:12]}"
    if target.exists():
        return target  # the same bytes were released before
    staging = target.with_name(f".staging-{uuid.uuid4().hex[:8]}-{target.name}")
    staging.mkdir(parents=True)
    try:
        onnx = [ONNX_FILE] if (Path(artifact_dir) / ONNX_FILE).is_file() else []  # export --onnx: listed in the manifest
        for item in (CONTROLLER_FILE, MANIFEST_FILE, *onnx):
            shutil.copy2(Path(artifact_dir) / item, staging / item)
        if report_dir is not None and Path(report_dir).is_dir():
            shutil.copytree(report_dir, staging / "report")
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target

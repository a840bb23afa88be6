"""Certification: criteria per engine, judged on an evaluation; release only on a pass.

The accident-rate criterion uses a one-sided 95% Clopper-Pearson upper bound: a
controller passes only if the data make an accident rate above the limit unlikely, not
merely if the observed rate is below it. The report shows [lower, upper] one-sided 95%
bounds (a two-sided 90% interval) so its upper end is the number judged.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from pathlib import Path
from typing import Any

from safecritic.configs.errors import RunError
from safecritic.configs.schema import CriteriaConfig
from safecritic.deploy.artifact import DIGEST_FILE, MANIFEST_FILE, SIGNATURE_FILE
from safecritic.deploy.runtime import ArtifactError, load, read_verified

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


def check_artifact(artifact_dir: Path, trusted_keys: list[Path] | None = None) -> tuple[dict[str, Any], str, str | None]:
    """(manifest, digest, signer) of an artifact after every check the runtime makes, the module
    loaded and cross-checked against its manifest (and, with `trusted_keys`, the signature):
    what certification judges and reports (thresholds, spaces) is then what the module holds.
    ArtifactError otherwise."""
    controller = load(artifact_dir, threads=None, trusted_keys=trusted_keys or None)
    return controller.manifest, controller.digest, controller.signer


def check_report(report_dir: Path, digest: str) -> None:
    """Refuse a report folder whose report.json certifies another artifact (or none)."""
    path = Path(report_dir) / "report.json"
    try:
        certified = json.loads(path.read_text()).get("artifact_digest")
    except (OSError, ValueError, AttributeError):
        raise RunError(f"{path} is missing or not a certification report: certify the artifact again") from None
    if certified != digest:
        raise RunError(f"{path} certifies artifact {str(certified)[:16]}..., not this one ({digest[:16]}...): "
                       "a report from another export; certify this artifact (safecritic certify ARTIFACT_DIR)")


def release(artifact_dir: Path, report_dir: Path | None, releases_dir: Path, name: str, digest: str,
            sign_key: Path | None = None) -> Path:
    """Copy a passing artifact (every file its manifest lists, the manifest, the digest, and
    the report certifying that digest) to releases/<name>-<digest12>/, atomically; with
    `sign_key`, signed (signature.json) before it appears."""
    target = Path(releases_dir) / f"{name}-{digest[:12]}"
    if report_dir is not None and Path(report_dir).is_dir():
        check_report(report_dir, digest)
    if target.exists():  # the same artifact was released before
        try:
            released = read_verified(target)
        except ArtifactError as exc:
            raise RunError(f"{target} exists but does not verify ({exc}); move it away and release again") from None
        if released.digest != digest:
            raise RunError(f"{target} holds artifact {released.digest[:16]}..., not {digest[:16]}...; move it away")
        if sign_key is not None:
            _sign_existing(target, sign_key)
        return target
    staging = target.with_name(f".staging-{uuid.uuid4().hex[:8]}-{target.name}")
    staging.mkdir(parents=True)
    try:
        source = Path(artifact_dir)
        for item in (*read_verified(source).files, MANIFEST_FILE, DIGEST_FILE):
            shutil.copy2(source / item, staging / item)
        if (source / SIGNATURE_FILE).is_file() and sign_key is None:
            shutil.copy2(source / SIGNATURE_FILE, staging / SIGNATURE_FILE)
        if report_dir is not None and Path(report_dir).is_dir():
            shutil.copytree(report_dir, staging / "report")
        copied = read_verified(staging).digest  # what lands in releases/ is checked, not its source
        if copied != digest:
            raise RunError(f"{artifact_dir} changed while it was certified (digest {copied[:16]}... vs "
                           f"{digest[:16]}...); certify it again")
        if sign_key is not None:
            from safecritic.deploy.signing import sign_artifact

            sign_artifact(staging, sign_key)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _sign_existing(target: Path, sign_key: Path) -> None:
    """Sign an earlier, unsigned release of the same artifact; never replace another key's signature."""
    from safecritic.deploy.runtime import read_signature
    from safecritic.deploy.signing import sign_artifact, signer_id

    signature = read_signature(target)
    if signature is None:
        sign_artifact(target, sign_key)
    elif signature["key_id"] != signer_id(sign_key):
        raise RunError(f"{target} was released before, signed by key {signature['key_id']}; a release is never "
                       f"re-signed in place: move it away to release it again, or sign a copy with `safecritic sign`")

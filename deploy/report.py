"""report.md + report.json + figures for one certification (main artifact and its ablations)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safecritic.configs.fileio import atomic_write_text
from safecritic.configs.schema import Config
from safecritic.deploy import plots
from safecritic.deploy.baselines import behavior_runs_on_evaluation_episodes, return_gap
from safecritic.deploy.certify import judge
from safecritic.envs.rollout import summarize


def build_report(
    config: Config,
    manifest: dict[str, Any],
    evaluation: dict[str, Any],
    ablations: dict[str, dict[str, Any]],
    report_dir: Path,
) -> dict[str, Any]:
    """Judge every engine, write report.json, report.md and the PNGs; returns the report."""
    engines = {}
    for env_id, ev in evaluation["envs"].items():
        criteria = config.deploy.criteria[env_id]
        reference = None
        if criteria.mean_return_of_behavior is not None:
            runs = behavior_runs_on_evaluation_episodes(env_id, criteria.mean_return_of_behavior, len(ev["episodes"]),
                                                        config.deploy.seed, config.env.faults)
            reference = {"name": criteria.mean_return_of_behavior, **summarize(runs),
                         "gap": return_gap(ev["episodes"], runs)}
        checks = judge(ev["summary"], criteria, reference["mean_return"] if reference else None)
        engines[env_id] = {"summary": ev["summary"], "checks": checks, "passed": all(c["passed"] for c in checks),
                           "reference_behavior": reference}
    passed = all(e["passed"] for e in engines.values())
    failed = [f"{env_id}: {c['criterion']} = {_criterion_number(c['value'])} (needs {c['op']} {_criterion_number(c['limit'])}{_gap_note(c, e)})"
              for env_id, e in engines.items() for c in e["checks"] if not c["passed"]]
    ablation_rows = []
    for name, ab in {"gated (full)": {"manifest": manifest, "evaluation": evaluation}, **ablations}.items():
        for env_id, ev in ab["evaluation"]["envs"].items():
            s = ev["summary"]
            ablation_rows.append({"variant": name, "description": ab["manifest"]["variant"]["description"],
                                  "env_id": env_id, **{k: s[k] for k in (
                                      "mean_return", "success_rate", "accident_rate", "accident_rate_low",
                                      "accident_rate_upper", "mean_length", "decision_fractions", "ood_alarm_rate")},
                                  "latency_p99_us": s["latency_us"]["p99"]})
    report = {
        "run": config.run.name,
        "passed": passed,
        "failed_criteria": failed,
        "artifact_sha256": manifest["sha256"],
        "dataset": manifest["dataset"],
        "thresholds": manifest["thresholds"],
        "safe_action": {"constant": manifest["safe_action"], "braking": manifest.get("braking")},
        # The ranking is baked into the artifact: read it from the manifest, not from the certify config.
        "ranking": {"prior_weight": manifest["config"]["gate"]["prior_weight"],
                    "goal_approach": manifest.get("goal_approach")},
        "episodes": config.deploy.episodes,
        "seed": config.deploy.seed,
        "faults": config.env.faults.model_dump(),
        "engines": engines,
        "ablations": ablation_rows,
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report_dir / "report.json", json.dumps(report, indent=2))
    _figures(config, manifest, evaluation, ablation_rows, report_dir)
    atomic_write_text(report_dir / "report.md", render(report, config))
    return report


def _figures(config, manifest, evaluation, ablation_rows, report_dir: Path) -> None:
    episodes = {env_id: ev["episodes"] for env_id, ev in evaluation["envs"].items()}
    plots.returns_and_costs(episodes, report_dir / "returns_costs.png")
    rows = [{"label": r["variant"], "env_id": r["env_id"], "rate": r["accident_rate"], "low": r["accident_rate_low"],
             "upper": r["accident_rate_upper"]} for r in ablation_rows]
    limits = {e: c.accident_rate_upper for e, c in config.deploy.criteria.items()}
    plots.accident_rates(rows, limits, report_dir / "accident_rates.png")
    for env_id, eps in episodes.items():
        short = env_id.split("/")[-1]
        traced = [e for e in eps if e.get("trace")]
        if traced:
            # The most eventful traced episode: the one with the most non-policy decisions.
            ep = max(traced, key=lambda e: sum(e["decisions"][1:]))
            plots.decisions_over_episode(ep["trace"], manifest["thresholds"],
                                         f"{short}: gate decisions, episode #{ep['index']}", report_dir / f"decisions_{short}.png")
        if config.env.id.startswith("safecritic/PointNav") or env_id.startswith("safecritic/PointNav"):
            from safecritic.envs.pointnav.task import PointNavParams

            p = PointNavParams()
            plots.pointnav_trajectories(eps, f"{short}: trajectories", report_dir / f"trajectories_{short}.png",
                                        p.hazard_radius, p.goal_radius)


def _gap_note(check: dict[str, Any], engine: dict[str, Any]) -> str:
    """For a failed return bar against a behaviour: the gap's two main parts, in a few words."""
    ref = engine.get("reference_behavior")
    if check.get("key") != "mean_return_of_behavior" or not ref or "gap" not in ref:
        return ""
    u, b = ref["gap"]["unfinished"], ref["gap"]["both_finished"]
    return (f"; {u['contribution']:+.2f} from {u['episodes']} unfinished episode(s), "
            f"{b['contribution']:+.2f} from the pace of the {b['episodes']} both finished")


def _gap_line(name: str, gap: dict[str, Any], listed: int = 10) -> str:
    """The return gap to the reference behaviour, split into what the controller can fix."""
    u, b, o = gap["unfinished"], gap["both_finished"], gap["only_controller_finished"]
    which = ", ".join(f"{e['outcome']} #{e['index']}" for e in u["list"][:listed])
    more = f" and {len(u['list']) - listed} more (report.json)" if len(u["list"]) > listed else ""
    parts = [f"{u['contribution']:+.2f} from the {u['episodes']} episode(s) the controller did not finish"
             + (f" ({which}{more})" if which else "")]
    if b["episodes"]:
        parts.append(f"{b['contribution']:+.2f} from the {b['episodes']} both finished (pace: {b['mean_length']:.1f} "
                     f"vs {b['reference_mean_length']:.1f} steps)")
    if o["episodes"]:
        parts.append(f"{o['contribution']:+.2f} from the {o['episodes']} only the controller finished")
    return (f"Return against `{name}`, per episode: {gap['gap']:+.2f} = " + "; ".join(parts) + ". Episode numbers "
            "are evaluation indices from deploy.seed; `safecritic evaluate ... -o deploy.trajectories=N` keeps the "
            "first N episodes' observations and decision records in evaluation.json.")


def _criterion_number(x: float) -> str:
    """A criterion's value or limit: 4 significant digits below 10 (rates, milliseconds), two decimals above,
    so that a return of 37.00 against a bar of 37.11 does not print as "37"."""
    return f"{x:.4g}" if abs(x) < 10 else f"{x:.2f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _safe_action(report: dict[str, Any]) -> str:
    """What the fallback executes: the constant safe action, or the brake against the velocity."""
    safe = report["safe_action"]
    constant = ", ".join(f"{v:g}" for v in safe["constant"])
    if safe["braking"]:
        b = safe["braking"]
        return (f"safe action: brake, ({constant}) - {b['gain']:g} x observation entries {b['velocity_indices']} "
                "(the constant on a fault)")
    return f"safe action: constant ({constant})"


def _ranking(report: dict[str, Any]) -> str:
    """How the admissible candidates were ranked: Q_R + beta log pi_ref, and the goal approach if on."""
    ranking = report.get("ranking")
    if not ranking:
        return ""
    text = f"; ranking: Q_R + {ranking['prior_weight']:g} x log pi_ref"
    approach = ranking["goal_approach"]
    if approach:
        text += (f", + {approach['weight']:g} x progress towards the goal within {approach['radius']:g} of it "
                 f"(observation entries {approach['goal_indices']})")
    return text


def render(report: dict[str, Any], config: Config) -> str:
    lines = [f"# Certification report: {report['run']}", "",
             f"**{'PASSED' if report['passed'] else 'FAILED'}**. Artifact SHA-256 `{report['artifact_sha256']}`; "
             f"dataset `{report['dataset']['id']}`; {report['episodes']} episodes per engine from seed {report['seed']}; "
             f"cost threshold {report['thresholds']['cost']:g}, OOD threshold {report['thresholds']['ood']:.4g} "
             f"(conformal, alpha_fa = {report['thresholds']['ood_false_alarm_rate']:g}); {_safe_action(report)}"
             f"{_ranking(report)}.", ""]
    if any(v not in (0, 0.0, 1.0) for k, v in report["faults"].items()):
        lines += [f"Faults: {report['faults']}", ""]
    if report["failed_criteria"]:
        lines += ["Failed criteria:", ""] + [f"- {f}" for f in report["failed_criteria"]] + [""]
    for env_id, e in report["engines"].items():
        s = e["summary"]
        lines += [f"## {env_id}: {'pass' if e['passed'] else 'FAIL'}", "",
                  "| criterion | value | limit | |", "|---|---|---|---|"]
        for c in e["checks"]:
            lines.append(f"| {c['criterion']} | {_criterion_number(c['value'])} | {c['op']} {_criterion_number(c['limit'])} | {'pass' if c['passed'] else 'FAIL'} |")
        d = s["decision_fractions"]
        lines += ["", f"Success {_pct(s['success_rate'])}, accidents {s['accidents']}/{s['episodes']} "
                  f"({_pct(s['accident_rate'])}, 95% bounds [{_pct(s['accident_rate_low'])}, {_pct(s['accident_rate_upper'])}]), "
                  f"mean return {s['mean_return']:.2f} ± {s['std_return']:.2f}, mean length {s['mean_length']:.1f}. "
                  f"Decisions per step: policy {_pct(d['0'])}, other candidate {_pct(d['1'])}, fallback {_pct(d['2'])}, "
                  f"fault {_pct(d['3'])}; OOD alarms on the proposal {_pct(s['ood_alarm_rate'])} of steps. "
                  f"Latency per call: p50 {s['latency_us']['p50']:.0f} µs, p99 {s['latency_us']['p99']:.0f} µs.", ""]
        ref = e.get("reference_behavior")
        if ref:
            lines += [f"Reference behaviour `{ref['name']}` on the same episodes: success {_pct(ref['success_rate'])}, "
                      f"accidents {_pct(ref['accident_rate'])}, mean return {ref['mean_return']:.2f}, "
                      f"mean length {ref['mean_length']:.1f}.", ""]
            if "gap" in ref:
                lines += [_gap_line(ref["name"], ref["gap"]), ""]
    lines += ["## Ablations (same episodes)", "",
              "| variant | env | return | success | accident rate [95% bounds] | policy / other / fallback | OOD alarms | p99 µs |",
              "|---|---|---|---|---|---|---|---|"]
    for r in report["ablations"]:
        d = r["decision_fractions"]
        lines.append(f"| {r['variant']} | {r['env_id'].split('/')[-1]} | {r['mean_return']:.2f} | {_pct(r['success_rate'])} | "
                     f"{_pct(r['accident_rate'])} [{_pct(r['accident_rate_low'])}, {_pct(r['accident_rate_upper'])}] | "
                     f"{_pct(d['0'])} / {_pct(d['1'])} / {_pct(d['2'])} | {_pct(r['ood_alarm_rate'])} | {r['latency_p99_us']:.0f} |")
    lines += ["", "Variants: " + "; ".join(f"**{v}**: {d}" for v, d in dict.fromkeys(
        (r["variant"], r["description"]) for r in report["ablations"])), ""]
    lines += ["## Figures", "", "![returns and costs](returns_costs.png)", "", "![accident rates](accident_rates.png)", ""]
    for env_id in report["engines"]:
        short = env_id.split("/")[-1]
        lines += [f"![decisions {short}](decisions_{short}.png)", "", f"![trajectories {short}](trajectories_{short}.png)", ""]
    return "\n".join(lines)

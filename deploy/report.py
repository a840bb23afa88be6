"""report.md + report.json + figures for one certification (main artifact and its ablations)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safecritic.configs.fileio import atomic_write_text
from safecritic.configs.schema import Config
from safecritic.deploy import plots
from safecritic.deploy.baselines import behavior_runs_on_evaluation_episodes, episode_records, return_gap
from safecritic.deploy.certify import judge
from safecritic.deploy.runtime import artifact_digest
from safecritic.envs.registry import task_for
from safecritic.envs.rollout import summarize


# Controller variants a return bar may name, and the ablation that holds each (deploy/export.py).
VARIANT_OF_REFERENCE = {"bc": "bc", "bc_successful": "bc_successful", "actor": "gate_off",
                        "unconstrained": "unconstrained"}


def reference_episodes(config: Config, env_id: str, name: str, episodes: int,
                       ablations: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary, per-episode records) of a return bar's reference on the evaluation's episodes: a
    controller variant evaluated beside the artifact, or a scripted behaviour rolled out here."""
    if name in VARIANT_OF_REFERENCE:
        variant = VARIANT_OF_REFERENCE[name]
        if variant not in ablations:
            raise ValueError(f"return_reference {name!r} is the {variant!r} ablation, which was not evaluated: "
                             "certify a run with deploy.ablations: true (safecritic run)")
        ev = ablations[variant]["evaluation"]["envs"][env_id]
        return ev["summary"], sorted(ev["episodes"], key=lambda e: e["index"])
    runs = behavior_runs_on_evaluation_episodes(env_id, name, episodes, config.deploy.seed, config.env.faults)
    return summarize(runs), episode_records(runs)


def build_report(
    config: Config,
    manifest: dict[str, Any],
    evaluation: dict[str, Any],
    ablations: dict[str, dict[str, Any]],
    report_dir: Path,
    signed_by: str | None = None,
) -> dict[str, Any]:
    """Judge every engine, write report.json, report.md and the PNGs; returns the report.
    `signed_by`: the key id whose signature was verified before the evaluation, if any."""
    engines = {}
    for env_id, ev in evaluation["envs"].items():
        criteria = config.deploy.criteria[env_id]
        reference = None
        if criteria.return_reference is not None:
            summary, records = reference_episodes(config, env_id, criteria.return_reference, len(ev["episodes"]), ablations)
            reference = {"name": criteria.return_reference, **{k: summary[k] for k in (
                "success_rate", "accident_rate", "mean_return", "mean_length", "mean_cost")},
                "gap": return_gap(ev["episodes"], records)}
        checks = judge(ev["summary"], criteria, reference["mean_return"] if reference else None)
        engines[env_id] = {"summary": ev["summary"], "checks": checks, "passed": all(c["passed"] for c in checks),
                           "reference": reference}
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
                                      "accident_rate_upper", "mean_cost", "mean_length", "decision_fractions",
                                      "ood_alarm_rate")},
                                  "reports_success": s.get("reports_success", True),
                                  "latency_p99_us": s["latency_us"]["p99"]})
    report = {
        "run": config.run.name,
        "passed": passed,
        "failed_criteria": failed,
        "artifact_digest": artifact_digest(manifest),  # what this report certifies (release checks it)
        "signed_by": signed_by,
        "dataset": manifest["dataset"],
        "thresholds": manifest["thresholds"],
        "safe_action": manifest["safe_action"],
        "training": manifest.get("training", {}),
        "episodes": config.deploy.episodes,
        "seed": config.deploy.seed,
        "faults": config.env.faults.model_dump(),
        "engines": engines,
        "ablations": ablation_rows,
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report_dir / "report.json", json.dumps(report, indent=2))
    figures = _figures(config, manifest, evaluation, ablation_rows, report_dir)
    atomic_write_text(report_dir / "report.md", render(report, figures))
    return report


def _figures(config, manifest, evaluation, ablation_rows, report_dir: Path) -> list[tuple[str, str]]:
    """Write the report's PNGs; returns (caption, file name) of each, in order."""
    out = []
    episodes = {env_id: ev["episodes"] for env_id, ev in evaluation["envs"].items()}
    plots.returns_and_costs(episodes, report_dir / "returns_costs.png")
    out.append(("returns and costs", "returns_costs.png"))
    rows = [{"label": r["variant"], "env_id": r["env_id"], "rate": r["accident_rate"], "low": r["accident_rate_low"],
             "upper": r["accident_rate_upper"]} for r in ablation_rows]
    limits = {e: c.accident_rate_upper for e, c in config.deploy.criteria.items()}
    plots.accident_rates(rows, limits, report_dir / "accident_rates.png")
    out.append(("accident rates", "accident_rates.png"))
    for env_id, eps in episodes.items():
        short = env_id.split("/")[-1]
        traced = [e for e in eps if e.get("trace")]
        if traced:
            # The most eventful traced episode: the one with the most non-policy decisions.
            ep = max(traced, key=lambda e: sum(e["decisions"][1:]))
            plots.decisions_over_episode(ep["trace"], manifest["thresholds"],
                                         f"{short}: gate decisions, episode #{ep['index']}", report_dir / f"decisions_{short}.png")
            out.append((f"decisions {short}", f"decisions_{short}.png"))
        task = task_for(env_id)
        if task.plot_paths is not None and traced:
            task.plot_paths(eps, f"{short}: paths", report_dir / f"paths_{short}.png")
            out.append((f"paths {short}", f"paths_{short}.png"))
    return out


def _gap_note(check: dict[str, Any], engine: dict[str, Any]) -> str:
    """For a failed return bar against a behaviour: the gap's two main parts, in a few words."""
    ref = engine.get("reference")
    if check.get("key") != "return_reference" or not ref or "gap" not in ref:
        return ""
    if not engine.get("summary", {}).get("reports_success", True):
        return ""  # no success signal: nothing is "finished", so there is no split to report
    u, b = ref["gap"]["unfinished"], ref["gap"]["both_finished"]
    return (f"; {u['contribution']:+.2f} from {u['episodes']} unfinished episode(s), "
            f"{b['contribution']:+.2f} from the pace of the {b['episodes']} both finished")


def _gap_line(name: str, gap: dict[str, Any], reports_success: bool = True, listed: int = 10) -> str:
    """The return gap to the reference behaviour, split into what the controller can fix (where the
    task reports success: episodes not finished, pace)."""
    if not reports_success:
        return (f"Return against `{name}`, per episode: {gap['gap']:+.2f} (the task reports no success, so the gap "
                "is not split by finished episodes).")
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


def success_cell(summary: dict[str, Any]) -> str:
    """A summary's (or row's) success rate as a table cell, "-" for a task that reports no success:
    there a rate of 0 means nothing (the report, the CLI and bench/ tables print it so)."""
    return _pct(summary["success_rate"]) if summary.get("reports_success", True) else "-"


def _safe_action(report: dict[str, Any]) -> str:
    """What the fallback executes: the task's safe action, or a constant."""
    safe = report["safe_action"]
    if safe.get("module"):
        return f"safe action: the task's `{safe['module']}` (the constant on a fault)"
    return "safe action: constant (" + ", ".join(f"{v:g}" for v in safe["constant"]) + ")"


def _training_line(report: dict[str, Any]) -> list[str]:
    """The accident constraint on held-out states at the end of training, where the manifest records it."""
    final = report.get("training", {}).get("constraint")
    if not final:
        return []
    return [f"Accident constraint on held-out states at the end of training: it binds (the best candidate by return is "
            f"over the budget) at {_pct(final['constraint_binds'])} of them, with a multiplier of "
            f"{final['multiplier_where_binding']:.3g} (Q_R per unit of Q_C) on average there and 0 elsewhere; "
            f"{_pct(final['constraint_infeasible'])} are infeasible (no candidate within the budget: risk minimised); "
            f"the actor's own proposal is over the budget at {_pct(final['violation_where_feasible'])} of the feasible ones; "
            f"KL(pi || pi_beta) {final['kl_to_prior']:.2f} nats.", ""]


def render(report: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    lines = [f"# Certification report: {report['run']}", "",
             f"**{'PASSED' if report['passed'] else 'FAILED'}**. Artifact digest `{report['artifact_digest']}`"
             f"{' (signature of key ' + report['signed_by'] + ' verified)' if report.get('signed_by') else ''}; "
             f"dataset `{report['dataset']['id']}`; {report['episodes']} episodes per engine from seed {report['seed']}; "
             f"cost threshold {report['thresholds']['cost']:g}, OOD threshold {report['thresholds']['ood']:.4g} "
             f"(conformal, alpha_fa = {report['thresholds']['ood_false_alarm_rate']:g}); {_safe_action(report)}.", ""]
    lines += _training_line(report)
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
        success = f"Success {_pct(s['success_rate'])}, " if s.get("reports_success", True) else ""
        lines += ["", f"{success}accidents {s['accidents']}/{s['episodes']} "
                  f"({_pct(s['accident_rate'])}, 95% bounds [{_pct(s['accident_rate_low'])}, {_pct(s['accident_rate_upper'])}]), "
                  f"mean cost {s['mean_cost']:.3g} (episodes with a cost: {_pct(s['cost_episode_rate'])}), "
                  f"mean return {s['mean_return']:.2f} ± {s['std_return']:.2f}, mean length {s['mean_length']:.1f}. "
                  f"Decisions per step: policy {_pct(d['0'])}, other candidate {_pct(d['1'])}, fallback {_pct(d['2'])}, "
                  f"fault {_pct(d['3'])}; OOD alarms on the proposal {_pct(s['ood_alarm_rate'])} of steps. "
                  f"Latency per call: p50 {s['latency_us']['p50']:.0f} µs, p99 {s['latency_us']['p99']:.0f} µs.", ""]
        ref = e.get("reference")
        if ref:
            ref_success = f"success {_pct(ref['success_rate'])}, " if s.get("reports_success", True) else ""
            lines += [f"Reference `{ref['name']}` on the same episodes: {ref_success}"
                      f"accidents {_pct(ref['accident_rate'])}, mean cost {ref['mean_cost']:.3g}, mean return "
                      f"{ref['mean_return']:.2f}, mean length {ref['mean_length']:.1f}.", ""]
            lines += [_gap_line(ref["name"], ref["gap"], s.get("reports_success", True)), ""]
    lines += ["## Ablations (same episodes)", "",
              "| variant | env | return | success | accident rate [95% bounds] | mean cost | policy / other / fallback | OOD alarms | p99 µs |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["ablations"]:
        d = r["decision_fractions"]
        lines.append(f"| {r['variant']} | {r['env_id'].split('/')[-1]} | {r['mean_return']:.2f} | {success_cell(r)} | "
                     f"{_pct(r['accident_rate'])} [{_pct(r['accident_rate_low'])}, {_pct(r['accident_rate_upper'])}] | "
                     f"{r['mean_cost']:.3g} | {_pct(d['0'])} / {_pct(d['1'])} / {_pct(d['2'])} | {_pct(r['ood_alarm_rate'])} | {r['latency_p99_us']:.0f} |")
    lines += ["", "Variants: " + "; ".join(f"**{v}**: {d}" for v, d in dict.fromkeys(
        (r["variant"], r["description"]) for r in report["ablations"])), ""]
    lines += ["## Figures", ""]
    for caption, name in figures:
        lines += [f"![{caption}]({name})", ""]
    return "\n".join(lines)

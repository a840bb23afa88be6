"""The checks of a config that need to know the tasks: env ids, behaviours, labelers, references.

configs/ validates shapes and ranges only (it imports nothing above it); these checks run
before any stage does work, so a typo costs seconds, not a training run.
"""

from __future__ import annotations

from safecritic.configs.errors import ConfigError
from safecritic.configs.schema import Config
from safecritic.envs.registry import behaviors_for, check_env_id, import_modules, labelers

# Controller variants a return bar may name: evaluated beside the gated controller, on the same
# episodes, by `safecritic run` (deploy/export.py's ablations).
VARIANT_REFERENCES = ("bc", "bc_successful", "actor", "unconstrained")


def check_config(config: Config, collecting: bool = False) -> None:
    """Raise ConfigError naming the first setting that names something unknown."""
    import_modules(config.env.imports)
    for setting, env_id in [("env.id", config.env.id), *(("env.eval_ids", e) for e in config.env.eval_ids)]:
        try:
            check_env_id(env_id)
        except ConfigError:
            raise
        except Exception as exc:  # UnknownEnvError is a SafecriticError; name the setting too
            raise ConfigError(f"{setting}: {exc}") from None
    known = behaviors_for(config.env.id)
    if collecting and not known:
        raise ConfigError(f"{config.env.id} has no scripted behaviours to collect with: collect the dataset yourself "
                          "(docs/byo.md), or register a task with behaviours (envs/task.py)")
    if known:
        unknown = [name for name in config.data.behaviors if name not in known]
        if unknown:
            raise ConfigError(f"data.behaviors: unknown behaviour(s) {', '.join(map(repr, unknown))} for "
                              f"{config.env.id}; known: {', '.join(known)}")
    if config.data.cost_labeler is not None and config.data.cost_labeler not in labelers():
        raise ConfigError(f"data.cost_labeler: unknown cost labeler {config.data.cost_labeler!r}; known labelers: "
                          f"{', '.join(sorted(labelers()))}")
    for env_id, criteria in config.deploy.criteria.items():
        ref = criteria.return_reference
        if ref is None:
            continue
        if ref in VARIANT_REFERENCES:
            if not config.deploy.ablations:
                raise ConfigError(f"deploy.criteria[{env_id!r}].return_reference: {ref!r} is evaluated as an "
                                  "ablation: set deploy.ablations: true")
            continue
        if ref not in behaviors_for(env_id):
            raise ConfigError(
                f"deploy.criteria[{env_id!r}].return_reference: {ref!r} is neither a controller variant "
                f"({', '.join(VARIANT_REFERENCES)}) nor a scripted behaviour of {env_id} "
                f"({', '.join(behaviors_for(env_id)) or 'it has none'})")

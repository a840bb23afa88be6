"""Load a YAML config, apply `key.sub=value` overrides, validate with the schema.

Errors are turned into one `ConfigError` that lists every bad field with its value and
what is allowed, so a user fixes them all in one go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from safecritic.configs.errors import ConfigError
from safecritic.configs.schema import Config

PRESETS_DIR = Path(__file__).resolve().parent


def preset_path(name: str) -> Path:
    """Path of a packaged preset (a YAML file in configs/, by its stem)."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise ConfigError(f"no packaged preset {name!r}; known presets: {', '.join(known)}")
    return path


def parse_override(text: str) -> tuple[list[str], Any]:
    """`data.episodes=50` -> (['data', 'episodes'], 50); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value (e.g. -o data.episodes=50)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    return [part.strip() for part in key.split(".")], value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Set each dotted key in a nested dict (creating sections as needed)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Allowed keys of the section at `loc` (for 'unknown key' messages)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: field, value, what is allowed."""
    lines = [f"invalid config ({source}):"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "<top level>"
        if err["type"] == "extra_forbidden":
            allowed = _field_names(Config, loc[:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"  {field}: unknown key{hint}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if loc:
            lines.append(f"  {field} = {err.get('input')!r}: {msg}")
        else:
            lines.append(f"  {msg}")
    return "\n".join(lines)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read `path`, apply overrides, validate. (Which preset runs when none is named is the CLI's
    choice, safecritic.DEFAULT_PRESET: this layer knows no task.)"""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} not found; packaged presets are in {PRESETS_DIR} "
            f"({', '.join(sorted(p.name for p in PRESETS_DIR.glob('*.yaml')))})"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (env, data, run, ...)")
    overrides = list(overrides)
    return config_from_data(data, overrides, str(path) + (f" with overrides {overrides}" if overrides else ""))


def config_from_data(data: dict[str, Any], overrides: Iterable[str], source: str) -> Config:
    """A config from already-parsed sections (a file, a manifest, a run's config) with `key.sub=value`
    overrides applied, validated; a ConfigError naming `source`, the field and the fix otherwise."""
    try:
        return Config.model_validate(apply_overrides(data, overrides))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def dump_config(config: Config) -> str:
    """The resolved config as YAML (what a run directory keeps)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)

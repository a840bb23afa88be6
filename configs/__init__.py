"""Configuration: the pydantic schema, YAML presets and the loader with overrides."""

from safecritic.configs.errors import (
    ConfigError,
    DatasetError,
    RunError,
    SafecriticError,
    UnknownEnvError,
)
from safecritic.configs.loader import PRESETS_DIR, load_config, preset_path
from safecritic.configs.schema import Config

__all__ = [
    "Config",
    "ConfigError",
    "DatasetError",
    "PRESETS_DIR",
    "RunError",
    "SafecriticError",
    "UnknownEnvError",
    "load_config",
    "preset_path",
]

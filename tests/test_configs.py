"""configs/: presets load, overrides apply, every bad input names field, value and fix."""

from __future__ import annotations

import pytest

from safecritic.configs import Config, ConfigError, load_config, preset_path
from safecritic.configs.loader import dump_config

from conftest import REPO, SMOKE


def test_presets_load_and_default_is_pointnav():
    from safecritic.pipeline import load

    default = load(None)  # the CLI's default: the packaged main preset
    assert default == load_config(REPO / "configs" / "pointnav.yaml")
    assert default.data.dataset_id == "safecritic/pointnav/mixed-v0"
    assert load_config(SMOKE).data.episodes < default.data.episodes
    assert preset_path("smoke").name == "smoke.yaml"


def test_dotted_overrides_are_parsed_as_yaml():
    config = load_config(SMOKE, ["data.episodes=50", "env.faults.obs_noise_std=0.05", "run.name=x"])
    assert config.data.episodes == 50
    assert config.env.faults.obs_noise_std == 0.05
    assert config.run.name == "x"


def test_resolved_config_round_trips(tmp_path):
    config = load_config(SMOKE, ["data.episodes=7"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def test_unknown_key_names_field_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, ["data.episods=5"])
    text = str(err.value)
    assert "data.episods: unknown key" in text
    assert "episodes" in text and "dataset_id" in text


def test_out_of_range_names_field_value_and_limit():
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, ["data.episodes=-3"])
    text = str(err.value)
    assert "data.episodes = -3" in text and "greater than or equal to 1" in text


def test_values_keep_their_type_and_the_schema_stays_small():
    with pytest.raises(ConfigError, match="train.steps"):
        load_config(SMOKE, ["train.steps=true"])  # a bool is not a count
    assert load_config(SMOKE, ["critics.lr=1"]).critics.lr == 1.0  # an int is a fine float
    from safecritic.configs.schema import leaf_fields

    assert len(leaf_fields()) <= 70  # the bound; options the measurements rejected are deleted


def test_the_schema_imports_nothing_above_configs():
    import subprocess
    import sys

    code = ("import sys; import safecritic.configs.schema as s; "
            "print(sorted(m for m in sys.modules if m.startswith('safecritic.') and not m.startswith('safecritic.configs')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # `import safecritic` registers the tasks (envs.registry, envs.task), nothing else.
    assert set(eval(out)) <= {"safecritic.envs", "safecritic.envs.registry", "safecritic.envs.task"}


def test_several_errors_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, ["data.episodes=0", "run.threads=0"])
    assert "data.episodes" in str(err.value) and "run.threads" in str(err.value)


def test_unknown_env_id_lists_known_ids():
    from safecritic.envs.validate import check_config

    with pytest.raises(ConfigError) as err:
        check_config(load_config(SMOKE, ["env.id=safecritic/PointNavv-v0"]))
    text = str(err.value)
    assert "env.id" in text and "unknown env id 'safecritic/PointNavv-v0'" in text
    assert "safecritic/PointNav-v0" in text and "safecritic/PointNavBullet-v0" in text


def test_unknown_behaviour_labeler_and_reference_list_known_ones():
    from safecritic.envs.validate import check_config

    with pytest.raises(ConfigError, match="known: reckless, cautious, random, zigzag"):
        check_config(load_config(SMOKE, ["data.behaviors={daring: 1.0}"]))
    with pytest.raises(ConfigError, match="known labelers: hopper_velocity, pointnav_hazard"):
        check_config(load_config(SMOKE, ["data.cost_labeler=speed"]))
    with pytest.raises(ConfigError, match="neither a controller variant"):
        check_config(load_config(SMOKE, ["deploy.criteria={safecritic/PointNav-v0: {return_reference: careful}, "
                                         "safecritic/PointNavBullet-v0: {}}"]))


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(SMOKE, ["data.episodes"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_faults_default_is_inactive():
    assert not load_config(SMOKE).env.faults.active()
    assert load_config(SMOKE, ["env.faults.action_scale=0.5"]).env.faults.active()


def test_dataset_id_follows_minari_grammar():
    import minari.dataset.minari_dataset as md

    for good in ["safecritic/pointnav/mixed-v0", "a-v1", "ns/x_y-z-v12"]:
        assert load_config(SMOKE, [f"data.dataset_id={good}"]).data.dataset_id == good
        assert md.DATASET_ID_RE.fullmatch(good)
    for bad in ["scratch/n0.15-v0", "noversion", "a b-v0", "/lead-v0"]:
        with pytest.raises(ConfigError, match="data.dataset_id"):
            load_config(SMOKE, [f"data.dataset_id={bad}"])

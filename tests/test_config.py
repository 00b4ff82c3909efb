"""The config loader: whatever a user writes, it either builds a `Config` or says, in one
`ConfigError`, which key is wrong, what was given and what would be right."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
import yaml
from conftest import cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evoengine.config import Config, load_config
from evoengine.errors import ConfigError

# ---------------------------------------------------------------- arbitrary input

# Real key names (so generated documents reach deep into validation) mixed with noise.
SECTION_KEYS = {
    name: list(spec.type.fields()) if hasattr(spec.type, "fields") else [] for name, spec in Config.fields().items()
}
ALL_KEYS = sorted(
    {
        *SECTION_KEYS,
        *(k for keys in SECTION_KEYS.values() for k in keys),
        "extends",
        "name",
        "api_key_env",
        "base_url",
        "islands",
        "ring",
        "funsearch",
    }
)
keys = st.one_of(st.sampled_from(ALL_KEYS), st.text(max_size=12))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["ring", "funsearch", "full", "default", "openai", "ucb1", "cvt", "1e400", "-1", ""]),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
# Documents shaped like configs: real sections holding arbitrary values.
config_like = st.dictionaries(
    st.sampled_from(sorted(SECTION_KEYS) + ["extends"]),
    st.one_of(
        yaml_values,
        st.dictionaries(st.sampled_from(ALL_KEYS), yaml_values, max_size=4),
        st.lists(st.dictionaries(st.sampled_from(ALL_KEYS), yaml_values, max_size=4), max_size=3),
    ),
    max_size=6,
)
key_paths = st.lists(
    st.one_of(
        st.sampled_from(ALL_KEYS),
        st.sampled_from(["0", "1", "-1", "x", ""]),
        st.text(alphabet=string.printable, max_size=6),
    ),
    min_size=1,
    max_size=4,
)
override_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "ring",
            "funsearch",
            "nope",
            "[1, 2]",
            "{a: 1}",
            "[{name: m}]",
            "null",
            "3",
            "-3",
            "0.5",
            "!!python/name:os.system",
            "{",
            "'",
            "*alias",
            "&a [*a]",
            "1e999",
        ]
    ),
)
overrides = st.one_of(
    st.text(max_size=40),
    st.builds(lambda path, value: ".".join(path) + "=" + value, key_paths, override_values),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_quietly(preset: str | Path | None = None, sets: list[str] | tuple[str, ...] = ()) -> None:
    try:
        config = load_config(preset, sets)
    except ConfigError as exc:
        assert str(exc).strip(), "a ConfigError must say something"
        return
    assert isinstance(config, Config)


@SETTINGS
@given(text=st.text(max_size=300))
def test_any_text_as_a_config_file_loads_or_raises_config_error(tmp_path, text):
    path = tmp_path / "any.yaml"
    path.write_text(text)
    _load_quietly(path)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes_as_a_config_file_load_or_raise_config_error(tmp_path, data):
    path = tmp_path / "bytes.yaml"
    path.write_bytes(data)
    _load_quietly(path)


@SETTINGS
@given(doc=st.one_of(yaml_values, config_like))
def test_any_yaml_document_loads_or_raises_config_error(tmp_path, doc):
    path = tmp_path / "doc.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _load_quietly(path)


@SETTINGS
@given(sets=st.lists(overrides, min_size=1, max_size=4))
def test_any_set_overrides_load_or_raise_config_error(sets):
    _load_quietly(None, sets)


@SETTINGS
@given(doc=config_like, sets=st.lists(overrides, max_size=3))
def test_any_document_with_overrides_loads_or_raises_config_error(tmp_path, doc, sets):
    path = tmp_path / "doc.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _load_quietly(path, sets)


def test_absurdly_nested_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("islands: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)


def test_a_key_that_is_not_a_string_is_named_as_unknown(tmp_path):
    path = tmp_path / "numbers.yaml"
    path.write_text("1: 2\nbudget:\n  3: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "unknown key '1'" in str(err.value) and "unknown key 'budget.3'" in str(err.value)


def test_a_saved_config_that_is_not_a_mapping_is_a_config_error():
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(None, [], base=["budget"])


# ---------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    "yaml_text, path, nearest",
    [
        ("budgt:\n  candidates: 5\n", "budgt", "budget"),
        ("islands:\n  cuont: 3\n", "islands.cuont", "islands.count"),
        ("selection:\n  stratgy: uniform\n", "selection.stratgy", "selection.strategy"),
        ("models:\n  - name: m\n    api_key_enf: MY_KEY\n", "models.0.api_key_enf", "models.0.api_key_env"),
        ("models:\n  - name: a\n  - name: b\n    tempreature: 0.2\n", "models.1.tempreature", "models.1.temperature"),
    ],
)
def test_unknown_key_at_any_depth_names_its_path_and_the_nearest_key(tmp_path, yaml_text, path, nearest):
    file = tmp_path / "typo.yaml"
    file.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(file)
    message = str(err.value)
    assert f"unknown key '{path}'" in message
    assert f"did you mean '{nearest}'" in message
    assert str(file) in message


@pytest.mark.parametrize(
    "override, path, nearest",
    [
        ("sede=3", "sede", "seed"),
        ("concurrency.evaluatons=3", "concurrency.evaluatons", "concurrency.evaluations"),
        ("novelty.treshold=0.9", "novelty.treshold", "novelty.threshold"),
    ],
)
def test_unknown_key_in_set_names_its_path_and_the_nearest_key(override, path, nearest):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert f"unknown key '{path}'" in str(err.value) and f"did you mean '{nearest}'" in str(err.value)
    assert f"--set {override}" in str(err.value)


def test_unknown_key_in_a_models_list_set_through_set_is_named():
    with pytest.raises(ConfigError, match=r"models\.0\.base_ulr.*did you mean 'models\.0\.base_url'"):
        load_config(None, ["models=[{name: m, base_ulr: 'http://127.0.0.1:1/v1'}]"])


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    "override, key, shown",
    [
        ("islands.count=0", "islands.count", "0"),
        ("budget.candidates=lots", "budget.candidates", "'lots'"),
        ("islands.topology=star", "islands.topology", "'star'"),
        ("models=[{name: m, temperature: 7}]", "models.0.temperature", "7"),
        ("novelty.threshold=1.5", "novelty.threshold", "1.5"),
        ("selection.strategy=best", "selection.strategy", "'best'"),
    ],
)
def test_bad_value_names_the_key_and_the_value(override, key, shown):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert f"{key}:" in str(err.value) and f"(got {shown})" in str(err.value)


def test_literal_values_list_what_is_allowed():
    with pytest.raises(ConfigError, match="'ring', 'full', 'random' or 'isolated'"):
        load_config(None, ["islands.topology=star"])


def test_duplicate_model_names_and_an_unknown_judge_are_named():
    with pytest.raises(ConfigError, match=r"repeated: \['m'\]"):
        load_config(None, ["models=[{name: m}, {name: m}]"])
    with pytest.raises(ConfigError, match="novelty.judge: 'j' is not one of models"):
        load_config(None, ["models=[{name: m}]", "novelty.judge=j"])


def test_a_money_cap_that_could_never_bind_is_refused():
    # No model has a price: every call counts $0, and a paid run would go on past its cap.
    with pytest.raises(ConfigError, match=r"budget.cost_usd: no model has a price .* set the models' prices"):
        load_config(None, ["models=[{name: m}]", "budget.cost_usd=5"])
    load_config(None, ["models=[{name: m, price_in: 0.4}, {name: local}]", "budget.cost_usd=5"])  # one priced: fine
    load_config(None, ["budget.cost_usd=5"])  # offline: nothing is spent, the cap is harmless


@pytest.mark.parametrize(
    "override, says",
    [
        ("budget.candidates", "write it as key.path=value"),
        ("=3", "write it as key.path=value"),
        ("seed.x=1", "seed is not a section"),
        ("models.x=1", "models is a list of 0 item(s)"),
        ("models.0.name=m", "set the whole list"),
    ],
)
def test_malformed_set_says_how_to_write_it(override, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(None, [override])


def test_set_into_a_models_list_by_index_changes_that_model():
    config = load_config(None, ["models=[{name: a}, {name: b}]", "models.1.temperature=0.1"])
    assert [m.temperature for m in config.models] == [0.8, 0.1]


def test_a_config_is_read_only_and_a_changed_copy_is_checked_like_a_new_one():
    config = load_config(None, ["models=[{name: a}]", "budget.wall_time_s=5"])
    with pytest.raises(AttributeError, match="read-only"):
        config.budget.candidates = 10  # type: ignore[misc]
    assert config.budget.replace(candidates=10).candidates == 10 and config.budget.candidates == 200
    with pytest.raises(ValueError, match="candidates: Input should be greater than or equal to 1"):
        config.budget.replace(candidates=0)
    # what a run saves (config.yaml) builds the same config again, ints given to float keys included
    assert config.budget.wall_time_s == 5.0 and isinstance(config.budget.wall_time_s, float)
    assert Config(**yaml.safe_load(yaml.safe_dump(config.dump()))) == config


# ---------------------------------------------------------------- extends


def test_extends_chains_apply_from_the_base_up(tmp_path):
    (tmp_path / "base.yaml").write_text("extends: default\nseed: 1\nislands:\n  count: 3\n  population: 50\n")
    (tmp_path / "mid.yaml").write_text("extends: base.yaml\nseed: 2\nislands:\n  count: 5\n")
    (tmp_path / "top.yaml").write_text("extends: mid.yaml\nbudget:\n  candidates: 9\n")
    config = load_config(tmp_path / "top.yaml", ["islands.population=70"])
    assert config.seed == 2  # mid over base
    assert config.islands.count == 5  # mid over base, merged key by key
    assert config.islands.population == 70  # --set over everything
    assert config.budget.candidates == 9
    assert config.concurrency.proposals == 2  # from configs/default.yaml


def test_extends_is_resolved_beside_the_file_that_names_it(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text("seed: 11\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\n")
    monkeypatch.chdir(Path("/"))
    assert load_config(tmp_path / "child.yaml").seed == 11


def test_extends_loop_is_named(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text("extends: self.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "self.yaml")


def test_extends_of_a_missing_preset_lists_the_known_ones(tmp_path):
    (tmp_path / "c.yaml").write_text("extends: defualt\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert "no configs preset named 'defualt'" in str(err.value)
    assert "did you mean 'default'" in str(err.value) and "openai" in str(err.value)


# ---------------------------------------------------------------- island presets


def _preset(name: str) -> dict:
    return yaml.safe_load((Path(__file__).resolve().parent.parent / "islands" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", ["ring", "full", "isolated", "funsearch"])
def test_island_preset_by_name_in_yaml(tmp_path, name):
    (tmp_path / "c.yaml").write_text(f"extends: default\nislands: {name}\n")
    config = load_config(tmp_path / "c.yaml")
    preset = _preset(name)
    assert preset and {k: getattr(config.islands, k) for k in preset} == preset


def test_island_preset_by_name_through_set_then_a_key_of_it():
    config = load_config(None, ["islands=funsearch", "islands.count=6"])
    assert config.islands.topology == "isolated" and config.islands.reset_interval == 500
    assert config.islands.count == 6


def test_island_preset_in_yaml_then_a_key_through_set():
    config = load_config("default", ["islands=ring", "islands.migration_size=1"])
    assert config.islands.topology == "ring" and config.islands.migration_size == 1


def test_unknown_island_preset_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["islands=rnig"])
    message = str(err.value)
    assert "no islands preset named 'rnig'" in message and "did you mean 'ring'" in message
    for known in ("full", "funsearch", "isolated", "ring"):
        assert known in message
    (tmp_path / "c.yaml").write_text("islands: funsaerch\n")
    with pytest.raises(ConfigError, match="no islands preset named 'funsaerch'; did you mean 'funsearch'"):
        load_config(tmp_path / "c.yaml")


def test_unknown_config_preset_lists_the_known_ones():
    with pytest.raises(
        ConfigError, match=r"no configs preset named 'opena'; did you mean 'openai'\? \(known presets: .*default"
    ):
        load_config("opena")


# ---------------------------------------------------------------- through the CLI


@pytest.mark.parametrize(
    "args, says",
    [
        (["--set", "islands.count=0"], "islands.count: Input should be greater than or equal to 1 (got 0)"),
        (["--set", "islands=rnig"], "did you mean 'ring'"),
        (["--set", "budget.candidates"], "write it as key.path=value"),
        (["--set", "models=[{name: m, api_key_enf: K}]"], "did you mean 'models.0.api_key_env'"),
        (["-c", "no_such_preset"], "no configs preset named 'no_such_preset'"),
    ],
)
def test_cli_prints_config_errors_without_a_traceback(tmp_path, quadratic, args, says):
    run_dir = tmp_path / "r"
    proc = cli("run", str(quadratic), "--run-dir", str(run_dir), *args)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert not run_dir.exists()  # nothing was started

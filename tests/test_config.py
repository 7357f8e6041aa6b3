from pathlib import Path

import pytest

from indexer.config import Settings, load_settings
from indexer.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_default_file_matches_built_in_defaults() -> None:
    assert load_settings(REPO / "configs" / "default.toml", env={}) == Settings()


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[chunking]\nchunk_sise = 300\n")
    with pytest.raises(ConfigError, match="chunking.chunk_sise"):
        load_settings(cfg, env={})


def test_unknown_section_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[retrieval]\nmode = 'hybrid'\n[retrival]\nlimit = 3\n")
    with pytest.raises(ConfigError, match="retrival"):
        load_settings(cfg, env={})


@pytest.mark.parametrize(
    "toml, field",
    [
        ("[chunking]\nchunk_size = 9000\n", "chunk_size"),
        ("[chunking]\nchunk_size = 100\nchunk_overlap = 100\n", "chunk_overlap"),
        ("[retrieval]\nmode = 'fancy'\n", "mode"),
        ("[retrieval]\nprefetch_limit = 0\n", "prefetch_limit"),
    ],
)
def test_invalid_values_are_rejected(tmp_path: Path, toml: str, field: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=field):
        load_settings(cfg, env={})


def test_api_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[qdrant]\napi_key = 'secret'\n")
    with pytest.raises(ConfigError, match="QDRANT_API_KEY"):
        load_settings(cfg, env={})


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[qdrant]\nurl = 'http://file:6333'\n[model]\nname = 'file-model'\n")
    env = {"QDRANT_URL": "http://env:6333", "QDRANT_API_KEY": "k", "INDEXER_MODEL": "env-model"}
    s = load_settings(cfg, env=env)
    assert (s.qdrant.url, s.qdrant.api_key, s.model.name) == ("http://env:6333", "k", "env-model")
    s = load_settings(cfg, {"qdrant": {"url": "http://flag:6333"}, "model": {"name": None}}, env=env)
    assert s.qdrant.url == "http://flag:6333"
    assert s.model.name == "env-model"  # a flag left unset does not override


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[collection]\nname = 'from_env_file'\n")
    assert load_settings(env={"INDEXER_CONFIG": str(cfg)}).collection.name == "from_env_file"


def test_missing_and_broken_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, env={})


def test_api_key_is_not_printed() -> None:
    s = Settings().replace(qdrant={"api_key": "very-secret"})
    assert "very-secret" not in repr(s)

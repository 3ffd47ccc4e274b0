from pathlib import Path

import pytest

from app.config import Config, load_config


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCRAG_INDEX_DIR", raising=False)
    cfg = load_config(cwd=tmp_path)
    assert cfg.index_dir == tmp_path / ".docrag"
    assert cfg.dpi == Config.dpi and cfg.encoder == "auto" and cfg.qdrant_url is None


def test_priority_toml_then_index_toml_then_env_then_flags(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCRAG_INDEX_DIR", raising=False)
    (tmp_path / "docrag.toml").write_text('dpi = 100\ntop_k = 9\nrenderer = "pdf2image"\nindex_dir = "idx"\n')
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "docrag.toml").write_text("[docrag]\ntop_k = 7\nbatch_pages = 4\n")
    monkeypatch.setenv("DOCRAG_BATCH_PAGES", "8")
    monkeypatch.setenv("DOCRAG_QDRANT_URL", "http://localhost:6333")
    cfg = load_config({"dpi": 200, "top_k": None}, cwd=tmp_path)
    assert cfg.index_dir == tmp_path / "idx"
    assert cfg.dpi == 200  # flag beats file
    assert cfg.top_k == 7  # index folder's file beats the working directory's; a None flag is "not given"
    assert cfg.batch_pages == 8  # environment beats files
    assert cfg.renderer == "pdf2image" and cfg.qdrant_url == "http://localhost:6333"


def test_unknown_setting_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCRAG_INDEX_DIR", raising=False)
    (tmp_path / "docrag.toml").write_text("dpii = 3\n")
    with pytest.raises(ValueError, match=r"docrag.toml: unknown setting\(s\): dpii"):
        load_config(cwd=tmp_path)


def test_api_key_only_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("QDRANT_API_KEY", "s3cret")
    assert load_config(cwd=tmp_path).qdrant_api_key == "s3cret"
    assert Path(load_config({"index_dir": "/abs/x"}, cwd=tmp_path).index_dir) == Path("/abs/x")

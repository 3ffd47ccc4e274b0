import json

import numpy as np
from typer.testing import CliRunner

from app.cli import app


def test_train_init_writes_a_loadable_encoder(tmp_path):
    runner = CliRunner()
    out = tmp_path / "tiny"
    result = runner.invoke(app, ["train", "init", "--preset", "tiny", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["text_config"]["is_causal"] is False
    from moca_train.modeling import MoCaEncoder

    enc = MoCaEncoder.from_pretrained(out)
    assert enc.dim == 64 and np.isfinite(enc.encode_queries(["hello"])).all()
    again = runner.invoke(app, ["train", "init", "--preset", "tiny", "--out", str(out)])
    assert again.exit_code == 1 and "use --force" in again.output and "Traceback" not in again.output
    bad = runner.invoke(app, ["train", "init", "--preset", "huge", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "unknown preset 'huge'" in bad.output


def test_train_init_dtype_option(tmp_path):
    from safetensors.torch import load_file

    runner = CliRunner()
    out = tmp_path / "bf16"
    result = runner.invoke(app, ["train", "init", "--preset", "tiny", "--dtype", "bfloat16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "(bfloat16)" in result.output
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert {str(t.dtype) for t in load_file(str(out / "model.safetensors")).values()} == {"torch.bfloat16"}
    bad = runner.invoke(app, ["train", "init", "--preset", "3b", "--dtype", "fp8", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "error: unknown dtype 'fp8'; choose one of auto, float32, bfloat16" in bad.output
    assert not (tmp_path / "x").exists()  # rejected before anything is built or written

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

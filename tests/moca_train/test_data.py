"""CPT data: the PDF -> JSONL builder on a real Debian PDF, streaming, mixing, resumable batches."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from moca_train.data import CPTRow, CPTStream, DataError, Source, build_cpt_data, data_uri, load_image, parse_row


def _write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_builder_interleaves_each_page_image_with_its_text(cpt_jsonl, debian_pdfs):
    import pymupdf

    rows = [json.loads(line) for line in cpt_jsonl.read_text().splitlines()]
    assert len(rows) == 16  # max_pages=16 of a 30-page document
    with pymupdf.open(debian_pdfs["sample-plain.pdf"]) as doc:
        first_words = doc[0].get_text().split()[:3]
    for k, row in enumerate(rows):
        assert row["text"].startswith("<image>\n") and row["text"].count("<image>") == 1
        assert len(row["images"]) == 1 and not Path(row["images"][0]).is_absolute()
        image = cpt_jsonl.parent / row["images"][0]
        assert image.is_file() and image.name == f"p{k + 1:05d}.png"
        with Image.open(image) as im:
            assert im.mode == "RGB" and im.height > im.width  # a portrait page
    assert " ".join(first_words) in " ".join(rows[0]["text"].split())  # the text layer, same page
    row = parse_row(rows[3], base_dir=cpt_jsonl.parent)
    assert load_image(row.images[0], row.base_dir).size == Image.open(cpt_jsonl.parent / rows[3]["images"][0]).size


def test_builder_reports_bad_documents_and_keeps_going(tmp_path, debian_pdfs):
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"<html>not a pdf</html>")
    seen = []
    report = build_cpt_data([bad, debian_pdfs["sample-plain.pdf"]], tmp_path / "out" / "d.jsonl", dpi=36,
                            max_pages=2, progress=lambda name, n: seen.append(name))
    assert report.pages == 2 and report.documents == 1 and len(seen) == 2
    assert len(report.problems) == 1 and "broken.pdf" in report.problems[0] and "not a PDF" in report.problems[0]
    assert len((tmp_path / "out" / "d.jsonl").read_text().splitlines()) == 2
    assert not (tmp_path / "out" / "d.jsonl.tmp").exists()


def test_rows_validate_and_images_may_be_inline(tmp_path):
    uri = data_uri(Image.new("RGB", (30, 20), "red"))
    row = parse_row({"text": "a <image> b", "images": [uri]})
    assert load_image(row.images[0]).size == (30, 20)
    with pytest.raises(DataError, match="placeholders"):
        parse_row({"text": "a <image> <image>", "images": [uri]})
    with pytest.raises(DataError, match="'images'"):
        parse_row({"text": "a", "images": "x.png"})
    assert parse_row({"text": "only text"}).images == []
    assert Source.parse("a.jsonl:0.25") == Source("a.jsonl", 0.25)
    assert Source.parse({"path": "b.jsonl"}) == Source("b.jsonl", 1.0)
    assert Source.parse("c.jsonl") == Source("c.jsonl", 1.0)


def test_stream_reads_lazily_and_skips_bad_rows(tmp_path):
    path = tmp_path / "a.jsonl"
    with open(path, "w") as f:
        f.write(json.dumps({"text": "one"}) + "\n")
        f.write("{not json\n\n")
        f.write(json.dumps({"text": "x <image>", "images": []}) + "\n")  # placeholder without image
        f.write(json.dumps({"text": "two"}) + "\n")
    stream = CPTStream([path], loop=False)
    assert stream.next_row().text == "one"
    assert stream.offsets[0] == len(json.dumps({"text": "one"})) + 1  # a byte offset, not a loaded list
    with open(path, "a") as f:  # rows appended after the stream opened are still read: nothing was preloaded
        f.write(json.dumps({"text": "three"}) + "\n")
    assert [r.text for r in stream] == ["two", "three"]
    assert stream.skipped == 2


def test_mixing_weights_are_honoured_and_sources_loop(tmp_path):
    a = _write_rows(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(50)])
    b = _write_rows(tmp_path / "b.jsonl", [{"text": f"b{i}"} for i in range(7)])
    stream = CPTStream([Source(str(a), 0.8), f"{b}:0.2"], seed=3)
    rows = [stream.next_row() for _ in range(3000)]
    share = Counter(r.source for r in rows)[str(a)] / len(rows)
    assert abs(share - 0.8) < 0.03, share
    assert stream.epochs[1] > 50  # the 7-row source looped many times
    # Order within a source is the file order, pass after pass.
    b_rows = [r.text for r in rows if r.source == str(b)]
    assert b_rows[:14] == [f"b{i}" for i in range(7)] * 2
    with pytest.raises(ValueError, match="sum to zero"):
        CPTStream([Source(str(a), 0.0)])
    with pytest.raises(FileNotFoundError):
        CPTStream([tmp_path / "missing.jsonl"])


@pytest.mark.parametrize("shuffle_buffer", [0, 8])
def test_stream_resumes_exactly_from_its_state(tmp_path, shuffle_buffer):
    a = _write_rows(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(23)])
    b = _write_rows(tmp_path / "b.jsonl", [{"text": f"b{i}"} for i in range(5)])
    straight = CPTStream([a, b], seed=1, shuffle_buffer=shuffle_buffer)
    texts = [straight.next_row().text for _ in range(80)]
    first = CPTStream([a, b], seed=1, shuffle_buffer=shuffle_buffer)
    head = [first.next_row().text for _ in range(37)]
    state = json.loads(json.dumps(first.state_dict()))  # the state is plain JSON
    second = CPTStream([a, b], seed=1, shuffle_buffer=shuffle_buffer)
    second.load_state_dict(state)
    assert head + [second.next_row().text for _ in range(43)] == texts
    if shuffle_buffer:
        assert texts[:23] != sorted(texts[:23], key=lambda t: (t[0], int(t[1:])))  # actually shuffled


def test_cpt_steps_resume_and_respect_the_token_budget(cpt_jsonl, make_cpt_config, tmp_path):
    from moca_train.stages.cpt import CPTTask

    cfg = make_cpt_config([str(cpt_jsonl)], tmp_path)
    task = CPTTask(cfg)
    steps = task.make_steps(rank=0, world=1, micro_batches=2)
    for _ in range(3):
        for plan in steps.batches or []:
            costs = [s.cost for s in plan]
            assert len(plan) == 1 or max(costs) * len(plan) <= cfg.token_budget
        steps.next_step()
    state = steps.state_dict()
    expected = [steps.next_step() for _ in range(4)]
    again = task.make_steps(rank=0, world=1, micro_batches=2)
    again.load_state_dict(state)
    for want in expected:
        got = again.next_step()
        assert len(got) == len(want) == 2
        for g, w in zip(got, want, strict=True):
            assert g.keys() == w.keys()
            for k in g:
                assert torch.equal(g[k], w[k]), k
    # Rank r of a 2-rank run gets exactly the micro-batches a single process would do at positions r.
    single = task.make_steps(rank=0, world=1, micro_batches=2).next_step()
    rank1 = task.make_steps(rank=1, world=2, micro_batches=1).next_step()
    assert torch.equal(rank1[0]["input_ids"], single[1]["input_ids"])
    assert torch.equal(rank1[0]["mae_mask"], single[1]["mae_mask"])


def test_row_dataclass_round_trips():
    row = CPTRow(text="<image> caption", images=["a.png"])
    assert parse_row(row.to_json()).images == ["a.png"]


def test_a_strip_image_is_padded_and_its_size_says_so(tmp_path):
    # The collators count visual tokens from image_size (header only): it must match what load_image returns.
    from moca_train.data import image_size

    Image.new("RGB", (3, 1200), "black").save(tmp_path / "strip.png")
    img = load_image("strip.png", tmp_path)
    assert image_size("strip.png", tmp_path) == img.size == (8, 1200)
    assert img.getpixel((0, 600)) == (255, 255, 255) and img.getpixel((3, 600)) == (0, 0, 0)

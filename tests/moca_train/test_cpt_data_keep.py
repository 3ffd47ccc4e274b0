"""`build_cpt_data(keep=...)`: only the selected pages become rows, and `report.images` names each row's image."""

from __future__ import annotations

import json


def test_keep_selects_pages_and_report_maps_them_to_images(tmp_path, debian_pdfs):
    from moca_train.data import build_cpt_data

    pdf = debian_pdfs["sample-plain.pdf"]
    out = tmp_path / "rows.jsonl"
    report = build_cpt_data([pdf], out, dpi=24, max_pages=5, keep=lambda path, page: page != 2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert report.pages == len(rows) == 4
    assert sorted(page for _, page in report.images) == [1, 3, 4, 5]
    assert [r["images"][0] for r in rows] == list(report.images.values())
    assert all((tmp_path / image).is_file() for image in report.images.values())
    assert {path for path, _ in report.images} == {str(pdf.resolve())}

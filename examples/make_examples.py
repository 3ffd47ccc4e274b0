"""Write docrag's example PDFs: a text report, a table and a chart (deterministic, no downloads).

    python examples/make_examples.py --out examples
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pymupdf

A4 = pymupdf.paper_rect("a4")
META = {"producer": "docrag examples", "creator": "docrag examples", "creationDate": "", "modDate": ""}


def _new(title: str) -> pymupdf.Document:
    doc = pymupdf.open()
    doc.set_metadata({**META, "title": title})
    return doc


def text_report(path: Path) -> None:
    doc = _new("Field notes on solar panel maintenance")
    paragraphs = [
        ("Field notes on solar panel maintenance", 18),
        ("Dust and pollen reduce the output of a rooftop array by up to 7 percent per month in dry "
         "seasons. Cleaning with deionised water at dawn avoids thermal shock to the glass.", 11),
        ("Inverter checks", 14),
        ("Inverters log their faults. An isolation fault after heavy rain usually points to a damaged "
         "connector; replace it rather than taping it. Check the fan filter every spring.", 11),
    ]
    for page_no in range(2):
        page = doc.new_page(width=A4.width, height=A4.height)
        y = 72
        for text, size in paragraphs if page_no == 0 else paragraphs[2:]:
            box = pymupdf.Rect(72, y, A4.width - 72, y + 200)
            page.insert_textbox(box, text, fontsize=size, fontname="helv")
            y += 40 if size > 12 else 90
        if page_no == 1:
            page.insert_textbox(pymupdf.Rect(72, y, A4.width - 72, y + 200),
                                "Warranty claims need the serial number printed under the junction box.",
                                fontsize=11, fontname="helv")
    doc.save(path, garbage=4, deflate=True, no_new_id=True)


def sales_table(path: Path) -> None:
    doc = _new("Quarterly revenue by region")
    page = doc.new_page(width=A4.width, height=A4.height)
    page.insert_text((72, 90), "Quarterly revenue by region (EUR thousands)", fontsize=16, fontname="helv")
    rows = [["Region", "Q1", "Q2", "Q3", "Q4"], ["North", "412", "398", "455", "501"],
            ["South", "305", "322", "341", "360"], ["East", "128", "177", "203", "260"],
            ["West", "290", "284", "301", "333"], ["Total", "1135", "1181", "1300", "1454"]]
    x0, y0, cw, rh = 72, 120, 90, 26
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(x0 + c * cw, y0 + r * rh, x0 + (c + 1) * cw, y0 + (r + 1) * rh)
            page.draw_rect(rect, color=(0, 0, 0), fill=(0.85, 0.9, 1) if r == 0 else None, width=0.6)
            page.insert_text((rect.x0 + 8, rect.y1 - 8), cell, fontsize=11, fontname="hebo" if r == 0 else "helv")
    page.insert_text((72, y0 + len(rows) * rh + 30), "East grew fastest: +103% from Q1 to Q4.", fontsize=11)
    doc.save(path, garbage=4, deflate=True, no_new_id=True)


def chart(path: Path) -> None:
    doc = _new("Website visitors per month")
    page = doc.new_page(width=A4.width, height=A4.height)
    page.insert_text((72, 90), "Website visitors per month, 2024", fontsize=16, fontname="helv")
    values = [3.1, 3.4, 4.2, 5.0, 6.3, 7.9, 8.4, 8.1, 6.6, 5.2, 4.0, 3.6]
    months = "JFMAMJJASOND"
    base, left, bar_w, scale = 420, 90, 30, 30
    page.draw_line((left - 10, base), (left + 12 * (bar_w + 8), base), color=(0, 0, 0))
    for i, v in enumerate(values):
        x = left + i * (bar_w + 8)
        page.draw_rect(pymupdf.Rect(x, base - v * scale, x + bar_w, base), color=None, fill=(0.2, 0.45, 0.8))
        page.insert_text((x + 10, base + 16), months[i], fontsize=10)
    page.insert_text((72, base + 50), "Visitors (thousands) peak in July with the summer campaign.", fontsize=11)
    doc.save(path, garbage=4, deflate=True, no_new_id=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for name, make in (("solar-maintenance.pdf", text_report), ("revenue-table.pdf", sales_table),
                       ("visitors-chart.pdf", chart)):
        make(out / name)
        print(out / name)


if __name__ == "__main__":
    main()

"""Hard-negative selection: never the positive, never its document's pages within the window, no repeats."""

from __future__ import annotations

from moca_train.data.mining import Candidate, MiningReport, mine_hard_negatives, select_negatives
from moca_train.data.pairs import PairRow


def _cands(tmp_path):
    out = []
    for doc in ("a.pdf", "b.pdf"):
        for page in range(1, 6):
            img = tmp_path / doc / f"{page:05d}.webp"
            out.append(Candidate(str(tmp_path / doc), page, str(img), f"{doc} page {page}"))
    return out


def test_positive_and_its_neighbours_are_skipped(tmp_path):
    cands = _cands(tmp_path)
    # The positive is a.pdf page 3, known only by its image: the retriever's hit on it tells the document.
    row = PairRow(query="q", pos_image=str(tmp_path / "a.pdf" / "00003.webp"))
    picked = select_negatives(row, cands, k=10, window=1)
    got = {(c.doc.rsplit("/", 1)[-1], c.page) for c in picked}
    assert ("a.pdf", 3) not in got and ("a.pdf", 2) not in got and ("a.pdf", 4) not in got
    assert {("a.pdf", 1), ("a.pdf", 5)} <= got and len(got) == 7
    # By name and page, a window of 0 skips only the positive itself.
    row = PairRow(query="q", pos_image="elsewhere.png", pos_doc="a.pdf", pos_page=3)
    assert len(select_negatives(row, cands, k=10, window=0)) == 9
    # No page number: the whole document is skipped.
    row = PairRow(query="q", pos="text", pos_doc="b.pdf")
    assert {c.doc.rsplit("/", 1)[-1] for c in select_negatives(row, cands, k=10)} == {"a.pdf"}


def test_mining_adds_negatives_in_the_positives_modality(tmp_path):
    cands = _cands(tmp_path)
    rows = [PairRow(query="q1", pos_image=str(tmp_path / "a.pdf" / "00001.webp"),
                    neg_images=[str(tmp_path / "b.pdf" / "00001.webp")]),
            PairRow(query="q2", pos="a.pdf page 1")]
    report = MiningReport()
    out = list(mine_hard_negatives(rows, lambda q: cands, k=2, window=1, report=report))
    assert out[0].neg_images[0] == str(tmp_path / "b.pdf" / "00001.webp")  # the row's own one stays first
    assert [c.rsplit("/", 1)[-1] for c in out[0].neg_images[1:]] == ["00003.webp", "00004.webp"]  # pages 1-2 skipped
    assert out[1].negs == ["a.pdf page 2", "a.pdf page 3"] and out[1].neg_images == []  # text positive: texts
    assert (report.rows, report.negatives, report.short) == (2, 4, 0)

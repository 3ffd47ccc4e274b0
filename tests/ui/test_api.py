"""The UI's named API endpoints (`search`, `ask`, `status`) driven by `gradio_client`, as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client


def test_named_endpoints(served):
    client = Client(served.url, verbose=False)
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/search", "/ask", "/status"} <= set(named)

    rows = client.predict("inverter", 3, "text", "", api_name="/search")
    assert rows[0]["doc"].endswith("solar-maintenance.pdf") and {"page", "score", "image", "text"} <= set(rows[0])
    assert Path(rows[0]["image"]).is_relative_to(served.index_dir / "pages")
    only = client.predict("revenue", 5, "text", "revenue-table", api_name="/search")
    assert only and all(r["doc"].endswith("revenue-table.pdf") for r in only)

    answer = client.predict("inverter faults", 2, "text", "", api_name="/ask")
    assert list(answer) == ["answer", "citations", "pages"]
    assert [c["n"] for c in answer["citations"]] == [2, 1]  # the double cites [2] first, then [1]
    cited = [(c["doc"], c["page"]) for c in answer["citations"]]
    assert cited == [(p["doc"], p["page"]) for p in answer["pages"][::-1]]

    with pytest.raises(Exception, match="no visual vectors"):  # a caller's mistake comes back as one line
        client.predict("inverter", 3, "visual", "", api_name="/search")

    status = client.predict(api_name="/status")
    assert status["documents"] >= 2 and status["pages"] >= 3 and "test-vlm" in status["llm"]
    assert status["encoder"] is None  # a text-only index

"""The house rules of docs/DESIGN.md, checked on the tree: no import cycle, no arrow against the
layering (core <- tasks <- flows; nothing imports benchmarks), no function over 120 lines,
flows/ under 400 lines. ``scripts/import_graph.py`` prints the same figures for people."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"
spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
rules = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rules)


@pytest.fixture(scope="module")
def graph():
    return rules.graph()


def test_the_graph_holds_every_module(graph):
    assert any(m.startswith("tomodenoise.pipeline.") for m in graph.nodes)
    assert {"flows.pipeline", "tasks.stages"} <= set(graph.nodes)


def test_no_import_cycles(graph):
    assert rules.cycles(graph) == []


def test_no_arrow_against_the_layering(graph):
    assert rules.back_arrows(graph) == []


def test_the_rules_see_a_cycle_and_a_back_arrow():
    import networkx as nx

    g = nx.DiGraph([("tomodenoise.a", "tomodenoise.b"), ("tomodenoise.b", "tomodenoise.a"),
                    ("tomodenoise.c", "flows.pipeline")])
    assert rules.cycles(g) == [["tomodenoise.a", "tomodenoise.b"]]
    assert ("tomodenoise.c", "flows.pipeline") in rules.back_arrows(g)


def test_no_long_functions_and_thin_flows():
    assert rules.long_functions() == []
    assert rules.flows_lines() < rules.MAX_FLOWS_LINES

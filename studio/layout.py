"""Where blocks sit on the canvas when nobody placed them (Qt-free: the command line lays out too)."""
from __future__ import annotations

from collections import defaultdict

from gatescope.compute.graph import GraphSpec

LAYER_X, LAYER_Y = 270.0, 130.0
LAYERS_PER_ROW = 5
ROW_GAP = 60.0


def layered_positions(graph: GraphSpec, positions: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Left-to-right layers by topological depth; within a layer, blocks keep their vertical order.

    A long model wraps onto several rows of at most ``LAYERS_PER_ROW`` layers, so it stays
    readable on screen. A cycle (which analysis reports) is cut where it is found.
    """
    sources: dict[str, list[str]] = defaultdict(list)
    for w in graph.wires:
        sources[w.dst].append(w.src)
    ids = [b.id for b in graph.blocks]
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def depth_of(bid: str) -> int:
        if bid in depth:
            return depth[bid]
        if bid in visiting:  # a cycle: cut it here
            return 0
        visiting.add(bid)
        d = max((depth_of(s) + 1 for s in sources[bid] if s in set(ids)), default=0)
        visiting.discard(bid)
        depth[bid] = d
        return d

    for bid in ids:
        depth_of(bid)
    layers: dict[int, list[str]] = defaultdict(list)
    for bid in ids:
        layers[depth[bid]].append(bid)
    tallest = max(len(members) for members in layers.values())
    n_layers = max(layers) + 1
    per_row = n_layers if n_layers <= LAYERS_PER_ROW + 1 else LAYERS_PER_ROW
    row_height = tallest * LAYER_Y + ROW_GAP
    out = {}
    for d, members in layers.items():
        members.sort(key=lambda bid: positions.get(bid, (0.0, 0.0))[1])
        top = (d // per_row) * row_height + (tallest - len(members)) * LAYER_Y / 2
        for i, bid in enumerate(members):
            out[bid] = ((d % per_row) * LAYER_X, top + i * LAYER_Y)
    return out

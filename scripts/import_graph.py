"""Print import cycles among modules of the given packages (module level + function level imports)."""
import sys, grimp, itertools
pkgs = sys.argv[1:] or ["tomodenoise", "flows", "tasks"]
g = grimp.build_graph(*pkgs, include_external_packages=False)
import networkx as nx
G = nx.DiGraph()
for m in g.modules:
    for i in g.find_modules_directly_imported_by(m):
        G.add_edge(m, i)
# collapse package __init__ re-export edges? keep raw
sccs = [s for s in nx.strongly_connected_components(G) if len(s) > 1]
print(f"{len(g.modules)} modules, {G.number_of_edges()} import edges, {len(sccs)} cycles (strongly connected groups)")
for s in sorted(sccs, key=len):
    print(" -", sorted(s))
back = [(a, b) for a, b in G.edges if not a.startswith("tomodenoise.bench") and b.startswith("tomodenoise.bench")]
print("library -> bench arrows:", back)

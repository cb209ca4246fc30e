"""Connected components of linked items: near-duplicate groups (segtune inspect) and the units splits keep whole.

    connected_components(5, [(0, 3), (3, 4)])               # -> [[0, 3, 4], [1], [2]]
    connected_components(5, [(0, 3), (3, 4)], min_size=2)   # -> [[0, 3, 4]]
"""

from __future__ import annotations


def connected_components(count: int, links, min_size: int = 1) -> list[list[int]]:
    """Items 0..count-1 grouped with every item they are linked to, directly or through others.

    `links` are tuples (i, j, ...) whose first two entries are linked items. Components of at least
    `min_size` items come in order of their first item, each sorted.
    """
    parent = list(range(count))

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving keeps the trees shallow
            item = parent[item]
        return item

    for first, second, *_ in links:
        parent[root(second)] = root(first)
    components: dict[int, list[int]] = {}
    for item in range(count):
        components.setdefault(root(item), []).append(item)
    return [c for c in components.values() if len(c) >= min_size]

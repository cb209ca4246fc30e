"""Connected components: the one helper behind near-duplicate groups and the units splits keep whole."""

from segtune.components import connected_components


def test_items_linked_through_others_form_one_component_in_order_of_their_first_item():
    # 0-3 and 3-4 chain 0, 3, 4 together; 5-1 joins 1 and 5; 2 is alone
    assert connected_components(6, [(0, 3), (3, 4), (5, 1)]) == [[0, 3, 4], [1, 5], [2]]


def test_extra_entries_of_a_link_are_ignored_and_small_components_dropped():
    links = [(0, 2, 31, 0.9), (2, 0, 31, 0.9)]  # (i, j, distance, correlation) as hash matches come
    assert connected_components(4, links, min_size=2) == [[0, 2]]
    assert connected_components(3, [], min_size=2) == []

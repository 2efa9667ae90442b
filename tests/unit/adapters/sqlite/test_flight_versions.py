"""The order store's flight versions: a new number at each change of what a flight holds, never an earlier one
again, and none held for a flight that holds nothing (departed flights do not pile up)."""

from adapters.sqlite.orders import SqliteOrderStore
from state.offers import Item


def _item(resource: str, quantity: int = 1) -> Item:
    return Item("Flight", resource.split("/")[0], "seat", quantity, 100, 0, 100 * quantity, resource)


def test_a_flight_version_changes_at_each_hold_and_release_and_is_gone_once_nothing_is_held():
    store = SqliteOrderStore(db=None)  # type: ignore[arg-type]  # memory only: nothing here reads the database
    seen: set[int] = set()

    def version(flight: str) -> int:
        return store.flight_versions.get(flight, 0)

    for step, changes_f1 in ((lambda: store.hold([_item("F1/economy", 2), _item("F1/meal")]), True),
                             (lambda: store.hold([_item("F2/economy")]), False),
                             (lambda: store.release([_item("F1/economy", 2)]), True),
                             (lambda: store.hold([_item("F1/economy")]), True)):
        before = version("F1")
        step()
        if changes_f1:
            assert version("F1") not in seen | {0}, (before, version("F1"), seen)
        else:
            assert version("F1") == before
        seen.add(version("F1"))
    assert set(store.flight_versions) == {"F1", "F2"}
    held_at = version("F1")
    store.release([_item("F1/meal")])
    assert version("F1") not in {held_at, 0}  # F1 still holds a seat
    store.release([_item("F1/economy")])
    store.release([_item("F2/economy")])
    assert store.flight_versions == {} and store.held == {}  # nothing held: nothing remembered
    store.hold([_item("F1/economy")])
    assert version("F1") > max(seen)  # never a number a priced offer may still carry

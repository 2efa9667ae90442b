"""The RecBole atomic-file loader: what it reads, and clear errors for what it refuses."""

import numpy as np
import pytest

from eval.atomic import AtomicFileError, load_dataset, load_inter

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _write(tmp_path, text, name="data.inter"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_interactions_in_time_order_with_first_seen_indexes(tmp_path):
    path = _write(tmp_path, HEADER + "u1\ti9\t3\t200\nu2\ti8\t4\t100\n\nu1\ti8\t5\t100\n")
    inter, users, items = load_inter(path)
    assert users == ["u1", "u2"] and items == ["i9", "i8"]
    assert inter.user.tolist() == [0, 0, 1] and inter.item.tolist() == [1, 0, 1]  # u1: i8 at 100, then i9
    assert inter.time.tolist() == [100.0, 200.0, 100.0]
    assert inter.weight.tolist() == [1.0, 1.0, 1.0] and inter.purchase.all()


def test_event_types_set_weights_and_mark_purchases(tmp_path):
    text = "user_id:token\titem_id:token\ttimestamp:float\tevent_type:token\n" \
           "a\tx\t1\tproduct_view\na\ty\t2\tpurchase\na\tz\t3\tdismiss\n"
    inter, _, _ = load_inter(_write(tmp_path, text))
    assert inter.weight.tolist() == [1.0, 10.0, -5.0]
    assert inter.purchase.tolist() == [False, True, False]


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("user_id\titem_id\ttimestamp\n1\t2\t3\n", "line 1: column 'user_id' is not name:type"),
    ("user_id:token\titem_id:text\ttimestamp:float\n", "line 1: column 'item_id:text'"),
    ("user_id:token\titem_id:token\n1\t2\n", "missing column(s) timestamp"),
    (HEADER, "no interactions"),
    (HEADER + "1\t2\t3\t100\n1\t2\t3\n", "line 3: 3 tab-separated fields, the header has 4"),
    (HEADER + "1\t2\t3\tyesterday\n", "line 2: timestamp is 'yesterday', not a number"),
    (HEADER + "1\t2\t3\tnan\n", "not a finite number"),
    (HEADER + "\t2\t3\t100\n", "line 2: empty user_id"),
    ("user_id:token\titem_id:token\ttimestamp:float\tevent_type:token\n1\t2\t3\tlike\n", "unknown event_type 'like'"),
])
def test_a_malformed_file_is_refused_with_where_and_why(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(AtomicFileError) as err:
        load_inter(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(AtomicFileError, match="cannot read"):
        load_inter(tmp_path / "nope.inter")


def test_item_features_and_categories_come_from_the_sibling_item_file(tmp_path):
    path = _write(tmp_path, HEADER + "u\ta\t1\t1\nu\tb\t1\t2\nv\tc\t1\t3\n")
    _write(tmp_path, "item_id:token\tyear:token\tclass:token_seq\tcreated_at:float\n"
                     "a\t1995\tComedy Drama\t10\nb\t1995\tDrama\t\nzz\t2000\tHorror\t5\n", "data.item")
    data = load_dataset(path)
    assert data.items_file == tmp_path / "data.item"
    assert data.meta.features is not None and data.meta.category is not None and data.meta.created_at is not None
    f = data.meta.features.toarray()
    assert f.shape[0] == 3 and f[0].sum() == 3 and f[1].sum() == 2 and f[2].sum() == 0  # c has no row
    assert data.meta.category.toarray().tolist() == [[1, 1], [0, 1], [0, 0]]
    assert np.isnan(data.meta.created_at[1]) and data.meta.created_at[0] == 10.0
    assert load_dataset(path, find_items=False).meta.features is None

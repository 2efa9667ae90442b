"""RecBole atomic files: `.inter` (interactions) and `.item` (item features), tab-separated, typed headers.

A header names each column `name:type` with type token, token_seq, float or float_seq, e.g.
`user_id:token	item_id:token	rating:float	timestamp:float`. An `.inter` file needs user_id,
item_id and timestamp; an optional event_type (or feedback_type) token column weighs each event
by its feedback type and marks purchases. Without one, every event weighs 1 and counts as a purchase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ml.reco.interactions import Interactions, ItemMeta

TYPES = {"token", "token_seq", "float", "float_seq"}
# Defaults from the reco-engine design (view 1, click 3, cart 5, purchase 10); negative feedback subtracts.
FEEDBACK_WEIGHTS = {"view": 1.0, "product_view": 1.0, "click": 3.0, "wishlist_add": 3.0, "cart_add": 5.0,
                    "purchase": 10.0, "dismiss": -5.0}
PURCHASE = "purchase"
CATEGORY_FIELDS = ("category", "categories", "class", "genre", "genres")
CREATED_FIELDS = ("created_at", "release_timestamp")


class AtomicFileError(ValueError):
    """The file is not in the atomic format; the message says where and what was expected."""


@dataclass(frozen=True)
class Dataset:
    interactions: Interactions
    meta: ItemMeta
    user_ids: list[str]
    item_ids: list[str]
    items_file: Path | None


def _header(path: Path, line: str) -> list[tuple[str, str]]:
    cols = []
    for raw in line.rstrip("\r\n").split("\t"):
        name, sep, kind = raw.strip().partition(":")
        if not sep or not name or kind not in TYPES:
            raise AtomicFileError(f"{path}: line 1: column {raw!r} is not name:type with type one of "
                                  f"{', '.join(sorted(TYPES))} (e.g. user_id:token)")
        cols.append((name, kind))
    names = [n for n, _ in cols]
    if len(set(names)) != len(names):
        raise AtomicFileError(f"{path}: line 1: a column name appears twice")
    return cols


def _rows(path: Path) -> tuple[list[tuple[str, str]], list[tuple[int, list[str]]]]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AtomicFileError(f"{path}: cannot read: {exc}") from None
    if not lines or not lines[0].strip():
        raise AtomicFileError(f"{path}: empty file: expected a header like user_id:token<TAB>item_id:token...")
    cols = _header(path, lines[0])
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != len(cols):
            raise AtomicFileError(f"{path}: line {n}: {len(fields)} tab-separated fields, the header has {len(cols)}")
        rows.append((n, fields))
    return cols, rows


def _float(path: Path, n: int, name: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise AtomicFileError(f"{path}: line {n}: {name} is {value!r}, not a number") from None
    if not math.isfinite(x):
        raise AtomicFileError(f"{path}: line {n}: {name} is {value!r}, not a finite number")
    return x


def load_inter(path: str | Path, weights: dict[str, float] | None = None) -> tuple[Interactions, list[str], list[str]]:
    """(interactions, user ids, item ids) from an .inter file; indexes follow first appearance."""
    path = Path(path)
    weights = FEEDBACK_WEIGHTS if weights is None else weights
    cols, rows = _rows(path)
    names = [n for n, _ in cols]
    missing = [n for n in ("user_id", "item_id", "timestamp") if n not in names]
    if missing:
        raise AtomicFileError(f"{path}: line 1: missing column(s) {', '.join(missing)}; found {', '.join(names)}")
    if not rows:
        raise AtomicFileError(f"{path}: no interactions after the header")
    ui, ii, ti = names.index("user_id"), names.index("item_id"), names.index("timestamp")
    kind_col = next((names.index(n) for n in ("event_type", "feedback_type") if n in names), None)
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    u = np.empty(len(rows), dtype=np.int64)
    i = np.empty(len(rows), dtype=np.int64)
    t = np.empty(len(rows), dtype=np.float64)
    w = np.ones(len(rows), dtype=np.float32)
    p = np.ones(len(rows), dtype=bool)
    for r, (n, fields) in enumerate(rows):
        user, item = fields[ui].strip(), fields[ii].strip()
        if not user or not item:
            raise AtomicFileError(f"{path}: line {n}: empty user_id or item_id")
        u[r] = users.setdefault(user, len(users))
        i[r] = items.setdefault(item, len(items))
        t[r] = _float(path, n, "timestamp", fields[ti])
        if kind_col is not None:
            kind = fields[kind_col].strip()
            if kind not in weights:
                raise AtomicFileError(f"{path}: line {n}: unknown {names[kind_col]} {kind!r}; "
                                      f"known: {', '.join(sorted(weights))}")
            w[r] = weights[kind]
            p[r] = kind == PURCHASE
    inter = Interactions.build(u, i, t, len(users), len(items), w, p)
    return inter, list(users), list(items)


def load_items(path: str | Path, item_ids: list[str]) -> ItemMeta:
    """Item features from an .item file for the given items (others in the file are ignored).

    Every token and token_seq column but the id becomes one-hot features; a category-like column
    (category, class, genre) is also the category membership; created_at (float) the creation time.
    """
    path = Path(path)
    cols, rows = _rows(path)
    names = [n for n, _ in cols]
    if "item_id" not in names:
        raise AtomicFileError(f"{path}: line 1: missing column item_id; found {', '.join(names)}")
    index = {item: k for k, item in enumerate(item_ids)}
    n_items = len(item_ids)
    id_col = names.index("item_id")
    vocab: dict[str, int] = {}
    categories: dict[str, int] = {}
    f_rows: list[int] = []
    f_cols: list[int] = []
    c_rows: list[int] = []
    c_cols: list[int] = []
    created = np.full(n_items, np.nan)
    for n, fields in rows:
        k = index.get(fields[id_col].strip())
        if k is None:
            continue
        for c, (name, kind) in enumerate(cols):
            if c == id_col:
                continue
            value = fields[c].strip()
            if kind in ("token", "token_seq") and value:
                tokens = value.split() if kind == "token_seq" else [value]
                for tok in tokens:
                    f_rows.append(k)
                    f_cols.append(vocab.setdefault(f"{name}={tok}", len(vocab)))
                    if name in CATEGORY_FIELDS:
                        c_rows.append(k)
                        c_cols.append(categories.setdefault(tok, len(categories)))
            elif kind == "float" and name in CREATED_FIELDS and value:
                created[k] = _float(path, n, name, value)
    features = sp.csr_matrix((np.ones(len(f_rows)), (f_rows, f_cols)), shape=(n_items, max(len(vocab), 1)))
    features.sum_duplicates()
    features.data[:] = 1.0  # a token repeated in one field counts once
    category = sp.csr_matrix((np.ones(len(c_rows)), (c_rows, c_cols)), shape=(n_items, max(len(categories), 1)))
    category.sum_duplicates()
    category.data[:] = 1.0
    return ItemMeta(created_at=created if not np.isnan(created).all() else None,
                    features=features if vocab else None, category=category if categories else None)


def load_dataset(path: str | Path, items_path: str | Path | None = None, find_items: bool = True) -> Dataset:
    """The .inter file, with item features from items_path or, when find_items, a sibling .item file."""
    path = Path(path)
    inter, user_ids, item_ids = load_inter(path)
    items_file = Path(items_path) if items_path is not None else None
    if items_file is None and find_items and path.with_suffix(".item").is_file():
        items_file = path.with_suffix(".item")
    meta = load_items(items_file, item_ids) if items_file is not None else ItemMeta()
    return Dataset(inter, meta, user_ids, item_ids, items_file)

"""The candidate index follows a campaign edit by looking at that campaign alone: its request shapes and
block-list masks catch up with the edits logged since they were made, and after any run of edits each equals
what an index made from scratch over the same campaigns gives (the reference comparison of the incremental
index; test_candidates_reference.py compares whole selections with a plain reference)."""

from __future__ import annotations

import random

import msgspec
import numpy as np
import pytest

from app.bidding import candidates as candidates_module
from app.bidding.candidates import CandidateIndex, _Shape
from app.bidding.openrtb import BidRequest, decode_request
from state.campaigns import Campaign, Creative, FrequencyCaps, Targeting

COUNTRIES = ["USA", "GBR", "PRT", "FRA", "ESP"]
CATEGORIES = [f"IAB{i}" for i in range(1, 9)]
SIZES = [(300, 250), (728, 90), (320, 50), (160, 600), (970, 250)]


class Store:
    """What the index reads of the campaign store: a version, one campaign, all of them in store order."""

    def __init__(self) -> None:
        self.by_id: dict[str, Campaign] = {}
        self.version = 0

    def put(self, campaign: Campaign) -> None:
        self.by_id[campaign.id] = campaign
        self.version += 1

    def all(self) -> list[Campaign]:
        return list(self.by_id.values())


def _campaign(i: int, rng: random.Random) -> Campaign:
    creatives = [Creative(f"k{i}-{n}", "banner", "<b>", w=w, h=h)
                 for n, (w, h) in enumerate(rng.sample(SIZES, rng.randint(0, 2)))]
    if rng.random() < 0.2:
        creatives.append(Creative(f"v{i}", "video", "<VAST/>", mimes=rng.choice([[], ["video/mp4"]])))
    return Campaign(
        id=f"c{i}", name=f"c{i}", advertiser_domain=f"adv{rng.randrange(6)}.example",
        state=rng.choice(["live", "live", "live", "paused", "draft"]), bid_cap_micros=rng.choice([1, 2, 3]) * 10**6,
        daily_budget_micros=10**9, categories=rng.sample(CATEGORIES, rng.randint(0, 2)),
        app_bundle=rng.choice([None, None, "com.a", "com.b"]),
        targeting=Targeting(countries=rng.sample(COUNTRIES, rng.randint(0, 2)),
                            device_types=rng.sample([1, 2, 4], rng.randint(0, 1)),
                            ltv_min=rng.choice([None, None, None, 10.0])),
        frequency_caps=rng.choice([FrequencyCaps(), FrequencyCaps(), FrequencyCaps(hour=3)]), creatives=creatives)


def _edited(campaign: Campaign, rng: random.Random, i: int) -> Campaign:
    """One change of the kinds an admin makes: pause or resume, a bid cap, targeting, block-list values,
    creatives, or the campaign made over."""
    other = _campaign(i, rng)
    kind = rng.choice(["state", "state", "state", "bid_cap_micros", "targeting", "categories", "advertiser_domain",
                       "app_bundle", "creatives", "frequency_caps", "whole"])
    if kind == "whole":
        return msgspec.structs.replace(other, id=campaign.id)
    if kind == "state":
        return msgspec.structs.replace(campaign, state="paused" if campaign.state == "live" else "live")
    return msgspec.structs.replace(campaign, **{kind: getattr(other, kind)})


def _request(rng: random.Random) -> BidRequest:
    formats = [{"w": w, "h": h} for w, h in rng.sample(SIZES, rng.randint(1, 3))]
    imps = [{"id": "1", "banner": {"format": formats}}]
    if rng.random() < 0.3:
        imps.append({"id": "2", "video": {"mimes": ["video/mp4"]}})
    device = {"devicetype": rng.choice([1, 2, 4, 5]), "geo": {"country": rng.choice([*COUNTRIES, "NLD"])}}
    body: dict = {"id": "r", "imp": imps, "site": {"id": "s"}, "device": device}
    if rng.random() < 0.7:
        body["bcat"] = rng.sample(CATEGORIES, rng.randint(0, 2)) + ["IAB99"]
        body["badv"] = [f"adv{rng.randrange(8)}.example" for _ in range(rng.randint(0, 2))]
        body["bapp"] = rng.sample(["com.a", "com.b", "com.c"], rng.randint(0, 1))
    return decode_request(msgspec.json.encode(body))


def _follow(index: CandidateIndex, store: Store, hinted: list[str]) -> None:
    for campaign_id in hinted:
        index.stored_one(campaign_id)
    index.sync(store.version, store.by_id.get, store.all)


def _fresh(store: Store) -> CandidateIndex:
    index = CandidateIndex(1 << 30, 10_000)
    index.sync(store.version, store.by_id.get, store.all)
    return index


def _rows(shape: _Shape) -> tuple:
    return (shape.imp_of.tolist(), shape.slot.tolist(), [c.id for c in shape.creatives],
            [c for c in shape.campaigns], shape.caps.tolist(), shape.capped, shape.banded, shape.n)


def _same(index: CandidateIndex, fresh: CandidateIndex, requests: list[BidRequest]) -> None:
    assert index.stored == fresh.stored and index.slot_of == fresh.slot_of
    assert np.array_equal(index.budgets, fresh.budgets)
    for request in requests:
        shape = index.shape(request)
        assert shape.epoch == index.epoch
        assert _rows(shape) == _rows(fresh.shape(request))
        blocked, reference = index.blocked(request), fresh.blocked(request)
        assert (blocked is None) == (reference is None)
        if blocked is not None and reference is not None:
            assert blocked[0] == reference[0] and np.array_equal(blocked[1], reference[1])


@pytest.mark.parametrize("seed", range(6))
def test_after_any_run_of_edits_shapes_and_masks_equal_a_rebuild(seed):
    rng = random.Random(seed)
    store = Store()
    for i in range(120):
        store.put(_campaign(i, rng))
    requests = [_request(rng) for _ in range(40)]
    index = _fresh(store)
    for request in requests:  # every shape and mask cached, then kept up by the edits
        index.shape(request)
        index.blocked(request)
    made = 120
    for step in range(300):
        hinted = []
        for _ in range(rng.choice([1, 1, 1, 2, 5])):
            if rng.random() < 0.03:  # a new campaign: a new slot
                store.put(_campaign(made, rng))
                made += 1
                continue
            current = rng.choice(store.all())
            store.put(_edited(current, rng, made))
            hinted.append(current.id)
        # This process's edits are followed one by one; now and then one it did not make (another node's), which
        # the index finds by comparing what is stored.
        _follow(index, store, hinted if rng.random() < 0.9 else [])
        for request in rng.sample(requests, 8):  # some shapes and masks used between edits, the others wait
            index.shape(request)
            index.blocked(request)
        if step % 25 == 24:
            _same(index, _fresh(store), requests)
    _same(index, _fresh(store), requests)


def test_an_edit_looks_at_its_own_campaign_only(monkeypatch):
    rng = random.Random(7)
    store = Store()
    for i in range(400):
        store.put(msgspec.structs.replace(_campaign(i, rng), state="live"))
    # The edited campaign reaches France alone; one of its categories is blocked by the masks below.
    edited = msgspec.structs.replace(store.by_id["c5"], state="live", targeting=Targeting(countries=["FRA"]),
                                     categories=["IAB1"], creatives=[Creative("e", "banner", "<b>", w=300, h=250)])
    store.put(edited)
    requests = [_request(rng) for _ in range(40)]
    index = _fresh(store)
    shapes = {id(r): index.shape(r) for r in requests}
    masks = {id(r): index.blocked(r) for r in requests}
    held_masks = len(index.masks)
    slot = index.slot_of["c5"]
    entries_before = list(index.entries)

    made: list[Campaign] = []
    entry_init = candidates_module._Entry.__init__

    def counted(self, campaign):
        made.append(campaign)
        entry_init(self, campaign)
    looked_at: list[int] = []
    rows_for = _Shape.rows_for

    def counted_rows(self, at, entry):
        looked_at.append(at)
        return rows_for(self, at, entry)
    monkeypatch.setattr(candidates_module._Entry, "__init__", counted)
    monkeypatch.setattr(_Shape, "rows_for", counted_rows)

    store.put(msgspec.structs.replace(edited, state="paused"))
    _follow(index, store, ["c5"])
    # The index made no entry (a paused campaign has none) and changed no other slot's.
    assert made == [] and index.entries[slot] is None
    assert all(a is b for i, (a, b) in enumerate(zip(index.entries, entries_before, strict=True)) if i != slot)
    assert len(index.masks) == held_masks  # no mask was dropped
    for request in requests:
        before, after = shapes[id(request)], index.shape(request)
        if slot not in before.slot:  # a shape the campaign was not in is the same shape, arrays and all
            assert after is before
        else:  # the others lost that campaign's rows and kept every other row as it was
            keep = before.slot != slot
            assert after is not before and after.n == int(keep.sum())
            assert after.slot.tolist() == before.slot[keep].tolist()
            assert list(after.campaigns) == list(before.campaigns[keep])
        mask = masks[id(request)]
        now = index.blocked(request)
        if mask is not None and now is not None:
            assert np.array_equal(np.flatnonzero(now[1] != mask[1]), [slot] if mask[1][slot] else [])
    assert set(looked_at) == {slot}  # each shape looked at the edited campaign's rows alone
    assert any(slot in s.slot for s in shapes.values()) and any(slot not in s.slot for s in shapes.values())
    assert any(m is not None and m[1][slot] for m in masks.values())

    store.put(msgspec.structs.replace(edited, state="live"))  # resumed: one entry made, its rows back
    _follow(index, store, ["c5"])
    assert [c.id for c in made] == ["c5"]
    fresh = _fresh(store)
    for request in requests:
        assert _rows(index.shape(request)) == _rows(fresh.shape(request))
        assert _rows(index.shape(request)) == _rows(shapes[id(request)])

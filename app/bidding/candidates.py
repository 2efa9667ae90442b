"""The candidate index bidding selects from: live campaigns in slots, and each request shape's static candidates.

Every stored campaign has a slot, in store order, for good: an edit changes its slot's entry (None
while it is not live or has no creatives) and is logged, and a cached shape catches up with the
edits logged since it was made by replacing that campaign's rows, the next time a request of
that shape comes (a new shape object: a selection made from the old one stays whole).

A shape is what an impression's candidates depend on and an exchange cannot vary at will: the
country and device type (each only as far as some campaign targets it), and what the imps accept.
Block lists (bcat, badv, bapp) are no part of it: they are a mask over slots, made from the
values that some live campaign has, so arbitrary block lists cost no shape. Shapes are held by
an LRU bounded by the bytes of their arrays as well as by count.
"""

from __future__ import annotations

import bisect
import hashlib
import weakref
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from app.bidding.openrtb import BidRequest, Imp, banner_sizes
from app.runtime.lru import LRU, SizedLRU
from state.campaigns import Campaign, Creative

WINDOWS = {"minute": 60, "hour": 3600, "day": 86_400}

_LOG_KEEP = 4096      # edits remembered for shapes to catch up with; an older shape is made afresh
_PATCH_MOST = 256     # more edits than this since a shape was made: making it afresh is as quick
_SHAPE_OVERHEAD = 1_000  # bytes of a cached shape besides its arrays: the objects, its key, its imps
# A shape's cached selection holds up to this many rows (the batch size's most) of row numbers, imps and caps.
_SELECTION_ROWS, _SELECTION_ROW_BYTES = 1024, 8 + 4 + 8


class _ImpShape:
    """What an impression accepts, as far as some live creative could match it (its part of a shape's key)."""

    __slots__ = ("sizes", "banner", "video_mimes", "audio_mimes", "native")

    def __init__(self, imp: Imp, sizes: Counter | None = None, mimes: Counter | None = None) -> None:
        # A banner takes creatives of its sizes only: one without a size (valid, as sizes are only
        # recommended) has no creative to match, rather than any. Sizes and mimes no live creative has
        # match nothing, so they are left out (when `sizes` and `mimes` are given): they make no new shape.
        found = banner_sizes(imp.banner) if imp.banner is not None else set()
        self.sizes = found if sizes is None else {s for s in found if s in sizes}
        self.banner = bool(self.sizes)
        self.video_mimes = _known(imp.video.mimes, mimes) if imp.video is not None else None
        self.audio_mimes = _known(imp.audio.mimes, mimes) if imp.audio is not None else None
        self.native = imp.native is not None

    def key(self) -> tuple:
        return (tuple(sorted(self.sizes)), None if self.video_mimes is None else tuple(sorted(self.video_mimes)),
                None if self.audio_mimes is None else tuple(sorted(self.audio_mimes)), self.native)


def _known(values: list[str] | None, known: Counter | None) -> set[str]:
    return set(values or ()) if known is None else {v for v in values or () if v in known}


class _Entry:
    """A live campaign with its targeting and creatives pre-sorted for fast matching."""

    def __init__(self, c: Campaign) -> None:
        self.campaign = c
        t = c.targeting
        self.countries, self.device_types = set(t.countries), set(t.device_types)
        self.categories = set(c.categories)
        self.capped = any(getattr(c.frequency_caps, w) is not None for w in WINDOWS)
        self.banded = c.targeting.ltv_min is not None or c.targeting.ltv_max is not None
        allowed = [cr for cr in c.creatives if not t.formats or cr.format in t.formats]
        self.banners = [cr for cr in allowed if cr.format == "banner"]
        self.banners_by_size: dict[tuple, list[Creative]] = {}
        for cr in self.banners:
            self.banners_by_size.setdefault((cr.w, cr.h), []).append(cr)
        self.videos = [(cr, set(cr.mimes)) for cr in allowed if cr.format == "video"]
        self.audios = [(cr, set(cr.mimes)) for cr in allowed if cr.format == "audio"]
        self.natives = [cr for cr in allowed if cr.format == "native"]

    def reaches(self, country: str | None, device_type: int | None) -> bool:
        return not ((self.countries and country not in self.countries) or
                    (self.device_types and device_type not in self.device_types))

    def matching(self, shape: _ImpShape) -> list[Creative]:
        found: list[Creative] = []
        if shape.banner:
            for size in shape.sizes:
                found += self.banners_by_size.get(size, ())
        if shape.video_mimes is not None:
            found += [cr for cr, m in self.videos if not m or not m.isdisjoint(shape.video_mimes)]
        if shape.audio_mimes is not None:
            found += [cr for cr, m in self.audios if not m or not m.isdisjoint(shape.audio_mimes)]
        if shape.native:
            found += self.natives
        return found


def _object_array(values: Sequence) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class _Shape:
    """The statically eligible candidates of one request shape, as parallel arrays in slot order."""

    __slots__ = ("country", "device_type", "imps", "epoch", "n", "imp_of", "slot", "caps", "creatives", "campaigns",
                 "capped", "banded", "selected", "selected_for", "nbytes", "__weakref__")

    def __init__(self, country: str | None, device_type: int | None, imps: list[tuple[int, _ImpShape]],
                 epoch: int, rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], caps: np.ndarray,
                 capped: list[int], banded: list[int], caps_pool: weakref.WeakValueDictionary) -> None:
        """`caps`: the rows' bid caps; `capped` and `banded`: the sorted slots among them whose campaigns have
        frequency caps, and target an LTV band."""
        self.country, self.device_type, self.imps, self.epoch = country, device_type, imps, epoch
        self.imp_of, self.slot, self.creatives, self.campaigns = rows
        self.n = len(self.slot)
        caps.flags.writeable = False
        # One array per distinct list of bid caps, shared by the shapes that have it: the batch auction reads
        # the caps of requests of one shape as they are instead of concatenating copies.
        digest = hashlib.blake2b(caps.tobytes(), digest_size=16).digest()
        shared = caps_pool.get(digest)
        if shared is not None and np.array_equal(shared, caps):
            caps = shared
        else:
            caps_pool[digest] = caps
        self.caps = caps
        self.capped, self.banded = capped, banded
        self.selected: Candidates | None = None  # the selection for users without frequency use or blocks ...
        self.selected_for: tuple | None = None   # ... and the (open campaigns, limit) it was made for
        # What it holds, counted from its arrays (caps too, though shapes may share them), and the most a cached
        # selection of it may add: the cache's byte budget bounds all of it.
        self.nbytes = (_SHAPE_OVERHEAD + self.imp_of.nbytes + self.slot.nbytes + self.creatives.nbytes +
                       self.campaigns.nbytes + caps.nbytes + min(self.n, _SELECTION_ROWS) * _SELECTION_ROW_BYTES)

    def rows_for(self, slot: int, entry: _Entry | None) -> list[tuple[int, int, Creative, Campaign]]:
        """This shape's rows of one campaign, as it is now."""
        if entry is None or not entry.reaches(self.country, self.device_type):
            return []
        return [(index, slot, creative, entry.campaign) for index, imp in self.imps for creative in entry.matching(imp)]

    def select(self, open_slots: np.ndarray, limit: int, freq: np.ndarray | None) -> Candidates | None:
        """The first `limit` candidates whose campaigns are open, or None when none is."""
        n = self.n
        # The first rows usually hold `limit` open ones: look there before looking at every row.
        head = min(n, max(4 * limit, 256))
        keep = open_slots[self.slot[:head]]
        if keep[:limit].all():
            rows: slice | np.ndarray = slice(0, min(n, limit))
        else:
            rows = np.flatnonzero(keep)[:limit]
            if len(rows) < limit and head < n:
                rows = np.flatnonzero(open_slots[self.slot])[:limit]
            if not len(rows):
                return None
        return Candidates(self, rows, freq)


class Candidates:
    """The candidates of one request: a row selection of its shape plus per-user frequency use."""

    __slots__ = ("_shape", "_rows", "n", "imp_of", "caps", "freq")

    def __init__(self, shape: _Shape, rows: slice | np.ndarray, freq: np.ndarray | None) -> None:
        self._shape, self._rows = shape, rows
        self.imp_of = shape.imp_of[rows]
        whole = isinstance(rows, slice) and rows == slice(0, shape.n)
        self.caps = shape.caps if whole else shape.caps[rows]  # all of the shape's candidates: its shared caps
        self.n = len(self.imp_of)
        self.freq = freq[shape.slot[rows]] if freq is not None else None

    def pair(self, i: int) -> tuple[Campaign, Creative]:
        """The campaign and creative of candidate row `i`."""
        j = self._rows.start + i if isinstance(self._rows, slice) else int(self._rows[i])
        return self._shape.campaigns[j], self._shape.creatives[j]


ShapeCache = SizedLRU[tuple, _Shape]  # request shapes by key, bounded by bytes and by count


class CandidateIndex:
    """Live campaigns by slot, the inverted indexes block lists are checked with, and the shape cache."""

    def __init__(self, shape_cache_bytes: int, shape_cache_entries: int) -> None:
        self.shapes: ShapeCache = SizedLRU(shape_cache_bytes, shape_cache_entries, "bid_shapes",
                                           lambda _, shape: shape.nbytes)
        # Blocked slots by the values that hit, with the epoch each mask was last brought up to.
        self.masks: LRU[tuple, tuple[int, np.ndarray]] = LRU(1024, "bid_block_masks")
        self.version = -1            # the store's version the index follows
        self.entries: list[_Entry | None] = []   # by slot; None: not live, or no creatives
        self.stored: list[Campaign] = []         # by slot: the stored campaign, any state
        self.slot_of: dict[str, int] = {}
        self.budgets = np.zeros(0)   # daily budget by slot (0: not live)
        self.most = np.zeros(0)      # the most one impression can cost by slot (its bid cap CPM / 1000)
        self.ends = np.zeros(0)      # when a live slot's campaign ends (inf: no end, or not live)
        self.epoch = 0               # counts logged edits
        self._log: list[int] = []    # the slot of each edit since `_log_base`
        self._log_base = 0
        self._hints: list[str] = []  # campaigns this process just stored
        self._caps: weakref.WeakValueDictionary[bytes, np.ndarray] = weakref.WeakValueDictionary()
        self._countries: Counter[str] = Counter()    # targeted by how many live campaigns
        self._device_types: Counter[int] = Counter()
        self._sizes: Counter[tuple] = Counter()      # banner sizes of the live campaigns' creatives
        self._mimes: Counter[str] = Counter()        # mimes of their video and audio creatives
        self._blockable: tuple[dict[str, set[int]], dict[str, set[int]], dict[str, set[int]]] = ({}, {}, {})
        self._slot_arrays: dict[tuple[int, str], np.ndarray] = {}
        self.shut_by_caps: set[int] = set()  # live slots with a frequency cap below 1: shut for any user shown ads

    def live(self) -> list[_Entry]:
        return [e for e in self.entries if e is not None]

    # ---- following the store ----
    def stored_one(self, campaign_id: str) -> None:
        """This process stored `campaign_id` just now (its store version already counts it)."""
        self._hints.append(campaign_id)

    def sync(self, stored_version: int, get: Callable[[str], Campaign | None],
             every: Callable[[], list[Campaign]]) -> list[int] | None:
        """Follow the store: the slots changed, or None when the index was made afresh."""
        if stored_version == self.version:
            return []
        hints, self._hints = self._hints, []
        changed: list[int] | None
        found = [get(h) for h in hints]
        if self.version >= 0 and stored_version - self.version == len(hints) and \
                all(h in self.slot_of and c is not None for h, c in zip(hints, found, strict=True)):
            # Only this process's edits, none of them archiving (which leaves the store's memory): no need to
            # look at every campaign.
            changed = [self._set(self.slot_of[h], c) for h, c in zip(hints, found, strict=True) if c is not None]
        else:
            changed = self._diff(every())
        self.version = stored_version
        return changed

    def _diff(self, campaigns: list[Campaign]) -> list[int] | None:
        stored = self.stored
        if not stored or len(campaigns) < len(stored) or \
                any(c.id != s.id for c, s in zip(campaigns, stored, strict=False) if c is not s):
            self._reset(campaigns)
            return None
        changed = [self._set(i, c) for i, (c, s) in enumerate(zip(campaigns, stored, strict=False)) if c is not s]
        if len(campaigns) > len(stored):
            self.masks.clear()  # masks cover every slot
            self.budgets = np.concatenate([self.budgets, np.zeros(len(campaigns) - len(stored))])
            self.most = np.concatenate([self.most, np.zeros(len(campaigns) - len(stored))])
            self.ends = np.concatenate([self.ends, np.full(len(campaigns) - len(stored), np.inf)])
            for c in campaigns[len(stored):]:
                self.slot_of[c.id] = len(self.stored)
                self.stored.append(c)
                self.entries.append(None)
                changed.append(self._set(len(self.stored) - 1, c))
        return changed

    def _reset(self, campaigns: list[Campaign]) -> None:
        self.entries, self.stored, self.slot_of = [None] * len(campaigns), list(campaigns), {}
        self.budgets = np.zeros(len(campaigns))
        self.most = np.zeros(len(campaigns))
        self.ends = np.full(len(campaigns), np.inf)
        self._countries.clear()
        self._device_types.clear()
        self._sizes.clear()
        self._mimes.clear()
        self._blockable = ({}, {}, {})
        self.shut_by_caps.clear()
        self.masks.clear()
        self._slot_arrays.clear()
        for slot, c in enumerate(campaigns):
            self.slot_of[c.id] = slot
            self._set(slot, c, log=False)
        self.shapes.clear()
        self._log.clear()
        self.epoch += 1
        self._log_base = self.epoch  # every shape made before is older than the log

    def _set(self, slot: int, campaign: Campaign, *, log: bool = True) -> int:
        """Slot `slot` holds `campaign` now. Only that slot's part of the index changes: its entry, its
        campaign's counts and block-list values; the shapes and block masks made before catch up with the
        logged edit when next used (each looks at the slots edited since it was made, not at every slot)."""
        old = self.entries[slot]
        self.stored[slot] = campaign
        new = _Entry(campaign) if campaign.state == "live" and campaign.creatives else None
        if old is None and new is None:
            return slot
        for entry, step in ((old, -1), (new, 1)):
            if entry is None:
                continue
            self._countries.update({c: step for c in entry.countries})
            self._device_types.update({d: step for d in entry.device_types})
            self._sizes.update({size: step for size in entry.banners_by_size})
            self._mimes.update({m: step for _, mimes in entry.videos + entry.audios for m in mimes})
            for kind, (values, index) in enumerate(zip(_blockable_values(entry), self._blockable, strict=True)):
                for value in values:
                    self._slot_arrays.pop((kind, value), None)  # its slots change (or may: looked at again)
                    slots = index.setdefault(value, set())
                    if step > 0:
                        slots.add(slot)
                    else:
                        slots.discard(slot)
                        if not slots:
                            del index[value]
        self._countries = +self._countries  # drop the ones no campaign targets any more
        self._device_types = +self._device_types
        self._sizes = +self._sizes
        self._mimes = +self._mimes
        self.entries[slot] = new
        if new is not None and new.capped and any(
                (cap := getattr(campaign.frequency_caps, w)) is not None and cap < 1 for w in WINDOWS):
            self.shut_by_caps.add(slot)
        else:
            self.shut_by_caps.discard(slot)
        self.budgets[slot] = new.campaign.daily_budget_micros if new is not None else 0
        self.most[slot] = new.campaign.bid_cap_micros // 1000 if new is not None else 0
        self.ends[slot] = campaign.ends_at if new is not None and campaign.ends_at is not None else np.inf
        if log:
            self._log.append(slot)
            self.epoch += 1
            if len(self._log) > _LOG_KEEP:
                drop = _LOG_KEEP // 2
                del self._log[:drop]
                self._log_base += drop
        return slot

    # ---- shapes ----
    def shape(self, request: BidRequest) -> _Shape:
        """The static candidates of the request's shape (cached)."""
        device = request.device
        country = (device.geo.country if device and device.geo else None) or \
                  (request.user.geo.country if request.user and request.user.geo else None)
        device_type = device.devicetype if device else None
        # A country (device type) no campaign targets finds what no country finds: one shape for all of them.
        if country not in self._countries:
            country = None
        if device_type not in self._device_types:
            device_type = None
        imps = [_ImpShape(imp, self._sizes, self._mimes) for imp in request.imp or ()]
        key = (country, device_type, tuple(imp.key() for imp in imps))
        cached = self.shapes.get(key)
        if cached is not None:
            if cached.epoch == self.epoch:
                return cached
            shape = self._caught_up(cached)
        else:
            shape = self._made(country, device_type, list(enumerate(imps)))
        self.shapes.put(key, shape)
        return shape

    def _made(self, country: str | None, device_type: int | None, imps: list[tuple[int, _ImpShape]]) -> _Shape:
        found: list[tuple[int, int, Creative, Campaign]] = []
        capped: list[int] = []
        banded: list[int] = []
        for slot, e in enumerate(self.entries):
            if e is None or not e.reaches(country, device_type):
                continue
            before = len(found)
            for index, imp in imps:
                found.extend((index, slot, creative, e.campaign) for creative in e.matching(imp))
            if len(found) > before:
                if e.capped:
                    capped.append(slot)
                if e.banded:  # campaigns targeting an LTV band
                    banded.append(slot)
        return _Shape(country, device_type, imps, self.epoch, _rows(found), _caps_of(found), capped, banded,
                      self._caps)

    def _caught_up(self, shape: _Shape) -> _Shape:
        """`shape` with the rows of the campaigns edited since it was made replaced (or made afresh).

        A shape's rows are in slot order, so an edited campaign's rows are one run, found by bisection, and
        its new rows go where that run was: the work is the edits' own rows and copying the arrays once, not
        a look at every row. A shape none of the edits reaches is kept as it is, its epoch moved on."""
        start = shape.epoch - self._log_base
        if start < 0 or self.epoch - shape.epoch > _PATCH_MOST:
            return self._made(shape.country, shape.device_type, shape.imps)
        edited = sorted(set(self._log[start:]))
        wanted = np.array(edited, dtype=shape.slot.dtype)  # of the rows' own type: searching casts no copy of them
        lows = shape.slot.searchsorted(wanted, "left").tolist()
        highs = shape.slot.searchsorted(wanted, "right").tolist()
        cuts: list[tuple[int, int, int, list[tuple[int, int, Creative, Campaign]]]] = []
        for slot, low, high in zip(edited, lows, highs, strict=True):
            new = shape.rows_for(slot, self.entries[slot])
            if low < high or new:
                cuts.append((slot, low, high, new))
        if not cuts:  # nothing of it changed: the same rows, caps and selection hold
            shape.epoch = self.epoch
            return shape
        parts: list[list[np.ndarray]] = [[], [], [], [], []]
        olds = (shape.imp_of, shape.slot, shape.creatives, shape.campaigns, shape.caps)
        done = 0  # rows of `shape` taken up to here
        for _, low, high, new in cuts:
            for part, old in zip(parts, olds, strict=True):
                part.append(old[done:low])
            if new:
                for part, extra in zip(parts, (*_rows(new), _caps_of(new)), strict=True):
                    part.append(extra)
            done = high
        for part, old in zip(parts, olds, strict=True):
            part.append(old[done:])
        imp_of, slot_arr, creatives, campaigns, caps = (np.concatenate(part) for part in parts)
        capped, banded = list(shape.capped), list(shape.banded)
        for slot, _, _, new in cuts:
            entry = self.entries[slot]
            for slots, has in ((capped, entry is not None and entry.capped),
                               (banded, entry is not None and entry.banded)):
                at = bisect.bisect_left(slots, slot)
                there = at < len(slots) and slots[at] == slot
                if there and not (new and has):
                    del slots[at]
                elif not there and new and has:
                    slots.insert(at, slot)
        return _Shape(shape.country, shape.device_type, shape.imps, self.epoch,
                      (imp_of, slot_arr, creatives, campaigns), caps, capped, banded, self._caps)

    # ---- block lists ----
    def blocked(self, request: BidRequest) -> tuple[tuple, np.ndarray] | None:
        """The slots the request's block lists shut out, as a mask, with the key it is cached by; None for none."""
        bcat, badv, bapp = request.bcat, request.badv, request.bapp
        if not (bcat or badv or bapp):
            return None
        hits = tuple(tuple(sorted({v for v in values if v in index})) if values else ()
                     for values, index in zip((bcat, badv, bapp), self._blockable, strict=True))
        if not any(hits):
            return None
        held = self.masks.get(hits)
        if held is not None and held[0] == self.epoch:
            return hits, held[1]
        mask = self._mask_caught_up(hits, *held) if held is not None else None
        if mask is None:
            mask = np.zeros(len(self.entries), dtype=bool)
            for kind, (values, index) in enumerate(zip(hits, self._blockable, strict=True)):
                for v in values:
                    slots = self._slot_arrays.get((kind, v))
                    if slots is None:
                        slots = self._slot_arrays[(kind, v)] = np.fromiter(index[v], dtype=np.int64)
                    mask[slots] = True
        mask.flags.writeable = False
        self.masks.put(hits, (self.epoch, mask))
        return hits, mask

    def _mask_caught_up(self, hits: tuple, epoch: int, mask: np.ndarray) -> np.ndarray | None:
        """The mask of `hits` made at `epoch`, with the slots edited since looked at again (a copy); None when
        the log no longer reaches back to it, or it has fewer slots than the index."""
        start = epoch - self._log_base
        if start < 0 or self.epoch - epoch > _PATCH_MOST or len(mask) != len(self.entries):
            return None
        mask = mask.copy()
        for slot in set(self._log[start:]):
            entry = self.entries[slot]
            mask[slot] = entry is not None and any(
                v in hit for values, hit in zip(_blockable_values(entry), hits, strict=True) for v in values)
        return mask


def _blockable_values(entry: _Entry) -> tuple[set[str], set[str], set[str]]:
    """What block lists can name of a live campaign: its categories (bcat), advertiser domain (badv), app (bapp)."""
    c = entry.campaign
    return entry.categories, {c.advertiser_domain}, {c.app_bundle} if c.app_bundle is not None else set()


def _caps_of(found: Sequence[tuple[int, int, Creative, Campaign]]) -> np.ndarray:
    return np.array([f[3].bid_cap_micros for f in found], dtype=np.float64)


def _rows(found: Sequence[tuple[int, int, Creative, Campaign]]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                           np.ndarray]:
    return (np.array([f[0] for f in found], dtype=np.int32), np.array([f[1] for f in found], dtype=np.int32),
            _object_array([f[2] for f in found]), _object_array([f[3] for f in found]))

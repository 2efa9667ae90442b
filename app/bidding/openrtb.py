"""OpenRTB 2.6 BidRequest / BidResponse as msgspec Structs.

Unknown fields are ignored and enumerations are plain ints/strings, so values added by
later versions of the spec are tolerated as the spec requires. `validate` applies the
rules the type system cannot (a required `id`, at least one imp, one distribution
channel, ...) and returns a reason code for metrics.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _O(msgspec.Struct, omit_defaults=True):
    pass


class Format(_O):
    w: int | None = None
    h: int | None = None


class Banner(_O):
    w: int | None = None
    h: int | None = None
    format: list[Format] | None = None
    mimes: list[str] | None = None
    pos: int | None = None
    battr: list[int] | None = None


class Video(_O):
    mimes: list[str] | None = None
    w: int | None = None
    h: int | None = None
    minduration: int | None = None
    maxduration: int | None = None
    protocols: list[int] | None = None


class Audio(_O):
    mimes: list[str] | None = None
    minduration: int | None = None
    maxduration: int | None = None


class Native(_O):
    request: str | None = None
    ver: str | None = None


class Deal(_O):
    id: str | None = None
    bidfloor: float = 0.0
    bidfloorcur: str = "USD"
    at: int | None = None
    wseat: list[str] | None = None


class Pmp(_O):
    private_auction: int = 0
    deals: list[Deal] | None = None


class Imp(_O):
    id: str | None = None
    banner: Banner | None = None
    video: Video | None = None
    audio: Audio | None = None
    native: Native | None = None
    pmp: Pmp | None = None
    bidfloor: float = 0.0
    bidfloorcur: str = "USD"
    secure: int | None = None
    tagid: str | None = None
    exp: int | None = None
    instl: int | None = None


class Publisher(_O):
    id: str | None = None
    name: str | None = None
    domain: str | None = None
    cat: list[str] | None = None


class Site(_O):
    id: str | None = None
    domain: str | None = None
    page: str | None = None
    cat: list[str] | None = None
    publisher: Publisher | None = None


class App(_O):
    id: str | None = None
    bundle: str | None = None
    domain: str | None = None
    cat: list[str] | None = None
    publisher: Publisher | None = None


class Dooh(_O):
    id: str | None = None
    name: str | None = None
    venuetype: list[str] | None = None
    publisher: Publisher | None = None


class Geo(_O):
    country: str | None = None
    region: str | None = None
    city: str | None = None
    lat: float | None = None
    lon: float | None = None


class Device(_O):
    ua: str | None = None
    ip: str | None = None
    devicetype: int | None = None
    os: str | None = None
    ifa: str | None = None
    geo: Geo | None = None


class Segment(_O):
    id: str | None = None
    name: str | None = None
    value: str | None = None


class Data(_O):
    id: str | None = None
    name: str | None = None
    segment: list[Segment] | None = None


class User(_O):
    id: str | None = None
    buyeruid: str | None = None
    consent: str | None = None
    data: list[Data] | None = None
    geo: Geo | None = None
    ext: dict[str, Any] | None = None


class Regs(_O):
    coppa: int | None = None
    gdpr: int | None = None
    us_privacy: str | None = None
    gpp: str | None = None
    ext: dict[str, Any] | None = None


class SupplyChainNode(_O):
    asi: str | None = None
    sid: str | None = None
    hp: int | None = None


class SupplyChain(_O):
    complete: int | None = None
    ver: str | None = None
    nodes: list[SupplyChainNode] | None = None


class Source(_O):
    tid: str | None = None
    fd: int | None = None
    schain: SupplyChain | None = None
    ext: dict[str, Any] | None = None


class BidRequest(_O):
    id: str | None = None
    imp: list[Imp] | None = None
    site: Site | None = None
    app: App | None = None
    dooh: Dooh | None = None
    device: Device | None = None
    user: User | None = None
    regs: Regs | None = None
    source: Source | None = None
    at: int = 2
    tmax: int | None = None
    cur: list[str] | None = None
    bcat: list[str] | None = None
    badv: list[str] | None = None
    bapp: list[str] | None = None
    test: int = 0


class Bid(_O):
    id: str
    impid: str
    price: float
    adid: str | None = None
    nurl: str | None = None
    burl: str | None = None
    lurl: str | None = None
    adm: str | None = None
    adomain: list[str] | None = None
    crid: str | None = None
    cat: list[str] | None = None
    w: int | None = None
    h: int | None = None
    mtype: int | None = None
    dealid: str | None = None


class SeatBid(_O):
    bid: list[Bid]
    seat: str | None = None


class BidResponse(_O):
    id: str
    seatbid: list[SeatBid] | None = None
    bidid: str | None = None
    cur: str | None = None
    nbr: int | None = None


# OpenRTB 2.6 no-bid reason codes (section 5.24) used by Contrail.
NBR_UNKNOWN, NBR_TECHNICAL, NBR_INVALID, NBR_DAILY_READER_CAP, NBR_INSUFFICIENT_TIME = 0, 1, 2, 9, 15
# Marked-up creative type (mtype): 1 banner, 2 video, 3 audio, 4 native.
MTYPE = {"banner": 1, "video": 2, "audio": 3, "native": 4}

# A CPM above this is a mistake, not a floor; refusing it keeps price arithmetic finite.
MAX_FLOOR = 1_000_000.0

_decoder = msgspec.json.Decoder(BidRequest)
_encoder = msgspec.json.Encoder()


class InvalidBidRequest(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode_request(raw: bytes | str) -> BidRequest:
    """Decode and validate; raises InvalidBidRequest with a reason code."""
    try:
        request = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidBidRequest("invalid_field", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidBidRequest("not_json", str(exc)) from None
    validate(request)
    return request


def validate(request: BidRequest) -> None:
    if not request.id:
        raise InvalidBidRequest("missing_id")
    if not request.imp:
        raise InvalidBidRequest("no_imp")
    seen: set[str] = set()
    for imp in request.imp:
        if not imp.id:
            raise InvalidBidRequest("imp_missing_id")
        if imp.id in seen:
            raise InvalidBidRequest("duplicate_imp_id", imp.id)
        seen.add(imp.id)
        if imp.banner is None and imp.video is None and imp.audio is None and imp.native is None:
            raise InvalidBidRequest("imp_without_media", imp.id)
        if imp.video is not None and not imp.video.mimes:
            raise InvalidBidRequest("video_without_mimes", imp.id)
        if imp.audio is not None and not imp.audio.mimes:
            raise InvalidBidRequest("audio_without_mimes", imp.id)
        if not 0 <= imp.bidfloor <= MAX_FLOOR or (  # also refuses NaN and infinity
                imp.pmp is not None and imp.pmp.deals and not all(0 <= d.bidfloor <= MAX_FLOOR for d in imp.pmp.deals)):
            raise InvalidBidRequest("bidfloor_out_of_range", imp.id)
    if (request.site is not None) + (request.app is not None) + (request.dooh is not None) > 1:
        raise InvalidBidRequest("multiple_distribution_channels")
    if request.tmax is not None and request.tmax <= 0:
        raise InvalidBidRequest("invalid_tmax")


def encode_response(response: BidResponse) -> bytes:
    return _encoder.encode(response)

"""OpenRTB 2.6 BidRequest / BidResponse as msgspec Structs.

Unknown fields are ignored and enumerations are plain ints/strings, so values added by
later versions of the spec are tolerated as the spec requires. Value ranges (sizes,
durations, 0/1 flags, lat/lon) and required sub-object fields are msgspec constraints,
checked while decoding at no extra cost; `validate` applies the rules the type system
cannot (a required `id`, at least one imp, one distribution channel, ...). Either way a
broken rule raises InvalidBidRequest with a reason code for metrics (see _RULE_REASONS).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from app.jsondepth import refuse_left_open

# Value ranges. A size is in pixels and fits no creative at 0 or less (Prebid Server refuses
# negative sizes, and format sizes of 0); a flag is 0 or 1; a duration is whole seconds.
Size = Annotated[int, msgspec.Meta(ge=1)]
Flag = Annotated[int, msgspec.Meta(ge=0, le=1)]
MinDuration = Annotated[int, msgspec.Meta(ge=0)]
MaxDuration = Annotated[int, msgspec.Meta(ge=1)]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Required = Annotated[str, msgspec.Meta(min_length=1)]  # a required string: absent or "" is missing


class _O(msgspec.Struct, omit_defaults=True):
    pass


class Format(_O):
    w: Size | None = None
    h: Size | None = None


class Banner(_O):
    w: Size | None = None
    h: Size | None = None
    format: list[Format] | None = None
    mimes: list[str] | None = None
    pos: int | None = None
    battr: list[int] | None = None


class Video(_O):
    mimes: list[str] | None = None
    w: Size | None = None
    h: Size | None = None
    minduration: MinDuration | None = None
    maxduration: MaxDuration | None = None
    protocols: list[int] | None = None


class Audio(_O):
    mimes: list[str] | None = None
    minduration: MinDuration | None = None
    maxduration: MaxDuration | None = None


class Native(_O):
    request: Required  # the Native Ad request payload (a JSON string); required by the spec
    ver: str | None = None


class Deal(_O):
    id: Required  # required: a bid in the deal names it in `dealid`
    bidfloor: float = 0.0
    bidfloorcur: str = "USD"
    at: int | None = None
    wseat: list[str] | None = None


class Pmp(_O):
    private_auction: Flag = 0
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
    secure: Flag | None = None
    tagid: str | None = None
    exp: int | None = None
    instl: Flag | None = None


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
    lat: Latitude | None = None
    lon: Longitude | None = None


class Device(_O):
    ua: str | None = None
    ip: str | None = None
    devicetype: int | None = None
    os: str | None = None
    ifa: str | None = None
    w: Size | None = None
    h: Size | None = None
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
    coppa: Flag | None = None
    gdpr: Flag | None = None  # 0 or 1; any other value leaves the consent state unknown: invalid
    us_privacy: str | None = None
    gpp: str | None = None
    ext: dict[str, Any] | None = None


class SupplyChainNode(_O):
    asi: Required
    sid: Required
    hp: Flag | None = None


class SupplyChain(_O):
    complete: Flag
    ver: Required
    nodes: Annotated[list[SupplyChainNode], msgspec.Meta(min_length=1)]


class Source(_O):
    tid: str | None = None
    fd: Flag | None = None
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
    test: Flag = 0


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
    cid: str | None = None   # the buyer's campaign id; on a routed DSP bid it may name a Contrail campaign's line item
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


# The reason counted when the decoder finds a constraint above broken (a value out of its range,
# a required field missing or empty), by the field's path with list indexes dropped. A value of
# the wrong type, or a broken rule not listed here, is "invalid_field".
_RULE_REASONS = {
    **dict.fromkeys(("imp.banner.w", "imp.banner.h", "imp.banner.format.w", "imp.banner.format.h",
                     "imp.video.w", "imp.video.h", "device.w", "device.h"), "invalid_size"),
    **dict.fromkeys(("imp.video.minduration", "imp.video.maxduration", "imp.audio.minduration",
                     "imp.audio.maxduration"), "invalid_duration"),
    **dict.fromkeys(("imp.secure", "imp.instl", "imp.pmp.private_auction", "test", "source.fd"), "invalid_flag"),
    **dict.fromkeys(("device.geo.lat", "device.geo.lon", "user.geo.lat", "user.geo.lon"), "invalid_geo"),
    **dict.fromkeys(("source.schain.complete", "source.schain.ver", "source.schain.nodes", "source.schain.nodes.asi",
                     "source.schain.nodes.sid", "source.schain.nodes.hp"), "invalid_schain"),
    "imp.native.request": "native_without_request",
    "imp.pmp.deals.id": "deal_missing_id",
    "regs.gdpr": "invalid_gdpr",
    "regs.coppa": "invalid_coppa",
}
_BROKEN_RULE = re.compile(r"Expected `[^`]+` (?:of length )?[<>]|Object missing required field `([^`]+)`")
_AT = re.compile(r" - at `\$([^`]*)`$")
_INDEX = re.compile(r"\[\d+\]")


def _decode_error_reason(message: str) -> str:
    """The reason for a msgspec ValidationError, from its message (only on the invalid path)."""
    broken = _BROKEN_RULE.match(message)
    if broken is None:
        return "invalid_field"
    at = _AT.search(message)
    path = _INDEX.sub("", at.group(1)).lstrip(".") if at else ""
    if broken.group(1):  # a missing field is reported at the object that lacks it
        path = f"{path}.{broken.group(1)}".lstrip(".")
    return _RULE_REASONS.get(path, "invalid_field")


def decode_request(raw: bytes | str) -> BidRequest:
    """Decode and validate; raises InvalidBidRequest with a reason code."""
    try:
        refuse_left_open(raw)
        request = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidBidRequest(_decode_error_reason(str(exc)), str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidBidRequest("not_json", str(exc)) from None
    except UnicodeDecodeError as exc:  # msgspec's error for invalid UTF-8 inside a JSON string
        raise InvalidBidRequest("not_json", f"invalid UTF-8: {exc}") from None
    except RecursionError:  # brackets left open in a free-form `ext` (balanced deep ones are refused before this)
        raise InvalidBidRequest("not_json", "JSON is malformed: brackets left open") from None
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
        video, audio = imp.video, imp.audio
        if video is not None:
            if not video.mimes:
                raise InvalidBidRequest("video_without_mimes", imp.id)
            if video.maxduration is not None and (video.minduration or 0) > video.maxduration:
                raise InvalidBidRequest("invalid_duration", imp.id)
        if audio is not None:
            if not audio.mimes:
                raise InvalidBidRequest("audio_without_mimes", imp.id)
            if audio.maxduration is not None and (audio.minduration or 0) > audio.maxduration:
                raise InvalidBidRequest("invalid_duration", imp.id)
        if not 0 <= imp.bidfloor <= MAX_FLOOR or (  # also refuses NaN and infinity
                imp.pmp is not None and imp.pmp.deals and not all(0 <= d.bidfloor <= MAX_FLOOR for d in imp.pmp.deals)):
            raise InvalidBidRequest("bidfloor_out_of_range", imp.id)
    if (request.site is not None) + (request.app is not None) + (request.dooh is not None) > 1:
        raise InvalidBidRequest("multiple_distribution_channels")
    if request.tmax is not None and request.tmax <= 0:
        raise InvalidBidRequest("invalid_tmax")
    # OpenRTB 2.5's places for the privacy signals, still sent: the same rules as their 2.6 fields.
    regs, user = request.regs, request.user
    if regs is not None and regs.ext:
        gdpr = regs.ext.get("gdpr")
        if gdpr is not None and (type(gdpr) is not int or not 0 <= gdpr <= 1):  # an int: not true, not "1"
            raise InvalidBidRequest("invalid_gdpr")
    if user is not None and user.ext:
        consent = user.ext.get("consent")
        if consent is not None and type(consent) is not str:
            raise InvalidBidRequest("invalid_consent")


def banner_sizes(banner: Banner) -> set[tuple[int, int]]:
    """The fixed sizes a banner takes: its w×h and each format's w×h (a format given only by ratio adds none).
    Sizes are only recommended by the spec, so a banner may have none: it is valid, and no creative fits it."""
    sizes = {(f.w, f.h) for f in banner.format or () if f.w and f.h}
    if banner.w and banner.h:
        sizes.add((banner.w, banner.h))
    return sizes


def encode_response(response: BidResponse) -> bytes:
    return _encoder.encode(response)

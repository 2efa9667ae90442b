"""One adapter per DSP platform kind: generic OpenRTB 2.6 (openrtb.py) and thin subclasses isolating each platform's
modelled quirks (dv360, amazon, ttd, meta). `build_adapter` picks one by the configured `kind`."""

from __future__ import annotations

from adapters.http.dsp.amazon import AmazonDsp
from adapters.http.dsp.dv360 import Dv360Dsp
from adapters.http.dsp.meta import MetaDsp
from adapters.http.dsp.openrtb import DspSession, OpenRtbDsp
from adapters.http.dsp.ttd import TradeDeskDsp
from app.config import DspPlatform

ADAPTERS: dict[str, type[OpenRtbDsp]] = {"openrtb": OpenRtbDsp, "dv360": Dv360Dsp, "amazon": AmazonDsp,
                                         "ttd": TradeDeskDsp, "meta": MetaDsp}


def build_adapter(platform: DspPlatform, session: DspSession) -> OpenRtbDsp:
    return ADAPTERS[platform.kind](platform, session)


__all__ = ["ADAPTERS", "DspSession", "build_adapter"]

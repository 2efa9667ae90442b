"""Demo data: loaded by `python -m app seed-demo`, idempotently. Each capability adds its set."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.platform import Platform

DEMO_ADMIN = ("admin@contrail.demo", "contrail-admin")
DEMO_CUSTOMER = ("traveller@contrail.demo", "contrail-demo")


async def _accounts(platform: "Platform") -> str:
    created = 0
    for (email, password), role in ((DEMO_ADMIN, "admin"), (DEMO_CUSTOMER, "customer")):
        if platform.account_store.by_email(email) is None:
            await platform.admin.create_user("seed-demo", email, password, role)
            created += 1
    return f"demo accounts: {created} created ({DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}, " \
           f"{DEMO_CUSTOMER[0]} / {DEMO_CUSTOMER[1]})"


DATA_SETS = [("accounts", _accounts)]


async def seed_demo(platform: "Platform") -> list[str]:
    """Load every demo data set not loaded yet; return a line per set."""
    lines = []
    for name, loader in DATA_SETS:
        if await platform.demo_markers.is_loaded(name):
            lines.append(f"{name}: already loaded")
            continue
        lines.append(await loader(platform))
        await platform.demo_markers.mark_loaded(name, platform.clock.now())
    return lines

"""Email analytics count each message once, whether our SMTP path (relay, open pixel, click
redirects) or SendGrid's signed event webhook reported it, across repeats and restarts."""

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.main import PLATFORM, create_app
from tests.conftest import CONFORMANCE, make_config
from tests.integration.channels.helpers import Relay, activate

SAMPLE = json.loads((CONFORMANCE / "sendgrid" / "sendgrid_event_all_types_sample.json").read_text())


class Mail:
    """The real app sending through a relay on loopback, with signed SendGrid webhooks (our own key)."""

    def __init__(self, aiohttp_client, tmp_path, clock, relay) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        public = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        self.config = make_config(tmp_path, smtp__port=relay.port, smtp__retry_backoff_s=0.05,
                                  sendgrid__verification_key=base64.b64encode(public).decode())
        self._aiohttp_client, self._clock, self.relay = aiohttp_client, clock, relay

    async def start(self) -> "Mail":
        self.client = await self._aiohttp_client(create_app(self.config, clock=self._clock))
        _, key = await self.client.app[PLATFORM].api_keys.create("crm", "admin")
        self.staff = {"X-Api-Key": key}
        return self

    async def restart(self) -> None:
        await self.client.close()
        await self.start()

    async def send(self, user_id: str, address: str):
        """Activate a member by email; returns the activation and the message as the relay got it."""
        await self.client.put(f"/v1/loyalty/members/{user_id}", json={"email": address}, headers=self.staff)
        before = len(self.relay.messages)  # counted first: the relay may have the message before activate returns
        result = await activate(self.client, self.staff, user_id=user_id)
        assert result["channel"] == "email", result
        await self.relay.wait_for(before + 1)
        [mail] = [m for m in self.relay.messages if m["Message-ID"] == f"<{result['provider_message_id']}@contrail>"]
        return result, mail

    async def webhook(self, events: list[dict]) -> dict:
        raw = json.dumps(events).encode()
        timestamp = str(int(time.time()))
        signature = self._key.sign(timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
        resp = await self.client.post("/v1/webhooks/sendgrid", data=raw, headers={
            "Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode()})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def pixel(self, mail) -> None:
        html = mail.get_body(("html",)).get_content()
        src = html.split('<img src="')[1].split('"')[0].replace(f"http://127.0.0.1:{self.client.port}", "")
        assert (await self.client.get(src)).status == 200

    async def click(self, mail) -> None:
        html = mail.get_body(("html",)).get_content()
        link = html.split('href="')[1].split('"')[0].replace("&amp;", "&")
        link = link.replace(f"http://127.0.0.1:{self.client.port}", "")
        assert (await self.client.get(link, allow_redirects=False)).status == 302

    async def report(self, activation_id: str | None = None) -> dict:
        path = "/v1/channels/email/analytics" + (f"/{activation_id}" if activation_id else "")
        resp = await self.client.get(path, headers=self.staff)
        assert resp.status == 200
        return await resp.json()


@pytest.fixture
async def mail(aiohttp_client, tmp_path, clock):
    relay = await Relay().start()
    yield await Mail(aiohttp_client, tmp_path, clock, relay).start()
    await relay.stop()


def sendgrid_reports(mail, *kinds: str, n: int = 0, custom_args: bool = True, smtp_id: bool = False) -> list[dict]:
    """SendGrid's own sample events of these kinds, as SendGrid reports a message sent through its
    SMTP relay: to its recipient, with the X-SMTPAPI unique args as top-level keys and/or the
    Message-ID we set as smtp-id. `n` makes the sample's ids distinct for another message."""
    events = []
    for sample in SAMPLE:
        if sample["event"] not in kinds:
            continue
        event = dict(sample, email=mail["To"])
        if n:
            event.update(sg_event_id=f"{sample['sg_event_id']}-{n}", sg_message_id=f"{sample['sg_message_id']}-{n}")
        if custom_args:
            event.update(json.loads(mail["X-SMTPAPI"])["unique_args"])
        if smtp_id:
            event["smtp-id"] = mail["Message-ID"]
        events.append(event)
    assert len(events) == len(kinds)
    return events


def counts(report: dict, *names: str) -> tuple:
    return tuple(report[n] for n in names)


NAMES = ("sent", "delivered", "opens", "unique_opens", "open_rate")


async def test_one_message_opened_once_counts_once_whichever_path_reported_it(mail):
    result, sent = await mail.send("lia", "Lia@Example.com")
    assert json.loads(sent["X-SMTPAPI"]) == {"unique_args": {"contrail_message_id": result["provider_message_id"],
                                                             "activation_id": result["activation_id"]}}
    await mail.pixel(sent)
    assert (await mail.webhook(sendgrid_reports(sent, "processed", "delivered", "open")))["recorded"] == 3
    for report in (await mail.report(result["activation_id"]), await mail.report()):
        assert counts(report, *NAMES) == (1, 1, 1, 1, 1.0), report


async def test_two_messages_one_opened_is_an_open_rate_of_a_half(mail):
    _, opened = await mail.send("lia", "lia@example.com")
    _, unopened = await mail.send("max", "max@example.com")
    await mail.webhook(sendgrid_reports(opened, "delivered", "open", n=1)
                       + sendgrid_reports(unopened, "delivered", n=2))
    await mail.pixel(opened)
    await mail.pixel(opened)  # opened twice: two opens, one unique
    report = await mail.report()
    assert counts(report, *NAMES) == (2, 2, 2, 1, 0.5), report


async def test_a_repeated_webhook_delivery_changes_nothing(mail):
    result, sent = await mail.send("lia", "lia@example.com")
    events = sendgrid_reports(sent, "processed", "delivered", "open", "click")
    first = await mail.webhook(events)
    assert (first["recorded"], first["duplicate"]) == (4, 0)
    before = await mail.report(result["activation_id"])
    again = await mail.webhook(events)  # SendGrid retries the whole batch
    assert (again["recorded"], again["duplicate"]) == (0, 4)
    within = await mail.webhook([events[2], events[2]])  # and one event twice in a batch
    assert (within["recorded"], within["duplicate"]) == (0, 2)
    assert await mail.report(result["activation_id"]) == before
    assert counts(before, "sent", "delivered", "opens", "unique_opens", "clicks", "unique_clicks",
                  "click_rate") == (1, 1, 1, 1, 1, 1, 1.0)


async def test_counts_and_repeats_survive_a_restart(mail):
    result, sent = await mail.send("lia", "lia@example.com")
    events = sendgrid_reports(sent, "delivered", "open")
    await mail.webhook(events)
    await mail.pixel(sent)
    before = await mail.report(result["activation_id"])
    assert counts(before, *NAMES) == (1, 1, 1, 1, 1.0)
    await mail.restart()
    assert await mail.report(result["activation_id"]) == before
    assert (await mail.webhook(events))["duplicate"] == 2  # a retry after the restart is still a repeat
    assert await mail.report(result["activation_id"]) == before


async def test_smtp_id_and_sendgrid_message_id_tie_events_without_custom_args(mail):
    # Delivery events carry the Message-ID we set as smtp-id; engagement events only SendGrid's
    # message id, which an event tied to our message links to it.
    result, sent = await mail.send("lia", "lia@example.com")
    await mail.webhook(sendgrid_reports(sent, "delivered", custom_args=False, smtp_id=True)
                       + [{k: v for k, v in e.items() if k != "smtp-id"}
                          for e in sendgrid_reports(sent, "open", "click", custom_args=False)])
    await mail.pixel(sent)
    await mail.click(sent)
    report = await mail.report()
    assert counts(report, *NAMES, "clicks", "unique_clicks", "click_rate") == (1, 1, 1, 1, 1.0, 1, 1, 1.0), report
    assert counts(await mail.report(result["activation_id"]), "sent", "delivered", "unique_opens") == (1, 1, 1)


async def test_a_sendgrid_bounce_is_one_bounced_message_not_a_delivery(mail):
    result, sent = await mail.send("lia", "lia@example.com")
    await mail.webhook(sendgrid_reports(sent, "processed", "deferred", "bounce"))
    report = await mail.report(result["activation_id"])
    assert counts(report, "sent", "delivered", "bounces", "deferred", "bounce_rate") == (1, 0, 1, 1, 1.0), report


async def test_an_activation_id_custom_arg_alone_ties_events_to_our_message_to_that_address(mail):
    result, sent = await mail.send("lia", "Lia@Example.com")
    events = [dict(e, activation_id=result["activation_id"], email="lia@example.com")
              for e in sendgrid_reports(sent, "delivered", "open", custom_args=False)]
    await mail.webhook(events)
    await mail.pixel(sent)
    assert counts(await mail.report(result["activation_id"]), *NAMES) == (1, 1, 1, 1, 1.0)

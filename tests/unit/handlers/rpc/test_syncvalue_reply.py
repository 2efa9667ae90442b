"""The SyncValue reply built from an answer: the same bytes as the plain message made from every field."""

import dataclasses

import pytest

from app.ltv.service import INVALID_INPUT, NO_HISTORY, SUCCESS, Answer
from handlers.rpc import syncvalue_pb2 as pb
from handlers.rpc.syncvalue import reply_of

ANSWERS = [
    Answer("", "member-0001", SUCCESS, 1234.5, 0.81, 100.25, 3000.0, 2.3, 0.9, 365, "EUR", "contrail-3",
           inference_time_us=12),
    Answer("req-7", "member-0002", SUCCESS, 88.0, 0.4, 0.0, 410.5, 0.7, 0.35, 730, "EUR", "contrail-3",
           ltv_to_cac=4.4, inference_time_us=3,
           top_features=(("frequency", 40.5, 3.0), ("recency", -12.25, 20.0))),
    Answer("", "stranger", NO_HISTORY, 55.0, 0.2, 0.0, 300.0, 0.2, 1.0, 365, "EUR", "contrail-3",
           message="no purchase known for this customer: a new customer's value"),
    Answer("r", "bad", INVALID_INPUT, message="horizon_days must be 0 (the configured horizon) to 3650"),
]


def plain(a: Answer) -> pb.LTVPredictionResponse:
    """Every field of the answer passed to the message, defaults included."""
    fields = dataclasses.asdict(a)
    fields["top_features"] = [pb.FeatureImportance(name=n, importance=i, value=v) for n, i, v in a.top_features]
    return pb.LTVPredictionResponse(**fields)


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: a.customer_id)
def test_a_reply_is_the_plain_message_of_every_field(answer):
    reply = reply_of(answer)
    assert reply == plain(answer)
    assert reply.SerializeToString(deterministic=True) == plain(answer).SerializeToString(deterministic=True)


def test_a_batch_builds_the_same_replies_in_place():
    batch = pb.LTVBatchResponse()
    for answer in ANSWERS:
        reply_of(answer, batch.responses.add)
    assert list(batch.responses) == [plain(a) for a in ANSWERS]
    assert batch.responses[1].top_features[0].name == "frequency"
    assert batch.responses[1].ltv_to_cac == pytest.approx(4.4)

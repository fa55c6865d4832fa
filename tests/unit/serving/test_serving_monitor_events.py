"""What the monitor makes of a POSTed body: a sender's batch becomes its events, and a body
it cannot take is refused saying why (the handler answers 400 with that text)."""

from __future__ import annotations

import pytest

from dex_serving.eventlog import BATCH_CONTENT_TYPE, inference_events
from dex_serving.monitor.service import EventsError, parse_events

BATCH = {"content-type": BATCH_CONTENT_TYPE}


def test_a_batch_as_the_logger_sends_it_parses_into_its_events() -> None:
    events = [
        e
        for i in range(3)
        for e in inference_events(
            source="dex/transformer/churn", service="churn", version="4",
            request={"instances": [{"a": i, "b": 0.5, "plan": "pro"}]},
            response={"predictions": [1], "probabilities": [[0.25, 0.75]]},
        )
    ]  # fmt: skip
    body = ("[" + ",".join(e.model_dump_json(exclude_none=True) for e in events) + "]").encode()

    assert parse_events(BATCH, body) == events
    assert parse_events({"content-type": f"{BATCH_CONTENT_TYPE}; charset=utf-8"}, body) == events


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[{", "body is not JSON"),
        (b'{"id": "1", "source": "s", "type": "t"}', "a CloudEvents batch must be a JSON array"),
        (b'[{"id": "1", "type": "t"}]', "not a CloudEvent: Field required at ('source',)"),
        (b'[{"id": "1", "source": "s", "type": "t"}, 7]', "not a CloudEvent"),
    ],
)
def test_a_batch_it_cannot_take_is_refused_saying_why(body: bytes, says: str) -> None:
    with pytest.raises(EventsError) as refused:
        parse_events(BATCH, body)
    assert str(refused.value).startswith(says)

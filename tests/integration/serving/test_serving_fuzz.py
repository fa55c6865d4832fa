"""Property: no generated bad request makes the transformer answer 5xx, and the one
keep-alive connection the client uses survives all of them (a 500 would close it)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dex_testing.serving_world import World
from dexctl.local_serving import ServingURLs

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="serving")]

EXAMPLES = 1100

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
entity_values = st.one_of(scalars, st.lists(scalars, max_size=3), st.integers(-5, 5))
v1_near_valid = st.fixed_dictionaries(
    {"instances": st.lists(
        st.one_of(
            st.fixed_dictionaries({"customer_id": entity_values}),
            st.dictionaries(st.sampled_from(["customer_id", "tenure_months", "x"]), entity_values, max_size=3),
            entity_values,
        ),
        max_size=4,
    )}
)  # fmt: skip
datatypes = st.sampled_from(
    ["INT64", "INT32", "FP64", "FP32", "BYTES", "BOOL", "UINT8", "FP16", "NOPE"]
)
v2_near_valid = st.fixed_dictionaries(
    {"inputs": st.lists(
        st.fixed_dictionaries({
            "name": st.sampled_from(["customer_id", "x", ""]),
            "datatype": datatypes,
            "shape": st.lists(st.integers(-2, 4), max_size=3),
            "data": st.lists(scalars, max_size=5),
        }),
        max_size=3,
    )}
)  # fmt: skip
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    v1_near_valid.map(lambda v: json.dumps(v).encode()),
    v2_near_valid.map(lambda v: json.dumps(v).encode()),
)


def _local_port(response: httpx.Response) -> Any:
    stream = response.extensions["network_stream"]
    return stream.get_extra_info("client_addr")


def test_generated_bad_requests_never_5xx_and_keep_alive_survives(
    stack: ServingURLs, world: World
) -> None:
    seen: list[int] = []
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=1)) as client:
        first = client.post(
            stack.predict_url, json={"instances": [{"customer_id": world.reference_ids[0]}]}
        )
        assert first.status_code == 200
        connection = _local_port(first)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(body=bodies, v2=st.booleans())
        def probe(body: bytes, v2: bool) -> None:
            url = stack.infer_url if v2 else stack.predict_url
            response = client.post(url, content=body, headers={"content-type": "application/json"})
            seen.append(response.status_code)
            assert response.status_code < 500, (body, response.status_code, response.text)
            if response.status_code >= 400:
                assert isinstance(response.json(), dict), response.text
            assert _local_port(response) == connection, "keep-alive connection was dropped"

        probe()
        last = client.post(
            stack.predict_url, json={"instances": [{"customer_id": world.reference_ids[1]}]}
        )
        assert last.status_code == 200
        assert _local_port(last) == connection
    assert len(seen) >= 1000
    assert sum(400 <= s < 500 for s in seen) >= 900

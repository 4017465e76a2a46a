"""`stop`, `seed`, `n` and log probabilities read as OpenAI reads them (chat/api/
sampling.py): a wrong type or a choice one written answer cannot honour is a 400
naming the field; fields this API does not know are ignored, as OpenAI's are."""

import json

import pytest

from chat.api.errors import BadRequest
from chat.api.request import parse

ASK = {"model": "fusion", "messages": [{"role": "user", "content": "hi"}]}


def _parse(**fields):
    return parse(json.dumps({**ASK, **fields}).encode())


def _refusal(**fields) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        _parse(**fields)
    return caught.value


def test_stop_is_a_string_or_up_to_four_strings():
    assert _parse(stop="END").stop == ("END",)
    assert _parse(stop=["\n\n", "END"]).stop == ("\n\n", "END")
    assert _parse(stop=None).stop == _parse(stop=[]).stop == _parse().stop == ()
    assert _refusal(stop=["a", "b", "c", "d", "e"]).param == "stop"
    assert _refusal(stop=["a", 1]).code == "invalid_type"
    assert _refusal(stop={"a": 1}).param == "stop"
    assert "empty" in _refusal(stop=[""]).message


def test_seed_is_a_64_bit_integer():
    assert _parse(seed=42).seed == 42
    assert _parse(seed=0).seed == 0
    assert _parse().seed is None
    for wrong in ("42", 4.2, True):
        refused = _refusal(seed=wrong)
        assert (refused.param, refused.code) == ("seed", "invalid_type")
    assert _refusal(seed=2**63).param == "seed"


def test_one_choice_and_no_log_probabilities():
    assert _parse(n=1, logprobs=False, top_logprobs=0).model == "fusion"
    refused = _refusal(n=2)
    assert (refused.param, refused.code) == ("n", "unsupported_parameter")
    assert "only one choice" in refused.message
    assert _refusal(n=0).param == "n"
    assert _refusal(n="2").code == "invalid_type"
    refused = _refusal(logprobs=True)
    assert (refused.param, refused.code) == ("logprobs", "unsupported_parameter")
    assert _refusal(logprobs="yes").code == "invalid_type"
    assert _refusal(top_logprobs=3).param == "top_logprobs"


def test_unknown_fields_are_ignored():
    request = _parse(
        frequency_penalty=0.5,
        presence_penalty=0,
        service_tier="auto",
        store=False,
        a_field_nobody_defined={"deep": [1, 2]},
    )
    assert request.question == "hi"

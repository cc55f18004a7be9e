import hashlib

import msgspec
import pytest

from esign.agreement import (
    canonical_json,
    fingerprint,
    parse_agreement,
    signer_role,
    signing_order,
)
from esign.errors import EsignError
from tests.unit.esign.samples import sample_agreement


def test_jcs_sorts_keys_by_utf16_code_units_and_escapes_like_es6():
    # RFC 8785 §3.2.3 sorting example: keys compared as UTF-16 code units
    value = {
        "\u20ac": "Euro",
        "\r": "CR",
        "\ufb33": "Hebrew",
        "1": "One",
        "\U0001f600": "Emoji",
        "\x80": "Control",
        "\u00f6": "Latin",
    }
    out = canonical_json(value).decode()
    keys_in_order = ["\r", "1", "\x80", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    positions = [
        out.index(msgspec.json.encode(k).decode()[1:-1] if k != "\r" else "\\r")
        for k in keys_in_order
    ]
    assert positions == sorted(positions)
    assert canonical_json({"b": [1, True, None], "a": 'x"\\\n\u0001/é'}) == (
        '{"a":"x\\"\\\\\\n\\u0001/é","b":[1,true,null]}'.encode()
    )


def test_jcs_refuses_floats_and_huge_integers():
    with pytest.raises(EsignError):
        canonical_json({"a": 1.5})
    with pytest.raises(EsignError):
        canonical_json({"a": 2**60})


def test_fingerprint_is_sha256_of_canonical_bytes_and_changes_with_any_term():
    a = sample_agreement()
    assert fingerprint(a) == hashlib.sha256(canonical_json(a)).hexdigest()
    b = sample_agreement(terms=[*a.terms[:-1], a.terms[-1] + "。"])
    assert fingerprint(a) != fingerprint(b)


def test_parse_roundtrip_from_canonical_bytes():
    a = sample_agreement("en")
    assert parse_agreement(canonical_json(a)) == a


@pytest.mark.parametrize("case_type", ["marriage", "divorce", "adoption", "inheritance"])
def test_personal_relation_case_types_are_refused(case_type):
    data = msgspec.to_builtins(sample_agreement(case_type=case_type))
    with pytest.raises(EsignError) as err:
        parse_agreement(data)
    assert err.value.code == "case_type_excluded"


@pytest.mark.parametrize(
    "change",
    [
        {"case_no": "../etc"},
        {"case_type": "space_travel"},
        {"version": 0},
        {"language": "fr"},
        {"terms": []},
        {"terms": ["x" * 2001]},
        {"terms": ["bell\x07"]},
        {"unknown": 1},
        {"date": "25/11/2026"},
    ],
)
def test_bad_agreement_data_is_refused_with_a_code(change):
    data = msgspec.to_builtins(sample_agreement())
    data.update(change)
    with pytest.raises(EsignError) as err:
        parse_agreement(data)
    assert err.value.code == "invalid_agreement"


def test_both_sides_and_distinct_signers_required():
    data = msgspec.to_builtins(sample_agreement())
    data["parties"][1]["side"] = "applicant"
    with pytest.raises(EsignError):
        parse_agreement(data)
    data = msgspec.to_builtins(sample_agreement())
    data["mediator"]["participant_id"] = "p-app"
    with pytest.raises(EsignError):
        parse_agreement(data)
    with pytest.raises(EsignError):
        parse_agreement(b"{not json")


def test_turn_order_applicant_respondent_mediator():
    a = sample_agreement()
    assert signing_order(a) == [
        ("p-app", "Applicant1"),
        ("p-res", "Respondent1"),
        ("p-med", "Mediator"),
    ]
    assert signer_role(a, "p-res") == "respondent"
    assert signer_role(a, "p-counsel") is None

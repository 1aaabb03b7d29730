"""The payload codec: sensitive payloads are encrypted, bound to namespace, workflow and handler,
refused when they arrive as plain JSON, and a key ring decrypts what older keys encrypted.

Each property is checked by :func:`codec_violations`, and the twin tests run the same check
against a codec with the defect planted (no binding, no plaintext refusal) to show it is caught.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

import bridgehead.converter as conv
from bridgehead import models as m
from bridgehead.converter import make_data_converter

SECRET = "TopSecretValue123/abc"
TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"
KEYS = m.CreateRoleForMeInput(
    access_key_id="ASIAABCDEFGHIJKLMNOP", secret_access_key=SECRET, session_token=TOKEN
)


def ctx(workflow_id: str = "org-acme", namespace: str = "default") -> WorkflowSerializationContext:
    return WorkflowSerializationContext(namespace=namespace, workflow_id=workflow_id)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def decode_error(dc, payloads, hint=m.CreateRoleForMeInput) -> str | None:  # type: ignore[no-untyped-def]
    try:
        run(dc.decode(payloads, [hint]))
    except Exception as e:  # the converter's refusal (the SDK rejects the update with it)
        return str(e)
    return None


def codec_violations(key: bytes = b"k" * 32) -> list[str]:
    """Every way the codec in use fails its contract (empty: none)."""
    found = []
    dc = make_data_converter(key)
    a = dc.with_context(ctx("org-acme"))
    enc = run(a.encode([KEYS]))
    raw = enc[0].SerializeToString()
    if SECRET.encode() in raw or TOKEN.encode() in raw:
        found.append("secret in the encoded payload")
    back = run(a.decode(enc, [m.CreateRoleForMeInput]))[0]
    if back.secret_access_key.get_secret_value() != SECRET:
        found.append("round trip lost the secret")
    if decode_error(dc.with_context(ctx("org-victim")), enc) is None:
        found.append("ciphertext decrypts in another workflow")
    if decode_error(dc.with_context(ctx("org-acme", namespace="other")), enc) is None:
        found.append("ciphertext decrypts in another namespace")
    moved = Payload()
    moved.CopyFrom(enc[0])
    moved.metadata[conv.TYPE_META] = b"SomeOtherHandlerInput"
    if decode_error(a, [moved]) is None:
        found.append("ciphertext decrypts for another handler")
    plain = Payload(
        metadata={"encoding": b"json/plain"},
        data=json.dumps(
            {
                "access_key_id": "ASIAABCDEFGHIJKLMNOP",
                "secret_access_key": SECRET,
                "session_token": TOKEN,
            }
        ).encode(),
    )
    if decode_error(a, [plain]) is None:
        found.append("plain JSON accepted for a sensitive type")
    forged = Payload()
    forged.CopyFrom(plain)
    forged.metadata[conv.DECRYPTED_META] = b"1"
    if decode_error(a, [forged]) is None:
        found.append("plain JSON with a forged 'decrypted' mark accepted")
    for err in (decode_error(dc.with_context(ctx("org-victim")), enc), decode_error(a, [plain])):
        if err and (SECRET in err or TOKEN in err):
            found.append("an error message contains the secret")
    return found


def test_the_codec_keeps_its_contract():
    assert codec_violations() == []


def test_twin_a_codec_without_binding_is_caught(monkeypatch):
    monkeypatch.setattr(conv.SensitivePayloadCodec, "_aad", lambda self, kid, t: kid.encode())
    found = codec_violations()
    assert "ciphertext decrypts in another workflow" in found
    assert "ciphertext decrypts in another namespace" in found
    assert "ciphertext decrypts for another handler" in found


def test_twin_a_converter_that_takes_plain_secrets_is_caught(monkeypatch):
    monkeypatch.setattr(conv, "_sensitive_type", lambda hint: False)
    found = codec_violations()
    assert "plain JSON accepted for a sensitive type" in found
    assert "plain JSON with a forged 'decrypted' mark accepted" in found


def test_non_sensitive_payloads_stay_plain_json():
    arn = m.SubmitRoleInput(role_arn="arn:aws:iam::222222222222:role/x")
    enc = run(make_data_converter(b"k" * 32).with_context(ctx()).encode([arn]))
    assert json.loads(enc[0].data) == {"role_arn": arn.role_arn}
    assert enc[0].metadata["encoding"] == b"json/plain"


def test_key_ring_decrypts_what_an_old_key_encrypted_and_names_a_missing_key():
    old, new = b"o" * 32, b"n" * 32
    enc = run(make_data_converter(old).with_context(ctx()).encode([KEYS]))
    rotated = make_data_converter(new, old_keys=[old]).with_context(ctx())
    assert (
        run(rotated.decode(enc, [m.CreateRoleForMeInput]))[0].session_token.get_secret_value()
        == TOKEN
    )
    # New payloads are encrypted with the new key only.
    again = run(rotated.encode([KEYS]))
    assert again[0].metadata[conv.KEY_ID_META] == conv.key_id(new).encode()
    err = decode_error(make_data_converter(new).with_context(ctx()), enc)
    assert err and conv.key_id(old) in err and "BRIDGEHEAD_CODEC_OLD_KEYS" in err


def test_undecryptable_payload_is_a_refusal_not_a_codec_error():
    """The codec itself never raises on decode (that would fail the workflow task again and
    again); the refusal comes from the converter, which rejects only the update."""
    enc = run(make_data_converter(b"o" * 32).with_context(ctx()).encode([KEYS]))
    codec = conv.SensitivePayloadCodec(b"n" * 32).with_context(ctx())
    out = run(codec.decode(enc))
    assert conv.UNDECRYPTABLE_META in out[0].metadata


def test_validation_errors_never_echo_a_secret():
    with pytest.raises(ValueError) as e:
        m.CreateRoleForMeInput(
            access_key_id="AKIAABCDEFGHIJKLMNOP",
            secret_access_key=SECRET,
            session_token=TOKEN,
            typo=SECRET,
        )  # type: ignore[call-arg]
    assert SECRET not in str(e.value) and "AKIAABCDEFGHIJKLMNOP" not in str(e.value)


def test_only_temporary_credentials_are_accepted():
    with pytest.raises(ValueError, match="access_key_id"):
        m.CreateRoleForMeInput(
            access_key_id="AKIAABCDEFGHIJKLMNOP", secret_access_key=SECRET, session_token=TOKEN
        )
    with pytest.raises(ValueError, match="session_token"):
        m.CreateRoleForMeInput(access_key_id="ASIAABCDEFGHIJKLMNOP", secret_access_key=SECRET)  # type: ignore[call-arg]


def test_codec_key_is_required_outside_the_embedded_stack(monkeypatch, tmp_path):
    from bridgehead.settings import Settings

    monkeypatch.delenv("BRIDGEHEAD_CODEC_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file
    for env in ("production", "test"):
        monkeypatch.setenv("BRIDGEHEAD_ENVIRONMENT", env)
        with pytest.raises(ValueError, match="BRIDGEHEAD_CODEC_KEY is required"):
            Settings()
    monkeypatch.delenv("BRIDGEHEAD_ENVIRONMENT")
    with pytest.raises(ValueError, match="BRIDGEHEAD_CODEC_KEY is required"):
        Settings()  # the default is production: nothing is invented silently
    monkeypatch.setenv("BRIDGEHEAD_ENVIRONMENT", "local")
    monkeypatch.setenv("BRIDGEHEAD_STATE_DIR", str(tmp_path))
    assert len(Settings().codec_key_bytes()) == 32


def test_cli_without_a_key_outside_local_says_what_to_set(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEHEAD_")}
    r = subprocess.run(
        [sys.executable, "-m", "starter", "status", "org-acme"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert (
        "BRIDGEHEAD_CODEC_KEY is required" in r.stderr
        and "export BRIDGEHEAD_ENVIRONMENT=local" in r.stderr
    ), r.stderr


def v1_payload(key: bytes, value: object) -> Payload:
    """A payload as the codec wrote it before the binding: AES-GCM with the key id as the only
    associated data, no scheme mark."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    inner = run(make_data_converter(None).encode([value]))[0]
    kid = conv.key_id(key)
    nonce = os.urandom(12)
    data = nonce + AESGCM(key).encrypt(nonce, inner.SerializeToString(), kid.encode())
    return Payload(
        metadata={"encoding": conv.ENCRYPTED_ENCODING, conv.KEY_ID_META: kid.encode()}, data=data
    )


def v1_problems(accepting: object, refusing: object) -> list[str]:
    """What is wrong with the v1 gate: ``accepting`` must decrypt a v1 payload, ``refusing`` must
    refuse it with a message saying how to accept it while old runs finish."""
    found = []
    enc = [v1_payload(b"k" * 32, KEYS)]
    try:
        got = run(accepting.decode(enc, [m.CreateRoleForMeInput]))[0]  # type: ignore[attr-defined]
        if got.session_token.get_secret_value() != TOKEN:
            found.append("v1 decrypted to something else")
    except Exception as e:  # noqa: BLE001
        found.append(f"v1 refused where accepted: {e}")
    err = decode_error(refusing, enc)
    if err is None:
        found.append("v1 ciphertext accepted by default (it decrypts in any workflow)")
    elif "BRIDGEHEAD_CODEC_ACCEPT_V1" not in err:
        found.append(f"v1 refusal does not say how to accept it: {err}")
    return found


def test_v1_payloads_are_refused_unless_accepted_for_old_runs():
    accepting = make_data_converter(b"k" * 32, accept_v1=True).with_context(ctx("org-victim"))
    refusing = make_data_converter(b"k" * 32).with_context(ctx("org-victim"))
    assert v1_problems(accepting, refusing) == []


def test_twin_a_codec_that_always_takes_v1_is_caught(monkeypatch):
    original = conv.SensitivePayloadCodec.__init__

    def always_v1(self, key, old_keys=(), accept_v1=False):  # type: ignore[no-untyped-def]
        original(self, key, old_keys, accept_v1=True)

    monkeypatch.setattr(conv.SensitivePayloadCodec, "__init__", always_v1)
    refusing = make_data_converter(b"k" * 32).with_context(ctx("org-victim"))
    accepting = make_data_converter(b"k" * 32, accept_v1=True).with_context(ctx("org-victim"))
    assert v1_problems(accepting, refusing) == [
        "v1 ciphertext accepted by default (it decrypts in any workflow)"
    ]


def converters_built_by_with_context(dc) -> int:  # type: ignore[no-untyped-def]
    """How many payload converters ``dc.with_context`` builds over ten workflow contexts."""
    built = []
    real_init = conv.BridgeheadPayloadConverter.__init__

    def counting_init(self) -> None:  # type: ignore[no-untyped-def]
        built.append(1)
        real_init(self)

    conv.BridgeheadPayloadConverter.__init__ = counting_init  # type: ignore[method-assign]
    try:
        clones = [dc.with_context(ctx(f"org-{i}")) for i in range(10)]
    finally:
        conv.BridgeheadPayloadConverter.__init__ = real_init  # type: ignore[method-assign]
    # Each clone is bound to its own workflow and keeps the converter it was made from.
    assert [c.payload_codec._scope for c in clones] == [("default", f"org-{i}") for i in range(10)]
    return len(built)


def test_with_context_binds_the_codec_without_rebuilding_the_converters():
    """The worker asks a converter with context for every payload sequence of every command: the
    clone binds the codec (the contract above runs through it) and builds nothing else."""
    dc = make_data_converter(b"k" * 32)
    assert type(dc) is conv.BridgeheadDataConverter
    assert converters_built_by_with_context(dc) == 0
    assert dc.with_context(ctx()).payload_converter is dc.payload_converter
    assert dc.payload_codec._scope is None  # the clones bound themselves, never the original


def test_twin_the_stock_with_context_rebuilds_a_converter_per_call():
    from temporalio.converter import DataConverter

    stock = DataConverter(
        payload_converter_class=conv.BridgeheadPayloadConverter,
        failure_converter_class=conv.BridgeheadFailureConverter,
        payload_codec=conv.SensitivePayloadCodec(b"k" * 32),
    )
    assert converters_built_by_with_context(stock) == 10

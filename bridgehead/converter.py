"""The one data converter used by every client and worker.

* Pydantic JSON (``json/plain``) for every payload, so plain JSON typed into the ``temporal`` CLI
  or the Web UI reaches workflows as validated models.
* Payloads whose value is a :class:`~bridgehead.models.SensitiveModel` (customer access keys) are
  tagged by the converter and encrypted by :class:`SensitivePayloadCodec` with AES-256-GCM.
  Everything else stays readable in the UI and CLI without a codec endpoint; the sensitive payloads
  are never decodable there because no codec endpoint holds the key (a deliberate choice).

What holds for a sensitive payload:

* **Bound to where it is used.** The AEAD associated data is the key id, the Temporal namespace,
  the workflow id (from the SDK's serialization context) and the payload's type, which names its
  handler (one sensitive type per handler: ``CreateRoleForMeInput`` is ``create_role_for_me``'s).
  Ciphertext copied into another workflow, namespace or handler does not decrypt.
* **Never plaintext.** Decoding into a sensitive type requires that the payload was decrypted by
  this codec; plain JSON (``temporal workflow update … --input '{"secret_access_key": …}'``) is
  refused when the update's arguments are read, before its validator, so the update is rejected
  and nothing of it enters history. A client cannot fake the "decrypted" mark: the codec strips it
  from every payload it did not decrypt itself.
* **Never a stuck workflow.** A payload the codec cannot decrypt (another key, another workflow,
  tampered) is not an error in the codec (which would fail the whole workflow task, again and
  again); it becomes a marker the converter refuses, which rejects just that update.
* **Key ring.** One key encrypts (``BRIDGEHEAD_CODEC_KEY``), older keys still decrypt
  (``BRIDGEHEAD_CODEC_OLD_KEYS``); see the README's rotation procedure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import types
import typing
from collections.abc import Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    ActivitySerializationContext,
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from bridgehead.messages import describe
from bridgehead.models import SensitiveModel

SENSITIVE_META = "bridgehead-sensitive"
#: Set by the codec on a payload it decrypted (stripped from every other incoming payload).
DECRYPTED_META = "bridgehead-decrypted"
#: Set by the codec on a payload it could not decrypt; the converter refuses it with this reason.
UNDECRYPTABLE_META = "bridgehead-undecryptable"
ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
#: Associated-data scheme: absent = v1 (key id only, payloads recorded before the binding).
AAD_META = "bridgehead-aad"
TYPE_META = "bridgehead-type"
_OWN_META = (DECRYPTED_META, UNDECRYPTABLE_META)


def key_id(key: bytes) -> str:
    """Public identifier of a codec key (safe to log and to store in payload metadata)."""
    return hashlib.sha256(b"bridgehead-codec:" + key).hexdigest()[:16]


def _sensitive_type(type_hint: Any) -> bool:
    """Whether ``type_hint`` is a SensitiveModel type that refuses plain payloads (or an optional /
    union holding one)."""
    if isinstance(type_hint, type):
        return issubclass(type_hint, SensitiveModel) and type_hint.plain_refused
    if typing.get_origin(type_hint) in (typing.Union, types.UnionType):
        return any(_sensitive_type(a) for a in typing.get_args(type_hint))
    return False


class _TaggingJSONConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic JSON converter that marks sensitive payloads for the codec and refuses to build a
    sensitive model from a payload that did not arrive encrypted."""

    def to_payload(self, value):  # type: ignore[no-untyped-def]
        payload = super().to_payload(value)
        if payload is not None and isinstance(value, SensitiveModel):
            payload.metadata[SENSITIVE_META] = b"1"
            payload.metadata[TYPE_META] = type(value).__name__.encode()
        return payload

    def from_payload(self, payload, type_hint=None):  # type: ignore[no-untyped-def]
        reason = payload.metadata.get(UNDECRYPTABLE_META)
        if reason is not None:
            raise ValueError(reason.decode())
        if _sensitive_type(type_hint) and payload.metadata.get(DECRYPTED_META) != b"1":
            if payload.data.strip() in (b"", b"null"):
                return None
            raise ValueError(
                "credentials must arrive encrypted with the platform's payload codec (use "
                "`python -m starter onboard create-role`, or a Python client with Bridgehead's data "
                "converter); plain JSON is refused and was not recorded"
            )
        return super().from_payload(payload, type_hint)


class BridgeheadPayloadConverter(CompositePayloadConverter):
    """The SDK's pydantic converter with sensitive-payload tagging."""

    def __init__(self) -> None:
        json_converter = _TaggingJSONConverter()
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


class BridgeheadFailureConverter(DefaultFailureConverter):
    """Failures whose cause is a pydantic ``ValidationError`` (a bad start, a refused update)
    carry a message in words (:mod:`bridgehead.messages`): ``aws_account_id: 12 digits``, not a
    regular expression or an internal type name, and never the rejected value."""

    def to_failure(self, exception, payload_converter, failure):  # type: ignore[no-untyped-def]
        from pydantic import ValidationError
        from temporalio.exceptions import ApplicationError

        if isinstance(exception, ValidationError):
            exception = ApplicationError(
                f"invalid input: {describe(exception)}", type="BadInput", non_retryable=True
            )
        super().to_failure(exception, payload_converter, failure)


def _undecryptable(reason: str) -> Payload:
    return Payload(
        metadata={"encoding": b"json/plain", UNDECRYPTABLE_META: reason.encode()}, data=b"null"
    )


class SensitivePayloadCodec(PayloadCodec, WithSerializationContext):
    """Encrypts tagged payloads (AES-256-GCM, random 96-bit nonce, associated data binding the
    ciphertext to namespace, workflow and handler); leaves others as they are.

    Args:
        key: The 32-byte key that encrypts (and decrypts).
        old_keys: Keys that only decrypt (key rotation).
        accept_v1: Also decrypt v1 payloads (bound to the key only, recorded before payloads were
            bound to their workflow): while runs started before that upgrade still run, and for
            replaying their histories. Off, such a payload is refused: a v1 ciphertext copied
            from one workflow's history would otherwise decrypt in any other.
    """

    def __init__(self, key: bytes, old_keys: Sequence[bytes] = (), accept_v1: bool = False) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        for k in (key, *old_keys):
            if len(k) != 32:
                raise ValueError("payload codec keys must be 32 bytes")
        self.key_id = key_id(key)
        self._ring = {key_id(k): AESGCM(k) for k in (*old_keys, key)}
        self._scope: tuple[str, str] | None = None
        self.accept_v1 = accept_v1

    def with_context(self, context: SerializationContext) -> SensitivePayloadCodec:
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            if context.workflow_id:
                clone = _copy(self)
                clone._scope = (context.namespace, context.workflow_id)
                return clone
        return self

    def _aad(self, kid: str, payload_type: str) -> bytes | None:
        if self._scope is None:
            return None
        namespace, workflow_id = self._scope
        return f"bridgehead/v2|{kid}|{namespace}|{workflow_id}|{payload_type}".encode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get(SENSITIVE_META) != b"1":
                out.append(p)
                continue
            payload_type = p.metadata.get(TYPE_META, b"").decode()
            aad = self._aad(self.key_id, payload_type)
            if aad is None:
                raise ValueError(
                    "a sensitive payload can only be encrypted for a workflow (no workflow id in "
                    "the serialization context)"
                )
            nonce = os.urandom(12)
            data = nonce + self._ring[self.key_id].encrypt(nonce, p.SerializeToString(), aad)
            meta = {
                "encoding": ENCRYPTED_ENCODING,
                KEY_ID_META: self.key_id.encode(),
                AAD_META: b"v2",
                TYPE_META: payload_type.encode(),
            }
            out.append(Payload(metadata=meta, data=data))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCRYPTED_ENCODING:
                if any(m in p.metadata for m in _OWN_META):  # only this codec may set these
                    p = Payload(
                        metadata={k: v for k, v in p.metadata.items() if k not in _OWN_META},
                        data=p.data,
                    )
                out.append(p)
                continue
            out.append(self._decrypt(p))
        return out

    def _decrypt(self, p: Payload) -> Payload:
        from cryptography.exceptions import InvalidTag

        kid = p.metadata.get(KEY_ID_META, b"").decode()
        aead = self._ring.get(kid)
        if aead is None:
            return _undecryptable(
                f"this payload was encrypted with codec key {kid!r}, which this worker does not "
                "hold: clients and workers must share BRIDGEHEAD_CODEC_KEY (or list the old key "
                "in BRIDGEHEAD_CODEC_OLD_KEYS); the payload was refused"
            )
        if p.metadata.get(AAD_META) == b"v2":
            aad = self._aad(kid, p.metadata.get(TYPE_META, b"").decode())
            if aad is None:
                return _undecryptable(
                    "this payload can only be decrypted by the workflow it was sent to"
                )
        elif self.accept_v1:
            aad = kid.encode()  # v1: payloads recorded before the binding (replay only)
        else:
            return _undecryptable(
                "this payload uses the v1 encryption, not bound to its workflow (recorded before "
                "the binding); it is accepted only while BRIDGEHEAD_CODEC_ACCEPT_V1=true, set until "
                "the runs started before that upgrade have finished; the payload was refused"
            )
        try:
            plain = aead.decrypt(p.data[:12], p.data[12:], aad)
        except InvalidTag:
            return _undecryptable(
                "this encrypted payload was not made for this workflow, handler or namespace "
                "(or was altered); it was refused"
            )
        decoded = Payload.FromString(plain)
        decoded.metadata[DECRYPTED_META] = b"1"
        return decoded


def _copy(codec: SensitivePayloadCodec) -> SensitivePayloadCodec:
    clone = object.__new__(SensitivePayloadCodec)
    clone.__dict__.update(codec.__dict__)
    return clone


@dataclasses.dataclass(frozen=True)
class BridgeheadDataConverter(DataConverter):
    """``DataConverter`` whose :meth:`with_context` does not rebuild its converters.

    The codec binds each ciphertext to its workflow, so it takes a serialization context, and the
    worker asks for a converter with context for every payload sequence of every command. The
    stock ``with_context`` then clones with ``dataclasses.replace``, whose ``__post_init__`` makes
    a new payload converter (every encoding converter) and a new failure converter, only to
    replace them with the ones it already has. This clone copies the fields instead: 8.5 → 2.3 µs
    a call (docs/benchmarks.md, session 7; too small for the throughput benchmark to see)."""

    def with_context(self, context: SerializationContext) -> Any:
        fields: dict[str, Any] = {
            "payload_converter": self.payload_converter,
            "payload_codec": self.payload_codec,
            "failure_converter": self.failure_converter,
            "external_storage": self.external_storage,
        }
        changed: dict[str, Any] = {}
        for name, value in fields.items():
            if isinstance(value, WithSerializationContext):
                bound = value.with_context(context)
                if bound is not value:
                    changed[name] = bound
        if not changed:
            return self
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__.update(changed)
        return clone


def make_data_converter(
    codec_key: bytes | None, old_keys: Sequence[bytes] = (), accept_v1: bool = False
) -> DataConverter:
    """The converter for clients and workers; ``codec_key=None`` only for tools that never see secrets."""
    converter = BridgeheadDataConverter(
        payload_converter_class=BridgeheadPayloadConverter,
        failure_converter_class=BridgeheadFailureConverter,
    )
    if codec_key is None:
        return converter
    return dataclasses.replace(
        converter, payload_codec=SensitivePayloadCodec(codec_key, old_keys, accept_v1)
    )

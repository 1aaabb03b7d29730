"""The one data converter used by every client and worker.

* Pydantic JSON (``json/plain``) for every payload, so plain JSON typed into the ``temporal`` CLI
  or the Web UI reaches workflows as validated models.
* Payloads whose value is a :class:`~bridgehead.models.SensitiveModel` (customer access keys) are
  tagged by the converter and encrypted by :class:`SensitivePayloadCodec` with AES-256-GCM.
  Everything else stays readable in the UI and CLI without a codec endpoint; the sensitive payloads
  are never decodable there because no codec endpoint holds the key (a deliberate choice).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    PayloadCodec,
)

from bridgehead.models import SensitiveModel

SENSITIVE_META = "bridgehead-sensitive"
ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"


class _TaggingJSONConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic JSON converter that marks sensitive payloads for the codec."""

    def to_payload(self, value):  # type: ignore[no-untyped-def]
        payload = super().to_payload(value)
        if payload is not None and isinstance(value, SensitiveModel):
            payload.metadata[SENSITIVE_META] = b"1"
        return payload


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


class SensitivePayloadCodec(PayloadCodec):
    """Encrypts tagged payloads (AES-256-GCM, random 96-bit nonce); leaves others as they are."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != 32:
            raise ValueError("payload codec key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"bridgehead-codec:" + key).hexdigest()[:16]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get(SENSITIVE_META) != b"1":
                out.append(p)
                continue
            nonce = os.urandom(12)
            data = nonce + self._aead.encrypt(nonce, p.SerializeToString(), self.key_id.encode())
            out.append(
                Payload(
                    metadata={"encoding": ENCRYPTED_ENCODING, KEY_ID_META: self.key_id.encode()},
                    data=data,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCRYPTED_ENCODING:
                out.append(p)
                continue
            key_id = p.metadata.get(KEY_ID_META, b"").decode()
            if key_id != self.key_id:
                raise ValueError(
                    f"payload encrypted with key {key_id!r}, this process has {self.key_id!r}: "
                    "client and worker must share BRIDGEHEAD_CODEC_KEY"
                )
            plain = self._aead.decrypt(p.data[:12], p.data[12:], self.key_id.encode())
            out.append(Payload.FromString(plain))
        return out


def make_data_converter(codec_key: bytes | None) -> DataConverter:
    """The converter for clients and workers; ``codec_key=None`` only for tools that never see secrets."""
    converter = DataConverter(payload_converter_class=BridgeheadPayloadConverter)
    if codec_key is None:
        return converter
    return dataclasses.replace(converter, payload_codec=SensitivePayloadCodec(codec_key))

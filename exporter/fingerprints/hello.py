"""Build a browser-shaped TLS ClientHello from a shape file (chrome.json, firefox.json): the
cipher suites, extensions and their order, GREASE, ALPN, groups and key shares a browser
sends, with fresh randomness and freshly generated public keys every time, because a censor
that matches fingerprints matches what browsers put on the wire (refraction-networking/utls#373:
a Chrome shape banned while Firefox's passed)."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import secrets
import struct
from importlib import resources
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519

GREASE = "GREASE"
# Extension codepoints (IANA "TLS ExtensionType Values"); application_settings takes its
# codepoint from the shape (Chrome moved it from 17513 to 17613).
EXTENSION_TYPES = {
    "server_name": 0,
    "status_request": 5,
    "supported_groups": 10,
    "ec_point_formats": 11,
    "signature_algorithms": 13,
    "application_layer_protocol_negotiation": 16,
    "signed_certificate_timestamp": 18,
    "extended_master_secret": 23,
    "compress_certificate": 27,
    "record_size_limit": 28,
    "delegated_credentials": 34,
    "session_ticket": 35,
    "supported_versions": 43,
    "psk_key_exchange_modes": 45,
    "key_share": 51,
    "encrypted_client_hello_grease": 0xFE0D,
    "renegotiation_info": 0xFF01,
}
GROUPS = {
    "x25519": 0x001D,
    "secp256r1": 0x0017,
    "secp384r1": 0x0018,
    "secp521r1": 0x0019,
    "ffdhe2048": 0x0100,
    "ffdhe3072": 0x0101,
    "X25519MLKEM768": 0x11EC,
}
# Groups we can make a real key share for.
KEY_SHARE_GROUPS = ("x25519", "secp256r1", "X25519MLKEM768")
# The GREASE slots a hello draws values for (BoringSSL draws one per use).
GREASE_SLOTS = ("cipher", "group", "version", "extension1", "extension2")
# RFC 8701: 0x0A0A, 0x1A1A, ... 0xFAFA.
GREASE_VALUES = tuple(((k << 4) | 0x0A) * 0x0101 for k in range(16))
_AEAD_TAG = 16  # HPKE AES-128-GCM / ChaCha20-Poly1305 overhead in an ECH payload


@dataclasses.dataclass(frozen=True)
class Shape:
    """One browser's ClientHello, as its shape file describes it."""

    name: str
    browser: str
    version: str
    record_version: int
    legacy_version: int
    session_id_length: int
    cipher_suites: tuple[int | str, ...]  # codepoints, or GREASE
    compression_methods: tuple[int, ...]
    extensions: tuple[dict[str, Any], ...]
    shuffle_extensions: bool
    x25519_shared: bool

    def extension_type(self, extension: dict[str, Any], grease: dict[str, int]) -> int:
        name = extension["name"]
        if name == "grease":
            return grease[extension["slot"]]
        if name == "application_settings":
            return _int(extension["codepoint"])
        return EXTENSION_TYPES[name]


def _int(value: int | str) -> int:
    return value if isinstance(value, int) else int(value, 0)


def _code(value: int | str) -> int | str:
    return GREASE if value == GREASE else _int(value)


@functools.cache
def load(name: str) -> Shape:
    """The shape named `name` (exporter/fingerprints/<name>.json); ValueError if the file
    names something the builder cannot send."""
    text = resources.files("exporter.fingerprints").joinpath(f"{name}.json").read_text()
    data = json.loads(text)
    shape = Shape(
        name=name,
        browser=data["browser"],
        version=data["version"],
        record_version=_int(data["record_version"]),
        legacy_version=_int(data["legacy_version"]),
        session_id_length=int(data["session_id_length"]),
        cipher_suites=tuple(_code(c) for c in data["cipher_suites"]),
        compression_methods=tuple(int(c) for c in data["compression_methods"]),
        extensions=tuple(data["extensions"]),
        shuffle_extensions=bool(data["shuffle_extensions"]),
        x25519_shared=bool(data.get("x25519_shared", False)),
    )
    for extension in shape.extensions:
        name_ = extension["name"]
        if name_ not in (*EXTENSION_TYPES, "grease", "application_settings"):
            raise ValueError(f"{name}.json: unknown extension {name_!r}")
        if name_ == "grease" and extension.get("slot") not in GREASE_SLOTS:
            raise ValueError(f"{name}.json: a grease extension needs a slot of {GREASE_SLOTS}")
        if name_ == "key_share":
            for group in extension["groups"]:
                if group != GREASE and group not in KEY_SHARE_GROUPS:
                    raise ValueError(f"{name}.json: no key share for group {group!r}")
        for group in extension.get("groups", ()):
            if group != GREASE and group not in GROUPS:
                raise ValueError(f"{name}.json: unknown group {group!r}")
    return shape


def draw_grease() -> dict[str, int]:
    """One GREASE value per slot for one hello; the two extension values differ, since two
    extensions of one type are illegal."""
    values = {slot: secrets.choice(GREASE_VALUES) for slot in GREASE_SLOTS}
    while values["extension2"] == values["extension1"]:
        values["extension2"] = secrets.choice(GREASE_VALUES)
    return values


def extension_order(shape: Shape) -> list[dict[str, Any]]:
    """The shape's extensions in the order of one hello: as listed, or with everything but
    the GREASE extensions permuted, as Chrome does on every connection."""
    extensions = list(shape.extensions)
    if not shape.shuffle_extensions:
        return extensions
    movable = [i for i, e in enumerate(extensions) if e["name"] != "grease"]
    moved = [extensions[i] for i in movable]
    _shuffle(moved)
    for index, extension in zip(movable, moved, strict=True):
        extensions[index] = extension
    return extensions


def _shuffle(items: list[Any]) -> None:
    for i in range(len(items) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        items[i], items[j] = items[j], items[i]


def client_hello(shape: Shape, server_name: str) -> bytes:
    """A complete TLS record carrying a fresh ClientHello of `shape` for `server_name`."""
    grease = draw_grease()
    keys = _KeyShares(shape.x25519_shared)
    extensions = b""
    for extension in extension_order(shape):
        name = extension["name"]
        if name == "server_name" and _is_ip(server_name):
            continue  # browsers send no SNI for an IP literal (RFC 6066)
        body = _extension_body(extension, server_name, grease, keys)
        extensions += struct.pack("!HH", shape.extension_type(extension, grease), len(body)) + body
    ciphers = b"".join(
        struct.pack("!H", grease["cipher"] if c == GREASE else c) for c in shape.cipher_suites
    )
    session_id = secrets.token_bytes(shape.session_id_length)
    body = (
        struct.pack("!H", shape.legacy_version)
        + secrets.token_bytes(32)
        + _u8(session_id)
        + _u16(ciphers)
        + _u8(bytes(shape.compression_methods))
        + _u16(extensions)
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", 0x16, shape.record_version, len(handshake)) + handshake


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _u8(data: bytes) -> bytes:
    return bytes([len(data)]) + data


def _u16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _u16s(values: list[int]) -> bytes:
    return b"".join(struct.pack("!H", v) for v in values)


def _groups(names: list[str], grease: dict[str, int]) -> list[int]:
    return [grease["group"] if g == GREASE else GROUPS[g] for g in names]


class _KeyShares:
    """Fresh key pairs for one hello; only the public halves are ever used (the probe stops
    at the ServerHello)."""

    def __init__(self, x25519_shared: bool) -> None:
        self._x25519_shared = x25519_shared
        self._x25519: bytes | None = None

    def x25519(self) -> bytes:
        if self._x25519 is None:
            self._x25519 = _raw(x25519.X25519PrivateKey.generate().public_key())
        return self._x25519

    def share(self, group: str) -> bytes:
        if group == "x25519":
            return self.x25519()
        if group == "secp256r1":
            public = ec.generate_private_key(ec.SECP256R1()).public_key()
            return public.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        # X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem): the ML-KEM-768 encapsulation key,
        # then the X25519 public key; NSS reuses the plain x25519 share's key.
        encapsulation = _raw(mlkem.MLKEM768PrivateKey.generate().public_key())
        if self._x25519_shared:
            return encapsulation + self.x25519()
        return encapsulation + _raw(x25519.X25519PrivateKey.generate().public_key())


def _raw(public: Any) -> bytes:
    data = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert isinstance(data, bytes)
    return data


def _extension_body(
    extension: dict[str, Any], server_name: str, grease: dict[str, int], keys: _KeyShares
) -> bytes:
    name = extension["name"]
    if name == "grease":
        return bytes.fromhex(extension.get("data", ""))
    if name == "server_name":
        host = server_name.rstrip(".").encode("idna")
        return _u16(b"\x00" + _u16(host))
    if name == "status_request":
        return b"\x01\x00\x00\x00\x00"  # OCSP, no responder ids, no extensions
    if name == "supported_groups":
        return _u16(_u16s(_groups(extension["groups"], grease)))
    if name == "ec_point_formats":
        return _u8(bytes(extension["formats"]))
    if name in ("signature_algorithms", "delegated_credentials"):
        return _u16(_u16s([_int(s) for s in extension["schemes"]]))
    if name == "application_layer_protocol_negotiation":
        return _u16(b"".join(_u8(p.encode()) for p in extension["protocols"]))
    if name == "application_settings":
        return _u16(b"".join(_u8(p.encode()) for p in extension["protocols"]))
    if name == "compress_certificate":
        return _u8(_u16s(extension["algorithms"]))
    if name == "record_size_limit":
        return struct.pack("!H", extension["limit"])
    if name == "supported_versions":
        versions = [grease["version"] if v == GREASE else _int(v) for v in extension["versions"]]
        return _u8(_u16s(versions))
    if name == "psk_key_exchange_modes":
        return _u8(bytes(extension["modes"]))
    if name == "key_share":
        entries = b""
        for group in extension["groups"]:
            data = b"\x00" if group == GREASE else keys.share(group)
            code = grease["group"] if group == GREASE else GROUPS[group]
            entries += struct.pack("!H", code) + _u16(data)
        return _u16(entries)
    if name == "encrypted_client_hello_grease":
        # An "outer" ECH with a random config id, a real-looking X25519 enc and a random
        # payload (draft-ietf-tls-esni, "GREASE ECH"), as both browsers send by default.
        kdf, aead = (_int(v) for v in secrets.choice(extension["cipher_suites"]))
        enc = _raw(x25519.X25519PrivateKey.generate().public_key())
        payload = secrets.token_bytes(secrets.choice(extension["payload_lengths"]) + _AEAD_TAG)
        return (
            struct.pack("!BHHB", 0, kdf, aead, secrets.randbelow(256)) + _u16(enc) + _u16(payload)
        )
    # Extensions without a body: extended_master_secret, session_ticket,
    # signed_certificate_timestamp; renegotiation_info carries an empty renegotiated_connection.
    return b"\x00" if name == "renegotiation_info" else b""

#!/usr/bin/env python3
"""An independent DSSE implementation for Flotilla's interoperability tests.

Written from the DSSE protocol document (PAE, standard base64, envelope JSON) on top of
pyca/cryptography's Ed25519, sharing no code with the Rust crate.

    dsse_reference.py sign PRIVATE_PEM PAYLOAD_TYPE < payload > envelope.json
    dsse_reference.py verify PUBLIC_PEM PAYLOAD_TYPE < envelope.json > payload
"""

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def keyid(public_key) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def sign(private_pem: str, payload_type: str) -> None:
    with open(private_pem, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    payload = sys.stdin.buffer.read()
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {
                "keyid": keyid(key.public_key()),
                "sig": base64.b64encode(key.sign(pae(payload_type, payload))).decode("ascii"),
            }
        ],
    }
    sys.stdout.write(json.dumps(envelope))


def verify(public_pem: str, payload_type: str) -> None:
    with open(public_pem, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    envelope = json.loads(sys.stdin.buffer.read())
    if envelope["payloadType"] != payload_type:
        sys.exit("wrong payload type")
    payload = base64.b64decode(envelope["payload"], validate=True)
    for signature in envelope["signatures"]:
        if signature.get("keyid") not in ("", None, keyid(key)):
            continue
        try:
            key.verify(base64.b64decode(signature["sig"], validate=True), pae(payload_type, payload))
        except InvalidSignature:
            continue
        sys.stdout.buffer.write(payload)
        return
    sys.exit("no valid signature")


if __name__ == "__main__":
    command, key_path, payload_type = sys.argv[1:4]
    {"sign": sign, "verify": verify}[command](key_path, payload_type)

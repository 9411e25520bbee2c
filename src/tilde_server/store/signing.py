"""HMAC signatures for self-authorizing upload URLs (no bearer header is sent on them).

Subtleties:
1. The signed message is the JSON encoding of a list of fields, so no field value (a path may
   hold newlines or any character) can shift the boundary between fields.
2. A purpose string is the first field, so a signature for one use is never valid for another.
3. Tokens carry their own context (session, path, upload id, address, expiry) because the
   0.7.2 part-URL lookup sends only the token, part number and upload id. The token's purpose
   is signed with it: a multipart token (`token`), a single-upload token of the 0.7.7 flow
   (`single-token`) and a download grant (`download`) are never valid for one another.
4. Comparison is constant time; every failure is a Forbidden with the same message shape.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from tilde_server.store.errors import Forbidden


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, purpose: str, *fields: str | int) -> str:
        msg = json.dumps([purpose, *fields], ensure_ascii=False, separators=(",", ":"))
        return _b64(hmac.new(self._secret, msg.encode("utf-8"), hashlib.sha256).digest())

    def verify(self, signature: str, purpose: str, *fields: str | int) -> None:
        if not hmac.compare_digest(signature.encode("utf-8", "replace"),
                                   self.sign(purpose, *fields).encode("ascii")):
            raise Forbidden("signature does not match", "invalid_signature")

    # -- self-contained tokens ----------------------------------------------------------------
    def make_token(self, payload: dict[str, Any], purpose: str = "token") -> str:
        """`payload` (with its expiry epoch under "e") encoded and signed for `purpose`."""
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True,
                               ensure_ascii=False).encode("utf-8"))
        return body + "." + self.sign(purpose, body)

    def read_token(self, token: str, purpose: str = "token") -> dict[str, Any]:
        body, _, sig = token.partition(".")
        self.verify(sig, purpose, body)
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            raise Forbidden("malformed token", "invalid_signature") from None
        if not isinstance(payload, dict):
            raise Forbidden("malformed token", "invalid_signature")
        check_expiry_epoch(payload.get("e"))
        return payload


def expiry_in(seconds: int) -> int:
    """The expiry epoch of a grant valid for at least `seconds` (rounded up, not down: a
    1-second grant made at x.9 would otherwise be expired 0.1 s later)."""
    return math.ceil(time.time()) + seconds


def format_expiry(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_expiry_text(expires_at: str) -> None:
    """`expires_at` as emitted by format_expiry; must be in the future."""
    try:
        when = datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise Forbidden("malformed expires_at", "invalid_signature") from None
    if when.timestamp() < time.time():
        raise Forbidden("upload URL has expired", "expired")


def check_expiry_epoch(epoch: Any) -> None:
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise Forbidden("malformed token", "invalid_signature")
    if epoch < time.time():
        raise Forbidden("the token has expired", "expired")

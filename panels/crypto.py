"""Provider keys at rest: Fernet (AES-128-CBC + HMAC) from `cryptography`.

FIELD_ENCRYPTION_KEYS lists Fernet keys, newest first: the first encrypts, all
decrypt, so keys can be rotated. Without it, one key is derived from SECRET_KEY
(fine for a single development machine; set it explicitly in production, or a
changed SECRET_KEY makes every stored provider key unreadable).
"""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class UnreadableSecret(Exception):
    """A stored key cannot be decrypted with the configured encryption keys."""


@functools.cache
def _fernet() -> MultiFernet:
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"fusionroom provider keys"
        ).derive(settings.SECRET_KEY.encode())
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(k) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UnreadableSecret(
            "A stored provider key cannot be decrypted: FIELD_ENCRYPTION_KEYS (or SECRET_KEY) "
            "changed since it was saved. Enter the key again."
        ) from None


def hint(plaintext: str) -> str:
    """What may be shown of a key: its prefix family and last four characters."""
    if not plaintext:
        return ""
    prefix = plaintext[:3] if plaintext.startswith(("sk-", "gsk", "AIz")) else ""
    return f"{prefix}…{plaintext[-4:]}" if len(plaintext) > 8 else "…"

"""Identity documents: content sniffing by magic bytes and size limits (pure Python).

The declared ``mime_type`` of an upload is never trusted: the type is what the first bytes say, and it must be
one of PDF, JPEG or PNG and agree with the declaration (when one is given).
"""

from __future__ import annotations

PDF = "application/pdf"
JPEG = "image/jpeg"
PNG = "image/png"
ALLOWED_TYPES = (PDF, JPEG, PNG)
EXTENSIONS = {PDF: "pdf", JPEG: "jpg", PNG: "png"}

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", PDF),
    (b"\xff\xd8\xff", JPEG),
    (b"\x89PNG\r\n\x1a\n", PNG),
)


def sniff_content_type(content: bytes) -> str | None:
    """The content type the leading bytes prove, or None for anything else."""
    for magic, content_type in _MAGIC:
        if content.startswith(magic):
            return content_type
    return None

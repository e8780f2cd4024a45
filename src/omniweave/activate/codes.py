"""Pictures of codes and links for tills, print, TV and packaging: QR codes and Code 128 barcodes.

Both libraries are pure Python and write to memory, so this module stays pure: it turns a string
(a coupon code, a short link) into the bytes of an image, and the caller decides where they go
(a file, an HTTP response, a PDF page).

- QR codes (segno): error correction level M by default (15% of the symbol may be damaged or
  covered, enough for print and packaging), a quiet zone of 4 modules as ISO/IEC 18004 asks.
- Code 128 (python-barcode): what most till scanners read; coupon codes are upper-case letters and
  digits, which Code 128 encodes compactly. PNG needs Pillow (a dependency).
"""

from __future__ import annotations

import io

import segno
from barcode import Code128  # type: ignore[import-untyped]
from barcode.writer import ImageWriter, SVGWriter  # type: ignore[import-untyped]

from omniweave.errors import InputError

FORMATS = ("png", "svg")
"""The image formats codes are rendered to."""
_ERRORS = ("l", "m", "q", "h")


def image_format(path_or_format: str) -> str:
    """`png` or `svg` from a file name or a format name; InputError for anything else."""
    text = str(path_or_format).lower()
    kind = text.rsplit(".", 1)[-1] if "." in text else text
    if kind not in FORMATS:
        raise InputError(f"cannot write {path_or_format!r}: expected a .png or .svg file", field="out")
    return kind


def qr_image(data: str, kind: str = "png", *, scale: int = 8, error: str = "m") -> bytes:
    """A QR code holding `data` (a URL or a code) as PNG or SVG bytes.

    `scale` is pixels per module for PNG (and SVG units); `error` the correction level l|m|q|h.
    """
    if not data:
        raise InputError("nothing to encode: the QR code's text is empty", field="data")
    kind = image_format(kind)
    if error not in _ERRORS:
        raise InputError(f"error correction {error!r}: expected one of {', '.join(_ERRORS)}", field="error")
    symbol = segno.make(data, error=error, micro=False)
    out = io.BytesIO()
    symbol.save(out, kind=kind, scale=scale, border=4)
    return out.getvalue()


class _Code128(Code128):  # type: ignore[misc]  # python-barcode ships no type hints
    """python-barcode's Code 128 without its start-code bug: it folds "START_C, TO_B" into START_B, but
    reads a leading digit pair 99 (a value, in charset C) as TO_C and drops it, so "99AB" scans as "AB"."""

    def _try_to_optimize(self, encoded: list[int]) -> list[int]:
        if self.code[:2].isdigit():  # the first symbol after START_C is a digit pair, not a switch
            return encoded
        optimized: list[int] = super()._try_to_optimize(encoded)
        return optimized


def barcode_image(code: str, kind: str = "png", *, text: bool = True) -> bytes:
    """A Code 128 barcode of `code` as PNG or SVG bytes, with the human-readable text under the bars
    when `text` (a cashier can type it when the scanner fails)."""
    if not code:
        raise InputError("nothing to encode: the barcode's text is empty", field="code")
    if any(ord(char) > 127 for char in code):
        raise InputError(f"{code!r}: Code 128 encodes ASCII only", field="code")
    kind = image_format(kind)
    writer = ImageWriter(format="PNG") if kind == "png" else SVGWriter()
    out = io.BytesIO()
    options = {"write_text": text, "module_width": 0.3, "module_height": 12.0, "quiet_zone": 6.5}
    _Code128(code, writer=writer).write(out, options=options)
    return out.getvalue()

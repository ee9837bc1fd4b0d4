"""Hand-built PDFs for the upload tests: ordinary ones and a compression bomb."""
from __future__ import annotations

import zlib

BOMB_LINE = b"(All work and no play makes Jack a dull boy.) '\n"  # ' : next line, show text


def make_pdf(pages: list[bytes], *, compress: bool = True) -> bytes:
    """A PDF with one content stream per page (``pages``: raw content operators)."""
    n = len(pages)
    objs: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{4 + i} 0 R' for i in range(n))}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i in range(n):
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                    f"/Contents {4 + n + i} 0 R >>".encode())
    for content in pages:
        body = zlib.compress(content, 9) if compress else content
        head = f"<< /Length {len(body)}{' /Filter /FlateDecode' if compress else ''} >>\nstream\n".encode()
        objs.append(head + body + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + o + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def text_page(text: str) -> bytes:
    return f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET\n".encode()


def pdf_bomb(lines: int = 100_000) -> bytes:
    """~15 KB on disk, 4.8 MB of page content, 4.4 million characters once extracted (one line
    per text operator, so every extractor produces them all)."""
    return make_pdf([b"BT /F1 12 Tf 14 TL 72 712 Td\n" + BOMB_LINE * lines + b"ET\n"])

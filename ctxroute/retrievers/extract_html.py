"""HTML to text for the loaders (``documents.py``): headings become markdown ``#`` lines, block
elements paragraphs, and page chrome (scripts, navigation, headers, footers, menus) is dropped."""
from __future__ import annotations

import re


_HTML_DROP = frozenset({"script", "style", "nav", "noscript", "template", "head", "svg", "iframe", "form", "button"})
_HTML_BLOCK = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "ul", "ol",
        "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "figure", "figcaption", "address",
        "details", "summary", "body", "html", "hr", "caption",
    }
)
_HTML_HEADINGS = {f"h{i}": i for i in range(1, 7)}
# page chrome, not content: site header/footer/sidebar (outside <article>/<main>), ARIA
# landmarks for navigation, and elements whose class or id names a menu, footer or the like
_HTML_CHROME = frozenset({"header", "footer", "aside", "menu"})
_HTML_CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "menu", "menubar", "search", "complementary"})
_HTML_CHROME_NAME = re.compile(
    r"(?:^|[-_\s])(?:nav|navbar|navigation|menu|menubar|breadcrumbs?|footer|site-?footer|sidebar|cookies?|"
    r"cookie-?banner|skip-?link|toc|pagination|share|social)(?:$|[-_\s])",
    re.IGNORECASE,
)


def _is_chrome(tag: object) -> bool:
    """An element that is page navigation or chrome rather than content."""
    name = tag.name.lower()  # type: ignore[attr-defined]
    attrs = getattr(tag, "attrs", None) or {}
    role = str(attrs.get("role", "")).lower()
    if role in _HTML_CHROME_ROLES or attrs.get("aria-hidden") == "true":
        return True
    if name in _HTML_CHROME and tag.find_parent(["article", "main"]) is None:  # type: ignore[attr-defined]
        return True
    if name in ("main", "article", "body", "html"):
        return False
    classes = attrs.get("class") or []
    label = " ".join(classes if isinstance(classes, list) else [str(classes)]) + " " + str(attrs.get("id", ""))
    return bool(_HTML_CHROME_NAME.search(label))
_SPACES = re.compile(r"[^\S\n]+")


def _html_inline(node: object) -> str:
    """Collapsed text of an element, without dropped elements and comments."""
    from bs4 import NavigableString, Tag

    parts: list[str] = []
    if isinstance(node, Tag):
        for s in node.descendants:
            if type(s) is NavigableString and not any(p.name in _HTML_DROP for p in s.parents):
                parts.append(str(s))
    return " ".join("".join(parts).split())


def _html_render(node: object, out: list[str], xml: bool = False) -> None:
    from bs4 import NavigableString, Tag

    for child in node.children:  # type: ignore[attr-defined]
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # skip comments, doctype, processing instructions
                out.append(_SPACES.sub(" ", str(child).replace("\n", " ")))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name.lower()
        if name in _HTML_DROP or (not xml and _is_chrome(child)):
            continue
        if name in _HTML_HEADINGS:
            title = _html_inline(child)
            if title:
                out.append(f"\n\n{'#' * _HTML_HEADINGS[name]} {title}\n\n")
        elif name == "br":
            out.append("\n")
        elif name == "li":
            out.append("\n- ")
            _html_render(child, out, xml)
        elif name == "tr":
            cells = [_html_inline(c) for c in child.find_all(["td", "th"], recursive=False)]
            if any(cells):
                out.append("\n| " + " | ".join(cells) + " |")
        elif name == "pre":  # fenced, so a "# comment" in code is never a heading or the title
            code = child.get_text().strip("\n")
            fence = "````" if "```" in code else "```"
            out.append(f"\n\n{fence}\n{code}\n{fence}\n\n")
        elif name in _HTML_BLOCK or xml:  # XML has no inline elements we know of
            out.append("\n\n")
            _html_render(child, out, xml)
            out.append("\n\n")
        else:
            _html_render(child, out, xml)


def html_to_text(html: bytes | str) -> tuple[str, str]:
    """(plain text, title) of an HTML page; headings become markdown ``#`` lines."""
    from bs4 import BeautifulSoup

    raw = html.encode("utf-8") if isinstance(html, str) else html
    head = raw[:4096].lstrip().lower()
    # an XML document (not XHTML) parses better as XML, and bs4 warns when it is parsed as HTML
    features = "xml" if head.startswith(b"<?xml") and b"<html" not in head else "lxml"
    soup = BeautifulSoup(html, features)
    title = ""
    if soup.title is not None:
        title = " ".join(soup.title.get_text().split())
    if not title:
        h1 = soup.find("h1")
        title = _html_inline(h1) if h1 is not None else ""
    out: list[str] = []
    _html_render(soup, out, xml=features == "xml")
    lines = [" ".join(line.split()) for line in "".join(out).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, title



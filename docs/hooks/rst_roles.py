"""MkDocs hook: drop the Sphinx role markers some docstrings carry (``:func:`x```, ``:class:`X```).

The docstrings are Google style but a few cross-references are written the Sphinx way; in Markdown
the role prints literally before its code span (":func: label_probs"). This removes the marker and
keeps the code span, on the rendered HTML of every page (the API reference included).
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):(?=<code)")


def on_page_content(html: str, **kwargs) -> str:
    """The page's HTML with every role marker in front of a code span removed."""
    return ROLE.sub("", html)

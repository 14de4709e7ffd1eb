"""Admission's in-process half (Admitter.prepare/apply): no Redis involved."""

from __future__ import annotations

from typing import cast

from common.spec import CrawlSpec
from crawler.admission import Admitter
from crawler.frontier import AdmitCode, Frontier


def _admitter() -> Admitter:
    # prepare and apply never touch the frontier
    return Admitter(cast(Frontier, None), CrawlSpec(allowed_domains=["a.test"]))


def test_known_links_are_judged_as_written_or_resolved() -> None:
    """A link known to the local cache is rejected with the cached verdict, whether it is
    written as its canonical URL (no resolving) or in any other form."""
    admitter = _admitter()
    page = "http://a.test/p/1.html"
    first = admitter.prepare(["2.html", "http://b.test/x"], depth=1, base=page)
    assert list(first.batch) == ["http://a.test/p/2.html"]
    assert first.report.rejected == {"off_domain": 1}
    admitter.apply(first, [AdmitCode.ADMITTED])
    again = admitter.prepare(
        [
            "http://a.test/p/2.html",
            "./2.html",
            "/p/2.html",
            "HTTP://A.test:80/p/2.html#top",
            "http://b.test/x",
            "3.html",
        ],
        depth=1,
        base=page,
    )
    assert list(again.batch) == ["http://a.test/p/3.html"]
    assert again.report.rejected == {"duplicate": 4, "off_domain": 1}


def test_a_known_link_with_a_sitemap_lastmod_still_goes_to_the_script() -> None:
    admitter = _admitter()
    url = "http://a.test/p/2.html"
    admitter.apply(admitter.prepare([url], depth=0), [AdmitCode.DUPLICATE])
    assert admitter.prepare([url], depth=0).report.rejected == {"duplicate": 1}
    prepared = admitter.prepare([url], depth=0, lastmod={url: 1_700_000_000.5})
    assert [c.lastmod_ms for c in prepared.batch.values()] == [1_700_000_000_500]

"""A real prometheus_client HTTP server for one registry, and a parsed scrape of it."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scraper:
    def __init__(self, url: str) -> None:
        self.url = url
        self.text = ""

    def scrape(self) -> Samples:
        """Every sample of one GET /metrics: (name, labels) -> value."""
        with urllib.request.urlopen(self.url, timeout=10) as response:
            self.text = response.read().decode()
        samples: Samples = {}
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples


@contextmanager
def serving(registry: CollectorRegistry) -> Iterator[Scraper]:
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield Scraper(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample named ``name`` whose labels include ``labels`` (0 when absent)."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def label_values(samples: Samples) -> set[str]:
    return {v for (_n, ls) in samples for _k, v in ls}

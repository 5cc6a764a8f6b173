"""Site category lists in the UT1 blacklist layout: `<dir>/<list>/domains`, one domain per line.

The layout is the one squidGuard, ufdbGuard and e2guardian read, so a school can use the Université Toulouse
Capitole (UT1) lists, a vendor's export in the same shape, or its own short lists. A site is in a list when its
host name, or any parent of it down to its registrable domain, is listed: `www.bet365.com` matches a listed
`bet365.com`, and a listed `proxy.example.org` catches `a.proxy.example.org` but not `example.org`.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import idna

DOMAINS_FILE = "domains"


class CategoryListError(Exception):
    """A category folder cannot be used; the message names the folder."""


@dataclass(frozen=True)
class SiteLists:
    """Named lists of domains, e.g. {"adult": {...}, "gambling": {...}}, read from one folder."""

    source: str = ""
    lists: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def names_for(self, host: str, registrable: str) -> tuple[str, ...]:
        """The lists that hold this host, or any parent of it down to its registrable domain."""
        candidates = _candidates(host.lower().rstrip("."), registrable.lower().rstrip("."))
        return tuple(name for name, domains in self.lists.items() if any(c in domains for c in candidates))

    def __len__(self) -> int:
        return sum(len(domains) for domains in self.lists.values())


def _candidates(host: str, registrable: str) -> list[str]:
    """host, its parents, down to the registrable domain (just the host when it is not under that domain)."""
    if not registrable or not (host == registrable or host.endswith("." + registrable)):
        return [host]
    labels = host.split(".")
    stop = len(labels) - len(registrable.split("."))
    return [".".join(labels[i:]) for i in range(stop + 1)]


def parse_domains(lines: Iterable[str]) -> frozenset[str]:
    """The domains in a list file, normalised to lower-case ASCII; comments, URLs and unreadable lines skipped."""
    found: set[str] = set()
    for raw in lines:
        line = raw.split("#", 1)[0].strip().lower()
        if line.startswith("*."):
            line = line[2:]
        line = line.strip(".")
        if not line or "/" in line or " " in line or "\t" in line:
            continue
        if not line.isascii():
            try:
                line = idna.encode(line, uts46=True).decode("ascii")
            except (idna.IDNAError, UnicodeError):
                continue
        found.add(line)
    return frozenset(found)


def load_folder(folder: Path, only: Collection[str] | None = None) -> SiteLists:
    """Read every `<list>/domains` under folder (or just the lists named in `only`).

    UT1 ships aliases as symbolic links (porn -> adult); a list reached twice is read once and shared.
    """
    if not folder.is_dir():
        raise CategoryListError(f"the category folder {folder} does not exist (expected <folder>/<list>/domains)")
    lists: dict[str, frozenset[str]] = {}
    read: dict[Path, frozenset[str]] = {}
    for entry in sorted(folder.iterdir()):
        if only is not None and entry.name not in only:
            continue
        path = entry / DOMAINS_FILE
        if not path.is_file():
            continue
        real = path.resolve()
        if real not in read:
            with path.open(encoding="utf-8", errors="replace") as lines:
                read[real] = parse_domains(lines)
        lists[entry.name] = read[real]
    return SiteLists(source=str(folder), lists=lists)


def lists_used(list_categories: Mapping[str, str], categories: Iterable[str]) -> frozenset[str]:
    """The lists worth reading for rules on these categories: the lists that count as one of them (a full UT1
    download is millions of domains, most in lists no rule uses) and lists named after one of them."""
    used = set(categories)
    return frozenset(name for name, category in list_categories.items() if category in used) | used


@functools.cache
def _cached(folder: Path, only: frozenset[str] | None) -> SiteLists:
    return load_folder(folder, only)


def cached_folder(folder: Path, only: Collection[str] | None = None) -> SiteLists:
    """load_folder, read once per process: start-up reads the lists so no turn waits for the disk.

    A change to the files is picked up at the next restart.
    """
    return _cached(folder.resolve(), None if only is None else frozenset(only))

"""Claim (issue 8): redaction is linear in its input, whatever the input.

Hypothesis searches for the inputs that cost ``Sanitizer.scrub`` the most per character:
each input repeats a short unit built from the redaction patterns' own characters and
keywords (dots, quotes, ``=``, ``eyJ``, ``token``, ``-----BEGIN``, ``Bearer``, ``%74``…),
between a head and a tail, to a fixed size; ``hypothesis.target`` steers the search
towards slower ones. The slowest inputs found are then timed at 8 KB and at 64 KB: for a
linear scrub 64 KB costs about 8× as much, for a quadratic one about 64×.

The same search is run against the patterns as they were before issue 8 (at 512 B and
4 KB, which they can still afford) to show that it finds their quadratic inputs, such as
``/`` + dots + ``token``, which took 4–7 s at 8 KB.

Usage: ``python bench/bench_redaction.py [--examples N] [--worst K] [--skip-old]``;
prints the worst inputs found with their costs and ratios, and exits 1 when any new ratio
is above 10 (8× and some timer noise).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import strategies as st

from chatwatch.observe.logs.redaction import Sanitizer

LIMIT = 10.0
SMALL, LARGE = 8 * 1024, 64 * 1024
ROUNDS = 7

# Every character class and literal the patterns use, as units a search can combine.
ATOMS = (
    *".-_=:\"'/%+~&,;)}][ \t\r\naZ09",
    "eyJ",
    "token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "api_key",
    "api-key",
    "apikey",
    "authorization",
    "proxy-",
    "cookie",
    "set-cookie",
    "x-api-key",
    "credentials",
    "private_key",
    "access-key",
    "signature",
    "bearer",
    "Bearer ",
    "Basic ",
    "sk-",
    "rk_",
    "AKIA",
    "xoxb-",
    "-----BEGIN",
    "-----END",
    " PRIVATE KEY-----",
    "[REDACTED]",
    "%74",
    "%2F",
    "\u017f",
    "\u212a",
    "admin-token-0123456789",
)
SECRETS = ("admin-token-0123456789", "jwt-secret-abcdefghij")

# The patterns as they were before issue 8 (applied in this order, on every string).
_OLD_KEYWORDS = (
    r"password|passwd|pwd|secret|token|api[_-]?key|authorization|cookie|credentials?"
    r"|private[_-]?key|access[_-]?key|signature"
)
OLD_PATTERNS = (
    (
        re.compile(
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        "[REDACTED]",
    ),
    (
        re.compile(
            r"(?im)((?:proxy-)?authorization|set-cookie|cookie|x-api-key)(\s*[:=]\s*)[^\r\n]*"
        ),
        r"\1\2[REDACTED]",
    ),
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.?[A-Za-z0-9_-]*"), "[REDACTED]"),
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2[REDACTED]"),
    (re.compile(r"\b(Basic)(\s+)[A-Za-z0-9+/]{8,}={0,2}"), r"\1\2[REDACTED]"),
    (re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)[-_][A-Za-z0-9_-]{8,}"), "[REDACTED]"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "[REDACTED]"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), "[REDACTED]"),
    (
        re.compile(
            r"(?i)((?<![a-z0-9])[a-z0-9_.-]*?(?:" + _OLD_KEYWORDS + r"))"
            r"([\"']?\s*[:=]\s*[\"']?)"
            r"(?!\[REDACTED\])[^\s\"'&,;)}\]]+"
        ),
        r"\1\2[REDACTED]",
    ),
)

Shape = tuple[str, str, str]


def old_scrub(text: str) -> str:
    """The pre-issue-8 patterns, every one of them, on ``text``."""
    for pattern, replacement in OLD_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def build(shape: Shape, size: int) -> str:
    """``head + unit * k + tail``, cut or padded to exactly ``size`` characters."""
    head, unit, tail = shape
    body = max(size - len(head) - len(tail), 0)
    return (head + unit * (body // len(unit) + 1))[: size - len(tail)] + tail


def costs(
    scrub: Callable[[str], str], small: str, large: str, rounds: int = ROUNDS
) -> tuple[float, float]:
    """Seconds per call on each text: the best of rounds that alternate the two sizes.

    Alternating and keeping the best round filters out other processes' bursts, which
    would otherwise land on one size and make a ratio of them mean nothing.
    """
    calls = [_calls_for(scrub, text) for text in (small, large)]
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, text in enumerate((small, large)):
            start = time.perf_counter()
            for _ in range(calls[i]):
                scrub(text)
            best[i] = min(best[i], (time.perf_counter() - start) / calls[i])
    return best[0], best[1]


def _calls_for(scrub: Callable[[str], str], text: str) -> int:
    """How many calls make a batch of about 20 ms (at least one)."""
    start = time.perf_counter()
    scrub(text)
    once = time.perf_counter() - start
    return max(1, min(10_000, int(0.02 / max(once, 1e-7))))


_atoms = st.lists(st.sampled_from(ATOMS), max_size=3).map("".join)
_unit = st.lists(st.sampled_from(ATOMS), min_size=1, max_size=6).map("".join)
shapes = st.tuples(_atoms, _unit, _atoms)


def search(scrub: Callable[[str], str], size: int, examples: int) -> list[tuple[float, Shape]]:
    """Shapes tried, slowest per character first, at ``size`` characters."""
    found: dict[Shape, float] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=(Phase.generate, Phase.target),
        suppress_health_check=list(HealthCheck),
    )
    @given(shapes)
    def probe(shape: Shape) -> None:
        text = build(shape, size)
        start = time.perf_counter()
        scrub(text)
        seconds = time.perf_counter() - start
        found[shape] = max(found.get(shape, 0.0), seconds)
        target(seconds * 1e6, label="microseconds")

    probe()
    return sorted(((s, shape) for shape, s in found.items()), reverse=True)


def report(
    name: str,
    scrub: Callable[[str], str],
    sizes: tuple[int, int],
    examples: int,
    worst: int,
    rounds: int = ROUNDS,
) -> list[float]:
    """Search, then time the worst shapes at both sizes; returns their ratios."""
    small, large = sizes
    print(f"\n{name}: {examples} examples searched at {small} chars")
    ranked = search(scrub, small, examples)
    known = [("/", ".", "token"), ("", "eyJ", ""), ("", "sk-", "")]
    candidates = [shape for _, shape in ranked[:worst]] + known
    ratios = []
    print(f"{'input (head | unit | tail)':<52} {small:>7}  {large:>7}  ratio")
    for shape in dict.fromkeys(candidates):
        t_small, t_large = costs(scrub, build(shape, small), build(shape, large), rounds)
        ratio = t_large / t_small
        ratios.append(ratio)
        label = " | ".join(repr(part)[:16] for part in shape)
        print(f"{label:<52} {_ms(t_small):>7}  {_ms(t_large):>7}  {ratio:5.1f}")
    print(f"median ratio {statistics.median(ratios):.1f}, worst {max(ratios):.1f}")
    return ratios


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}ms" if seconds < 1 else f"{seconds:.1f}s"


def main() -> int:
    """Run the searches and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--worst", type=int, default=8)
    parser.add_argument("--skip-old", action="store_true", help="do not search the old patterns")
    args = parser.parse_args()
    sanitizer = Sanitizer(secrets=SECRETS)
    ratios = report("scrub (now)", sanitizer.scrub, (SMALL, LARGE), args.examples, args.worst)
    if not args.skip_old:
        # 512 B → 4 KB is the same 8× step; the old patterns cannot afford 64 KB.
        report("scrub (before issue 8)", old_scrub, (512, 4096), args.examples // 3, 3, 1)
    ok = max(ratios) <= LIMIT
    print(f"\nworst ratio now {max(ratios):.1f} (limit {LIMIT}): {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

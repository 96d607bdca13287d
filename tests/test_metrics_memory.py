"""What the store holds per check (README: "The exporter under load"): a check's exposition
is kept as its labels and values around text shared with other checks, not as its own copy
of ~4 KB of lines, so that 10,000 checks fit the memory the README promises."""

from __future__ import annotations

import gc
import time
import tracemalloc

from exporter.config import load_text
from exporter.metrics import ResultStore
from exporter.result import ResolverAnswer, Result
from exporter.verdicts import Verdict

KINDS = (
    "{{name: c{i}, kind: dns, target: example.org, resolvers: [local]}}",
    '{{name: c{i}, kind: tcp, target: "192.0.2.1:443"}}',
    '{{name: c{i}, kind: tls, target: "example.org:443"}}',
    '{{name: c{i}, kind: http, target: "https://example.org/"}}',
)


def test_the_store_holds_a_checks_lines_in_a_fraction_of_their_text() -> None:
    checks = 1000
    lines = "\n".join("      - " + KINDS[i % 4].format(i=i) for i in range(checks))
    config = load_text(
        'resolvers: {local: "udp://127.0.0.1:5353"}\nbogons: []\n'
        f"services:\n  many:\n    checks:\n{lines}\n"
    )
    store = ResultStore(process_metrics=False)
    store.apply_config(config)
    results = []
    for index, check in enumerate(config.checks()):
        result = Result(
            Verdict.OK if index % 5 else Verdict.TCP_TIMEOUT,
            duration=0.001 * index,
            phases={"resolve": 1e-4, "connect": 2e-4, "tls": 3e-4},
            resolvers=[ResolverAnswer("local", Verdict.OK, ["192.0.2.1"])],
            status_code=200,
            cert_expiry=1.9e9,
        )
        result.finished = time.time()
        results.append((check, result))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for check, result in results:
            store.record(check, result)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    text = len(store.reachability_exposition())
    # As bytes, the lines (with the results) took more than their text: 4.9 KB held per
    # check for 4.1 KB of text; as columns of shared text, 1.9 KB.
    assert held < 0.6 * text, f"{held / checks:.0f} bytes held per check for {text / checks:.0f}"

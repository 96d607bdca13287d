"""Generates the Grafana dashboards in this folder from one description, so that the four
dashboards share their verdict colours, variables and datasource handling.

    python dashboards/generate.py           # rewrite the *.json files
    python dashboards/generate.py --check   # exit 1 if a committed file differs

Standard library only; see README.md for why no dashboard library is used."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
Json = dict[str, Any]

# Every query goes through the `datasource` variable: provisioning ignores __inputs, while
# the variable works both when provisioned and when imported through the UI.
DS: Json = {"type": "prometheus", "uid": "${datasource}"}
# The scrape job and the exporter instance are chosen in the dashboard (`job` and
# `instance` variables), never written into a query: a Prometheus may scrape the exporter
# under any job name, or several exporters under several.
SCOPE = ('job=~"$job"', 'instance=~"$instance"', 'vantage=~"$vantage"')

# Verdict -> (code for state timelines, colour, words). The code orders verdicts by layer so
# that a timeline's legend reads from DNS up to UDP. Keep in step with the README's verdict table
# (tests/test_dashboards.py compares it with exporter.verdicts.Verdict).
VERDICTS: dict[str, tuple[int, str, str]] = {
    "ok": (0, "green", "ok"),
    "dns_nxdomain": (10, "purple", "DNS: name does not exist"),
    "dns_nodata": (11, "purple", "DNS: records removed"),
    "dns_timeout": (12, "dark-purple", "DNS: no answer"),
    "dns_error": (13, "dark-purple", "DNS: error"),
    "dns_bogon": (14, "super-light-purple", "DNS: bogus address"),
    "dns_mismatch": (15, "light-purple", "DNS: answer differs from control"),
    "tcp_timeout": (20, "red", "TCP: no answer (SYN dropped)"),
    "tcp_refused": (21, "dark-red", "TCP: refused"),
    "tcp_error": (22, "dark-red", "TCP: error"),
    "tls_reset": (30, "orange", "TLS: reset in handshake"),
    "tls_timeout": (31, "dark-orange", "TLS: handshake stalled"),
    "tls_sni_blocked": (32, "semi-dark-orange", "TLS: filtered by SNI"),
    "tls_cert_invalid": (33, "light-orange", "TLS: certificate invalid"),
    "tls_error": (34, "dark-orange", "TLS: error"),
    "tls_fingerprint_blocked": (35, "super-light-orange", "TLS: ClientHello fingerprint blocked"),
    "http_blockpage": (40, "yellow", "HTTP: block page"),
    "http_status": (41, "dark-yellow", "HTTP: unexpected status"),
    "http_reset": (42, "semi-dark-yellow", "HTTP: reset"),
    "http_timeout": (43, "dark-yellow", "HTTP: no response in time"),
    "http_error": (44, "dark-yellow", "HTTP: error"),
    "stalled": (50, "blue", "Transfer: freezes after the first bytes"),
    "throttled": (51, "light-blue", "Transfer: throttled"),
    "udp_timeout": (60, "dark-blue", "UDP: no answer (calls blocked?)"),
    "udp_error": (61, "dark-blue", "UDP: error"),
    "error": (99, "text", "exporter error"),
}
VANTAGE_STATES: dict[str, tuple[int, str, str]] = {
    "unknown": (0, "text", "unknown"),
    "online": (1, "green", "online"),
    "whitelist": (2, "orange", "whitelist mode"),
    "offline": (3, "red", "offline"),
}


# ---- PromQL building blocks ---------------------------------------------------------------


def sel(*matchers: str, service: bool = True) -> str:
    """A label selector limited to the dashboard's variables: job, instance, vantage and
    (for check-level series) service."""
    parts = [*SCOPE, *(['service=~"$service"'] if service else []), *matchers]
    return "{" + ", ".join(parts) + "}"


def coded(metric: str, label: str, codes: dict[str, tuple[int, str, str]], selector: str) -> str:
    """One number per series for a label that holds a state (verdict, vantage state):
    state timelines colour by value, and PromQL cannot map strings to numbers otherwise."""
    inner = selector[1:-1]
    terms = [
        f'{metric}{{{inner}, {label}="{name}"}} * {code}' for name, (code, *_) in codes.items()
    ]
    return f"max without ({label}) (\n  " + "\n  or ".join(terms) + "\n)"


def verdict_code(selector: str) -> str:
    return coded("reachability_check_verdict", "verdict", VERDICTS, selector)


def service_verdict_code(selector: str) -> str:
    return coded("reachability_service_verdict", "verdict", VERDICTS, selector)


def vantage_code(selector: str) -> str:
    return coded("reachability_vantage_state", "state", VANTAGE_STATES, selector)


def code_mappings(codes: dict[str, tuple[int, str, str]]) -> list[Json]:
    options = {
        str(code): {"text": words, "color": colour, "index": i}
        for i, (code, colour, words) in enumerate(codes.values())
    }
    return [{"type": "value", "options": options}]


def text_mappings(codes: dict[str, tuple[int, str, str]]) -> list[Json]:
    """The same colours and words, for tables that show the label itself."""
    options = {
        name: {"text": words, "color": colour, "index": i}
        for i, (name, (_, colour, words)) in enumerate(codes.items())
    }
    return [{"type": "value", "options": options}]


# ---- Panels -------------------------------------------------------------------------------


def target(expr: str, legend: str = "", *, ref: str = "A", table: bool = False) -> Json:
    """A Prometheus query; `table` makes it an instant query in table format."""
    return {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend,
        "range": not table,
        "instant": table,
        "format": "table" if table else "time_series",
    }


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping to a new line."""

    def __init__(self) -> None:
        self.x = self.y = self.line_height = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> tuple[int, Json]:
        if self.x + w > 24:
            self.x, self.y, self.line_height = 0, self.y + self.line_height, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.line_height = max(self.line_height, h)
        self.next_id += 1
        return self.next_id - 1, pos

    def row(self, title: str) -> Json:
        if self.x:
            self.x, self.y, self.line_height = 0, self.y + self.line_height, 0
        panel_id, pos = self.place(24, 1)
        self.x, self.y, self.line_height = 0, self.y + 1, 0
        return {
            "id": panel_id,
            "type": "row",
            "title": title,
            "collapsed": False,
            "gridPos": pos,
            "panels": [],
        }


def panel(
    layout: Layout,
    kind: str,
    title: str,
    targets: list[Json],
    *,
    w: int = 12,
    h: int = 8,
    description: str = "",
    unit: str | None = None,
    mappings: list[Json] | None = None,
    thresholds: list[Json] | None = None,
    custom: Json | None = None,
    options: Json | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    **defaults: Any,
) -> Json:
    panel_id, pos = layout.place(w, h)
    field_defaults: Json = {"mappings": mappings or [], **defaults}
    if unit:
        field_defaults["unit"] = unit
    if thresholds is not None:
        field_defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
    if custom is not None:
        field_defaults["custom"] = custom
    result: Json = {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": pos,
        "targets": targets,
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        result["transformations"] = transformations
    return result


def zero_one_mappings(zero: str, one: str) -> list[Json]:
    """A 0/1 gauge in words: 0 in red, 1 in green."""
    options = {"0": {"text": zero, "color": "red"}, "1": {"text": one, "color": "green"}}
    return [{"type": "value", "options": options}]


def green_red(limit: float) -> list[Json]:
    return [{"color": "red", "value": None}, {"color": "green", "value": limit}]


def verdict_timeline(layout: Layout, title: str, expr: str, legend: str, **kw: Any) -> Json:
    return panel(
        layout,
        "state-timeline",
        title,
        [target(expr, legend)],
        mappings=code_mappings(VERDICTS),
        thresholds=[{"color": "text", "value": None}],
        custom={"fillOpacity": 80, "lineWidth": 0},
        options={
            "showValue": "never",
            "mergeValues": True,
            "rowHeight": 0.9,
            "alignValue": "left",
            "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "single", "sort": "none"},
        },
        color={"mode": "thresholds"},
        **kw,
    )


def timeseries(layout: Layout, title: str, targets: list[Json], **kw: Any) -> Json:
    kw.setdefault(
        "custom",
        {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
        },
    )
    return panel(
        layout,
        "timeseries",
        title,
        targets,
        options={
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        **kw,
    )


def stat(layout: Layout, title: str, targets: list[Json], **kw: Any) -> Json:
    return panel(
        layout,
        "stat",
        title,
        targets,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "auto",
            "orientation": "auto",
        },
        **kw,
    )


def table(
    layout: Layout,
    title: str,
    targets: list[Json],
    *,
    hide: tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
    **kw: Any,
) -> Json:
    """Instant queries joined on their labels, with Prometheus' bookkeeping columns hidden."""
    excluded = {"Time": True, "__name__": True, "job": True, **dict.fromkeys(hide, True)}
    return panel(
        layout,
        "table",
        title,
        targets,
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {"excludeByName": excluded, "renameByName": rename or {}},
            },
        ],
        **kw,
    )


def column(name: str, **props: Any) -> Json:
    """A table override for one column: unit, mappings, cell colouring."""
    properties = []
    for key, value in props.items():
        if key == "cell":
            properties.append({"id": "custom.cellOptions", "value": {"type": value}})
        else:
            properties.append({"id": key, "value": value})
    return {"matcher": {"id": "byName", "options": name}, "properties": properties}


# ---- Dashboards ---------------------------------------------------------------------------


def variables(*, service_multi: bool) -> list[Json]:
    def query_var(name: str, label: str, query: str, multi: bool, all_value: bool) -> Json:
        return {
            "type": "query",
            "name": name,
            "label": label,
            "datasource": DS,
            "query": query,
            "definition": query,
            "refresh": 2,  # on time range change: vantage points and services come and go
            "sort": 1,
            "multi": multi,
            "includeAll": multi,
            # `.*` also matches a missing label: a single Prometheus has no vantage label.
            # Without it "All" is the values found, so `up{job=~"$job"}` is the exporters'
            # jobs only, never every job of the Prometheus.
            **({"allValue": ".*"} if multi and all_value else {}),
            "current": ALL if multi else {},
            "options": [],
            "hide": 0,
            "regex": "",
        }

    build_info = "reachability_exporter_build_info"
    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            # The UI import replaces ${DS_PROMETHEUS} with the chosen datasource; a
            # provisioned dashboard finds no such datasource and falls back to the default.
            "current": {"selected": False, "text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        query_var("job", "Job", f"label_values({build_info}, job)", True, False),
        query_var(
            "vantage", "Vantage", f'label_values({build_info}{{job=~"$job"}}, vantage)', True, True
        ),
        query_var(
            "instance",
            "Instance",
            f'label_values({build_info}{{job=~"$job", vantage=~"$vantage"}}, instance)',
            True,
            False,
        ),
        query_var(
            "service",
            "Service",
            "label_values(reachability_check_info{" + ", ".join(SCOPE) + "}, service)",
            service_multi,
            True,
        ),
    ]


ALL: Json = {"selected": True, "text": ["All"], "value": ["$__all"]}


def dashboard(
    uid: str, title: str, description: str, panels: list[Json], *, service_multi: bool
) -> Json:
    kinds = sorted({p["type"] for p in panels if p["type"] != "row"})
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that holds the reachability_* series",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *({"type": "panel", "id": kind, "name": kind, "version": ""} for kind in kinds),
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "type": "dashboards",
                "tags": ["reachability"],
                "asDropdown": True,
                "title": "Reachability",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": ["reachability"],
        "templating": {"list": variables(service_multi=service_multi)},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
    }


# Grid units (30 px) of a state timeline: its title and legend take about 3, and a row
# stays readable down to about half a unit. The overview shows one row per service (a
# dozen or two), each service's checks in a row of their own, so no panel is divided by
# the number of checks of the whole configuration (61 checks in 12 units was 6 px a row).
TIMELINE_FRAME_H = 3
SERVICES_SHOWN = 20
CHECKS_PER_SERVICE_SHOWN = 8


def service_detail_link() -> Json:
    """From a service's row to its Service detail dashboard, with the same scope and time."""
    scope = "${job:queryparam}&${instance:queryparam}&${vantage:queryparam}"
    return {
        "title": "Checks of ${__field.labels.service}",
        "url": f"/d/reachability-service/?{scope}&var-service=${{__field.labels.service}}"
        "&${__url_time_range}",
    }


def service_timeline(lay: Layout, s: str) -> Json:
    result = verdict_timeline(
        lay,
        "Verdict of every service",
        service_verdict_code(s),
        "{{vantage}} {{instance}} {{service}}",
        w=24,
        h=TIMELINE_FRAME_H + SERVICES_SHOWN // 2,
        description="One row per service: the verdict of its first failing check. Click a "
        "row for the service's checks; the rows below the table show them too.",
    )
    result["fieldConfig"]["defaults"]["links"] = [service_detail_link()]
    return result


def checks_per_service(lay: Layout, s: str) -> Json:
    """A collapsed row repeated for every selected service, holding a timeline of that
    service's checks, sized for a service's checks rather than the whole configuration's."""
    row = lay.row("Checks of $service")
    inner = verdict_timeline(
        Layout(),
        "Verdict of every check of $service",
        verdict_code(s),
        "{{vantage}} {{instance}} {{check}}",
        w=24,
        h=TIMELINE_FRAME_H + CHECKS_PER_SERVICE_SHOWN // 2,
    )
    inner["id"] = lay.next_id
    lay.next_id += 1
    inner["gridPos"]["y"] = row["gridPos"]["y"] + 1
    return row | {"collapsed": True, "repeat": "service", "panels": [inner]}


def overview() -> Json:
    s = sel()
    lay = Layout()
    panels = [
        stat(
            lay,
            "Vantage state",
            [target(vantage_code(sel(service=False)), "{{vantage}} {{instance}}")],
            w=8,
            h=5,
            mappings=code_mappings(VANTAGE_STATES),
            thresholds=[{"color": "text", "value": None}],
            color={"mode": "thresholds"},
            description="online: a foreign control answers; whitelist: only domestic "
            "controls answer; offline: no control answers.",
        ),
        stat(
            lay,
            "Services failing now",
            [target(f"count(reachability_service_up{s} == 0) or vector(0)")],
            w=4,
            h=5,
            thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
        ),
        panel(
            lay,
            "bargauge",
            "Availability over the time range",
            [
                target(
                    "avg by (vantage, service) ("
                    f"avg_over_time(reachability_service_up{s}[$__range]))",
                    "{{vantage}} {{service}}",
                )
            ],
            w=12,
            h=5,
            unit="percentunit",
            min=0,
            max=1,
            thresholds=[
                {"color": "red", "value": None},
                {"color": "orange", "value": 0.9},
                {"color": "green", "value": 0.99},
            ],
            options={
                "displayMode": "lcd",
                "orientation": "horizontal",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
            description="Share of scrapes in the time range where every check of the "
            "service was ok.",
        ),
        service_timeline(lay, s),
        table(
            lay,
            "Services: current verdict and since when",
            [
                target(f"reachability_service_verdict{s} == 1", ref="A", table=True),
                target(
                    f"min by (instance, job, vantage, service) ("
                    f"reachability_check_last_change_timestamp_seconds{s}"
                    f" and on (instance, job, vantage, service, check)"
                    f" (reachability_check_success{s} == 0)) * 1000",
                    ref="B",
                    table=True,
                ),
            ],
            w=12,
            h=10,
            hide=("Value #A",),
            rename={"Value #B": "blocked since", "verdict": "verdict"},
            overrides=[
                column("verdict", mappings=text_mappings(VERDICTS), cell="color-background"),
                column("blocked since", unit="dateTimeAsLocal"),
            ],
            description="A service's verdict is that of its first failing check; blocked "
            "since is when the longest-failing check got its verdict.",
        ),
        table(
            lay,
            "Checks: current verdict in words",
            [
                target(f"reachability_check_verdict{s} == 1", ref="A", table=True),
                target(
                    f"reachability_check_last_change_timestamp_seconds{s} * 1000",
                    ref="B",
                    table=True,
                ),
            ],
            w=12,
            h=10,
            hide=("Value #A",),
            rename={"Value #B": "since"},
            overrides=[
                column("verdict", mappings=text_mappings(VERDICTS), cell="color-background"),
                column("since", unit="dateTimeAsLocal"),
            ],
        ),
        verdict_timeline(
            lay,
            "Vantage state",
            vantage_code(sel(service=False)),
            "{{vantage}} {{instance}}",
            w=24,
            h=5,
        ),
    ]
    panels[-1]["fieldConfig"]["defaults"]["mappings"] = code_mappings(VANTAGE_STATES)
    panels.append(checks_per_service(lay, s))
    return dashboard(
        "reachability-overview",
        "Reachability / Overview",
        "Which services are blocked, how, and since when.",
        panels,
        service_multi=True,
    )


def service_detail() -> Json:
    s = sel()
    lay = Layout()
    rate = "[$__rate_interval]"
    quantiles = [
        target(
            f"histogram_quantile({q}, sum by (le, vantage, check) (rate("
            f"reachability_check_latency_seconds_bucket{s}{rate})))",
            f"p{int(q * 100)} {{{{vantage}}}} {{{{check}}}}",
            ref=ref,
        )
        for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
    ]
    panels = [
        verdict_timeline(
            lay, "Verdict per check", verdict_code(s), "{{vantage}} {{check}}", w=24, h=8
        ),
        table(
            lay,
            "Checks now",
            [
                target(f"reachability_check_verdict{s} == 1", ref="A", table=True),
                target(
                    f"reachability_check_last_change_timestamp_seconds{s} * 1000",
                    ref="B",
                    table=True,
                ),
                target(f"reachability_check_info{s}", ref="C", table=True),
            ],
            w=24,
            h=7,
            hide=("Value #A", "Value #C"),
            rename={"Value #B": "since"},
            overrides=[
                column("verdict", mappings=text_mappings(VERDICTS), cell="color-background"),
                column("since", unit="dateTimeAsLocal"),
            ],
        ),
        lay.row("Latency"),
        timeseries(
            lay,
            "Last run by phase",
            [target(f"reachability_check_phase_seconds{s}", "{{vantage}} {{check}} {{phase}}")],
            unit="s",
            description="Where the time of the last run went: resolve, "
            "connect, tls, first_byte, transfer. A failed run shows 0 in the phases "
            "it never reached.",
        ),
        timeseries(lay, "Latency quantiles (successful runs)", quantiles, unit="s"),
        timeseries(
            lay,
            "Duration of the last run",
            [target(f"reachability_check_duration_seconds{s}", "{{vantage}} {{check}}")],
            unit="s",
        ),
        timeseries(
            lay,
            "Failures by verdict",
            [
                target(
                    f"sum by (vantage, check, verdict) (increase("
                    f"reachability_check_failures_total{s}{rate}))",
                    "{{vantage}} {{check}} {{verdict}}",
                )
            ],
            custom={"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}},
            description="Failed runs per interval, by the verdict they got.",
        ),
        lay.row("DNS"),
        table(
            lay,
            "Resolvers: answers and verdicts",
            [
                target(f"reachability_dns_resolver_verdict{s} == 1", ref="A", table=True),
                target(f"reachability_dns_answers{s}", ref="B", table=True),
            ],
            w=12,
            hide=("Value #A",),
            rename={"Value #B": "addresses"},
            overrides=[
                column("verdict", mappings=text_mappings(VERDICTS), cell="color-background")
            ],
        ),
        timeseries(
            lay,
            "Addresses per resolver",
            [target(f"reachability_dns_answers{s}", "{{vantage}} {{check}} {{resolver}}")],
            decimals=0,
            min=0,
        ),
        lay.row("TLS and HTTP"),
        stat(
            lay,
            "Certificate expires in",
            [
                target(
                    f"reachability_tls_cert_expiry_timestamp_seconds{s} - time()",
                    "{{vantage}} {{check}}",
                )
            ],
            w=8,
            unit="dtdurations",
            thresholds=[
                {"color": "red", "value": None},
                {"color": "orange", "value": 86400 * 7},
                {"color": "green", "value": 86400 * 14},
            ],
        ),
        timeseries(
            lay,
            "HTTP status code",
            [target(f"reachability_http_status_code{s}", "{{vantage}} {{check}}")],
            w=16,
            decimals=0,
        ),
        lay.row("Transfers"),
        timeseries(
            lay,
            "Bytes received per transfer",
            [target(f"reachability_transfer_bytes{s}", "{{vantage}} {{check}}")],
            unit="bytes",
            thresholds=[{"color": "transparent", "value": None}, {"color": "red", "value": 16384}],
            custom={
                "drawStyle": "line",
                "lineWidth": 2,
                "fillOpacity": 10,
                "thresholdsStyle": {"mode": "dashed"},
            },
            description="A line flat at about 16 KB: the connection is cut off after "
            "its first window (verdict stalled).",
        ),
        timeseries(
            lay,
            "Transfer rate",
            [target(f"reachability_transfer_rate_bytes_per_second{s}", "{{vantage}} {{check}}")],
            unit="Bps",
            description="Goodput of the last transfer; below min_rate the verdict is throttled.",
        ),
        *fingerprint_and_upload_panels(lay, s),
    ]
    return dashboard(
        "reachability-service",
        "Reachability / Service detail",
        "Every check of one service: verdicts, latency, DNS, TLS and transfers.",
        panels,
        service_multi=False,
    )


def fingerprint_and_upload_panels(lay: Layout, s: str) -> list[Json]:
    """Browser ClientHello shapes (tls `fingerprints`) and uploads (transfer `direction:
    upload`): what the 2025-2026 censor added to the SNI filter and the download freeze."""
    uploads = sel('direction="upload"')
    upload = (
        "and on(instance, job, vantage, service, check) "
        f"reachability_transfer_direction_info{uploads}"
    )
    return [
        lay.row("ClientHello fingerprints and uploads"),
        panel(
            lay,
            "state-timeline",
            "Browser ClientHellos",
            [
                target(
                    f"reachability_tls_fingerprint_success{s}",
                    "{{vantage}} {{check}} {{fingerprint}}",
                )
            ],
            mappings=zero_one_mappings("no ServerHello", "ServerHello"),
            thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
            custom={"fillOpacity": 80, "lineWidth": 0},
            options={"showValue": "never", "mergeValues": True, "rowHeight": 0.9},
            color={"mode": "thresholds"},
            description="Whether each browser-shaped ClientHello got a ServerHello. Red "
            "for one browser while the check itself is ok: the censor matches that "
            "browser's fingerprint (verdict tls_fingerprint_blocked).",
        ),
        timeseries(
            lay,
            "Upload bytes acknowledged",
            [target(f"reachability_transfer_bytes{s} {upload}", "{{vantage}} {{check}}")],
            unit="bytes",
            thresholds=[{"color": "transparent", "value": None}, {"color": "red", "value": 16384}],
            custom={
                "drawStyle": "line",
                "lineWidth": 2,
                "fillOpacity": 10,
                "thresholdsStyle": {"mode": "dashed"},
            },
            description="What the server acknowledged of each upload. Flat at some 16 KB "
            "(or some 25 packets' worth): the upload freezes at the censor (verdict stalled).",
        ),
    ]


def vantage_comparison() -> Json:
    s = sel()
    lay = Layout()
    panels = [
        verdict_timeline(
            lay,
            "Verdict by vantage point",
            verdict_code(s),
            "{{vantage}} {{check}}",
            w=24,
            h=10,
            description="One service across vantage points: blocked here and "
            "fine there is censorship on this path, not an outage.",
        ),
        table(
            lay,
            "Now, by vantage point",
            [
                target(f"reachability_check_verdict{s} == 1", ref="A", table=True),
                target(
                    f"reachability_check_last_change_timestamp_seconds{s} * 1000",
                    ref="B",
                    table=True,
                ),
            ],
            w=14,
            h=8,
            hide=("Value #A", "instance"),
            rename={"Value #B": "since"},
            overrides=[
                column("verdict", mappings=text_mappings(VERDICTS), cell="color-background"),
                column("since", unit="dateTimeAsLocal"),
            ],
        ),
        panel(
            lay,
            "bargauge",
            "Availability by vantage point",
            [
                target(
                    f"avg by (vantage) (avg_over_time(reachability_service_up{s}[$__range]))",
                    "{{vantage}}",
                )
            ],
            w=10,
            h=8,
            unit="percentunit",
            min=0,
            max=1,
            thresholds=[
                {"color": "red", "value": None},
                {"color": "orange", "value": 0.9},
                {"color": "green", "value": 0.99},
            ],
            options={
                "displayMode": "lcd",
                "orientation": "horizontal",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        ),
        timeseries(
            lay,
            "Median latency by vantage point",
            [
                target(
                    "histogram_quantile(0.5, sum by (le, vantage, check) (rate("
                    f"reachability_check_latency_seconds_bucket{s}[$__rate_interval])))",
                    "{{vantage}} {{check}}",
                )
            ],
            unit="s",
        ),
        verdict_timeline(
            lay, "Vantage state", vantage_code(sel(service=False)), "{{vantage}}", w=12
        ),
    ]
    panels[-1]["fieldConfig"]["defaults"]["mappings"] = code_mappings(VANTAGE_STATES)
    return dashboard(
        "reachability-vantages",
        "Reachability / Vantage comparison",
        "One service seen from every vantage point.",
        panels,
        service_multi=False,
    )


def exporter_health() -> Json:
    e = sel(service=False)
    rate = "[$__rate_interval]"
    lay = Layout()
    panels = [
        stat(
            lay,
            "Scrape up",
            [target(f"up{e}", "{{vantage}} {{instance}}")],
            w=6,
            h=5,
            mappings=zero_one_mappings("down", "up"),
            thresholds=green_red(1),
        ),
        stat(
            lay,
            "Last reload",
            [
                target(
                    f"reachability_exporter_config_last_reload_successful{e}",
                    "{{vantage}} {{instance}}",
                )
            ],
            w=6,
            h=5,
            mappings=zero_one_mappings("failed", "ok"),
            thresholds=green_red(1),
        ),
        stat(
            lay,
            "Configuration loaded at",
            [
                target(
                    f"reachability_exporter_config_last_reload_success_timestamp_seconds{e} * 1000",
                    "{{vantage}} {{instance}}",
                )
            ],
            w=6,
            h=5,
            unit="dateTimeAsLocal",
            thresholds=[{"color": "text", "value": None}],
        ),
        stat(
            lay,
            "Version",
            [target(f"reachability_exporter_build_info{e}", "{{vantage}} {{version}}")],
            w=6,
            h=5,
            thresholds=[{"color": "text", "value": None}],
            description="The name shows the version; the value is always 1.",
        ),
        timeseries(
            lay,
            "Scheduler lag (how late checks start)",
            [
                target(
                    f"histogram_quantile({q}, sum by (le, vantage, instance) (rate("
                    f"reachability_exporter_scheduler_lag_seconds_bucket{e}{rate})))",
                    f"p{int(q * 100)} {{{{vantage}}}} {{{{instance}}}}",
                    ref=ref,
                )
                for q, ref in ((0.5, "A"), (0.99, "B"))
            ],
            unit="s",
            description="Lag that grows means more checks than the exporter can "
            "run: raise intervals or concurrency.",
        ),
        panel(
            lay,
            "heatmap",
            "Scheduler lag distribution",
            [
                target(
                    "sum by (le) (increase("
                    f"reachability_exporter_scheduler_lag_seconds_bucket{e}{rate}))",
                    "{{le}}",
                )
                | {"format": "heatmap"}
            ],
            unit="s",
            options={
                "calculate": False,
                "yAxis": {"unit": "s"},
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges"},
            },
        ),
        timeseries(
            lay,
            "Check runs per second",
            [
                target(
                    f"sum by (vantage, instance) (rate(reachability_check_runs_total{e}{rate}))",
                    "runs {{vantage}} {{instance}}",
                    ref="A",
                ),
                target(
                    f"sum by (vantage, instance) ("
                    f"rate(reachability_check_failures_total{e}{rate}))",
                    "failures {{vantage}} {{instance}}",
                    ref="B",
                ),
            ],
            unit="ops",
        ),
        timeseries(
            lay,
            "Scrape duration",
            [target(f"scrape_duration_seconds{e}", "{{vantage}} {{instance}}")],
            unit="s",
        ),
        lay.row("Process"),
        timeseries(
            lay,
            "CPU",
            [target(f"rate(process_cpu_seconds_total{e}{rate})", "{{vantage}} {{instance}}")],
            w=8,
            unit="percentunit",
        ),
        timeseries(
            lay,
            "Resident memory",
            [target(f"process_resident_memory_bytes{e}", "{{vantage}} {{instance}}")],
            w=8,
            unit="bytes",
        ),
        timeseries(
            lay,
            "Open file descriptors",
            [
                target(f"process_open_fds{e}", "open {{vantage}} {{instance}}", ref="A"),
                target(f"process_max_fds{e}", "max {{vantage}} {{instance}}", ref="B"),
            ],
            w=8,
        ),
    ]
    return dashboard(
        "reachability-exporter",
        "Reachability / Exporter health",
        "Is the exporter itself keeping up: scrapes, scheduler, reloads, process resources.",
        panels,
        service_multi=True,
    )


DASHBOARDS = {
    "overview.json": overview,
    "service.json": service_detail,
    "vantages.json": vantage_comparison,
    "exporter.json": exporter_health,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date, run python dashboards/generate.py: {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

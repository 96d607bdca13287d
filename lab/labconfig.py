"""The exporter configuration for the lab's client: one messenger measured with every kind
(uploads and browser-shaped ClientHellos included), the same messenger through the proxy
beyond the censor, a data centre reached by IP and asked for an HTTP answer, and a foreign
and a domestic control for the vantage state."""

from __future__ import annotations

import json

from lab import net
from lab.net import Lab

# Every check of the lab config, as "service/check" (what the scenarios' expectations name).
CHECKS = (
    "messenger/dns",
    "messenger/chat",
    "messenger/tls",
    "messenger/web",
    "messenger/plain",
    "messenger/media",
    "messenger/upload",
    "messenger/calls",
    "messenger/quic",
    "vpn/web",
    "vpn/media",
    "neutral/web",
    "domestic/web",
    "telegram/dc",
    "telegram/dc-post",
)
# Every resolver of the dns check, as "service/check/resolver".
RESOLVERS = ("messenger/dns/system", "messenger/dns/control")

TEMPLATE = """\
# The censorship lab's exporter configuration (written by `python -m lab up`).
defaults:
  interval: {interval}
  timeout: {timeout}
  resolver: system              # the client's /etc/resolv.conf: the ISP's resolver
  ca_file: {ca}

resolvers:
  control: https://{control_dns}:{doh_port}/dns-query   # honest, abroad, encrypted
  dot: tls://{control_dns}:{dot_port}

blockpages:
  - 'blockpage\\.domestic\\.lab'

# The lab's internet is 10.77.0.0/16, so 10.0.0.0/8 is not a bogon here; the rest of the
# default list is.
bogons: [0.0.0.0/8, 127.0.0.0/8, 100.64.0.0/10, 169.254.0.0/16, 192.0.2.0/24,
         198.18.0.0/15, 224.0.0.0/4, 240.0.0.0/4, "::/128", "::1/128", "fe80::/10"]

services:
  messenger:
    description: The messenger under test (foreign)
    checks:
      - {{name: dns, kind: dns, target: chat.messenger.lab, resolvers: [system, control]}}
      - {{name: chat, kind: tcp, target: "chat.messenger.lab:443"}}
      - {{name: tls, kind: tls, target: "chat.messenger.lab:443", control_sni: www.neutral.lab,
          fingerprints: [chrome, firefox]}}
      - {{name: web, kind: http, target: "https://chat.messenger.lab/"}}
      - {{name: plain, kind: http, target: "http://chat.messenger.lab/"}}
      - name: media
        kind: transfer
        target: https://media.messenger.lab/big
        min_bytes: {min_bytes}
        min_rate: {min_rate}
      # To the messenger itself (not the CDN that freeze-16k and throttle hit), under a name
      # the SNI filters do not match: only the upload scenarios may touch it.
      - name: upload
        kind: transfer
        direction: upload
        target: https://www.messenger.lab/upload
        min_bytes: {upload_bytes}
        min_rate: {min_rate}
      - {{name: calls, kind: stun, target: "chat.messenger.lab:{stun_port}"}}
      - {{name: quic, kind: quic, target: "chat.messenger.lab:443"}}
  vpn:
    description: The same messenger through a proxy beyond the censor
    checks:
      - {{name: web, kind: http, target: "https://chat.messenger.lab/",
          proxy: "socks5://{proxy}:{socks_port}"}}
      - name: media
        kind: transfer
        target: https://media.messenger.lab/big
        proxy: "http://{proxy}:{http_proxy_port}"
        min_bytes: {min_bytes}
        min_rate: {min_rate}
  neutral:
    description: A neutral foreign site
    role: control
    scope: foreign
    checks:
      - {{name: web, kind: http, target: "https://www.neutral.lab/"}}
  domestic:
    description: A domestic site on every whitelist
    role: control
    scope: domestic
    checks:
      - {{name: web, kind: http, target: "https://www.domestic.lab/"}}
  telegram:
    description: A messenger data centre reached by IP (Telegram's DCs)
    checks:
      - {{name: dc, kind: tcp, target: "{dc}:443"}}
      # An application answer: a transparent proxy completes the handshake above itself.
      - {{name: dc-post, kind: http, method: POST, target: "http://{dc}:443/",
          expect_status: [100-599]}}
"""


def render(
    lab: Lab, interval: str = "2s", timeout: str = "1500ms", ports: dict[str, int] | None = None
) -> str:
    """The config for `lab`; `ports` are the control resolver's DoH and DoT ports (by default
    those its running server reported)."""
    if ports is None:
        ports = json.loads(lab.path("ports.json").read_text())
    return TEMPLATE.format(
        interval=interval,
        timeout=timeout,
        ca=lab.path("ca.pem"),
        control_dns=net.CONTROL_DNS,
        doh_port=ports["doh_port"],
        dot_port=ports["dot_port"],
        # 256 KiB is 2 s at 1 Mbit/s: far more than the freeze lets through, and a throttled
        # transfer cannot finish it inside the timeout.
        min_bytes="256KiB",
        # 512 KiB: a server acknowledges a burst of segments with one ACK (some 16 ACKs for
        # 128 KiB here), so it takes this much for its ACKs to pass the 25-packet cut-off,
        # while they stay well under freeze-16k's 16 KB (about 60 ACKs of 52 bytes).
        upload_bytes="512KiB",
        min_rate="1Mbit",
        stun_port=net.PORT_STUN,
        proxy=net.PROXY,
        socks_port=net.PORT_PROXY_SOCKS,
        http_proxy_port=net.PORT_PROXY_HTTP,
        dc=net.DC,
    )


def write(lab: Lab, interval: str = "2s", timeout: str = "1500ms") -> str:
    path = lab.path("exporter.yaml")
    path.write_text(render(lab, interval, timeout))
    return str(path)

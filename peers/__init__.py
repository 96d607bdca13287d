"""The peers a probe meets, for the tests, the lab and the benchmarks alike: DNS, HTTP(S),
TLS, proxy, STUN and QUIC servers on loopback or in the lab's namespaces, throwaway
certificates, and launchers for the real exporter and Prometheus. Not part of the installed
exporter, and exporter/ never imports it."""

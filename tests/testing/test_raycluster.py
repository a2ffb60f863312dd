"""LocalRayCluster's guard: which traced system calls leave loopback (no cluster started here;
tests/scenarios/test_cluster.py runs a real one under it)."""

from __future__ import annotations

from pathlib import Path

from livetalk.testing.raycluster import LocalRayCluster

TRACE = """\
101 connect(5, {sa_family=AF_INET, sin_port=htons(41000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
102 connect(7, {sa_family=AF_INET6, sin6_port=htons(41000), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0
103 bind(3, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("0.0.0.0")}, 16) = 0
104 connect(9, {sa_family=AF_UNIX, sun_path="/tmp/ltray-x/sockets/raylet"}, 110) = 0
105 connect(23, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("169.254.169.254")}, 16) = -1 EINPROGRESS
106 connect(4, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0
107 bind(6, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("192.0.2.2")}, 16) = 0
108 connect(8, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("0.0.0.0")}, 16) = 0
"""  # noqa: E501


def test_only_calls_outside_loopback_are_reported(tmp_path: Path) -> None:
    cluster = LocalRayCluster()
    cluster.trace = True
    cluster.temp_dir = str(tmp_path)
    cluster.trace_file.write_text(TRACE)
    found = [line.split()[0] for line in cluster.outside_loopback()]
    # loopback, the unspecified address in a bind (picks a port) and unix sockets pass;
    # the metadata probe, a DNS query, a bind to an external address, a connect to 0.0.0.0 do not
    assert found == ["105", "106", "107", "108"]


def test_addresses_are_loopback_and_each_cluster_has_its_own_token() -> None:
    cluster = LocalRayCluster()
    assert cluster.address.startswith("127.0.0.1:")
    env = cluster.driver_env
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["RAY_USAGE_STATS_REPORT_URL"].startswith("http://127.0.0.1:")
    assert env["RAY_AUTH_MODE"] == "token" and len(env["RAY_AUTH_TOKEN"]) == 32
    assert LocalRayCluster().driver_env["RAY_AUTH_TOKEN"] != env["RAY_AUTH_TOKEN"]

"""The Janus baseline's config writer and the Parley/Janus comparison (no Janus needed),
plus one start/stop of the real `janus` that skips when it is not installed."""

from __future__ import annotations

import pytest

from bench.janus_server import JanusServer, janus_available, janus_configs
from bench.run_load import compare_janus


def test_config_loads_videoroom_over_http_on_loopback_with_ice_on_the_host_only():
    files = janus_configs(
        "/tmp/x", host="192.0.2.2", port=18088, admin_port=17088, admin_secret="s3cret"
    )
    assert set(files) == {
        "janus.jcfg",
        "janus.transport.http.jcfg",
        "janus.plugin.videoroom.jcfg",
    }
    core, http = files["janus.jcfg"], files["janus.transport.http.jcfg"]
    assert 'plugins_folder = "/tmp/x/plugins"' in core
    assert 'events_folder = "/tmp/x/events"' in core
    assert 'ice_enforce_list = "192.0.2.2"' in core
    assert "broadcast = false" in core
    assert "ipv6 = false" in core
    assert 'admin_secret = "s3cret"' in core
    assert "port = 18088" in http and 'ip = "127.0.0.1"' in http
    assert "admin_port = 17088" in http and 'admin_ip = "127.0.0.1"' in http
    assert "https = false" in http
    # libconfig syntax: every section opened is closed
    for text in files.values():
        assert text.count("{") == text.count("}")


def test_compare_janus_per_stream_and_ingest():
    parley = {"video_streams": 8, "ms_per_video_stream_s": 9.0}
    parley["ms_per_delivered_video_stream_s"] = 9.0
    janus = {"video_streams": 8, "ms_per_video_stream_s": 5.0}
    janus["ms_per_delivered_video_stream_s"] = 4.5
    out = compare_janus({"passthrough": parley, "janus": janus})
    assert out["parley_over_janus"] == 1.8
    assert out["parley_over_janus_delivered"] == 2.0
    ingest = compare_janus(
        {
            "passthrough": {"video_streams": 0, "server_cores": 0.02},
            "janus": {"video_streams": 0, "server_cores": 0.008},
        }
    )
    assert ingest["ingest_pct_core_parley"] == 2.0
    assert ingest["ingest_pct_core_janus"] == 0.8
    assert ingest["parley_over_janus"] == 2.5
    assert compare_janus({"passthrough": parley, "janus": {"error": "x"}}) == {
        "parley_over_janus": None
    }


@pytest.mark.skipif(not janus_available(), reason="janus is not installed")
def test_janus_starts_with_the_bench_config_and_stops_by_pid():
    server = JanusServer("192.0.2.2")
    try:
        server.start()
        assert server.version
        assert server.stats() == {
            "packets_sent": 0,
            "bytes_sent": 0,
            "peers_connected": 0,
            "nacks_out": 0,
        }
    finally:
        server.stop()
    assert server.proc.poll() is not None

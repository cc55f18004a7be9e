"""The bench's figure computation: percentiles, per-stream CPU, loss, verdicts, profiles."""

from __future__ import annotations

import os

import pytest

from bench.run_load import (
    Sample,
    WindowFigures,
    figures,
    percentile,
    read_proc_cpu,
    read_proc_rss,
    summarize_profile,
    window,
)


def test_percentile_is_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == 5.0
    assert percentile(values, 0) == 1.0
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([], 50) is None


def test_window_differences_two_samples():
    a = Sample(at=10.0, server_cpu=1.0, bot_cpu={7: 2.0}, machine=(100, 400), packets_sent=50)
    b = Sample(at=20.0, server_cpu=3.5, bot_cpu={7: 6.0}, machine=(1100, 2400), packets_sent=1050)
    w = window(a, b)
    assert w.seconds == 10.0
    assert w.server_cpu_s == 2.5
    assert w.bot_cores == {7: 0.4}
    assert w.machine_busy == 0.5
    assert w.packets == 1000


def _run(w: WindowFigures, **overrides) -> dict:
    kw = dict(
        probe_seconds=w.seconds,
        video_streams=4,
        audio_streams=4,
        pairs=[
            {"frames": 140, "gaps": 10, "out_of_order": 1, "sent": 150},
            {"frames": 150, "gaps": 0, "out_of_order": 0, "sent": 150},
        ],
        ttff=[0.1, 0.3, 0.2],
        latencies=[0.010, 0.020, 0.030, 0.040],
        publisher_pace=[1.0, 0.99],
        participants=5,
        rss_idle=80 * 2**20,
        rss_end=90 * 2**20,
        cores=2,
    )
    kw.update(overrides)
    return figures(w, **kw)


def test_figures_divide_cpu_by_forwarded_streams_and_packets():
    w = WindowFigures(
        seconds=10.0, server_cpu_s=0.8, bot_cores={1: 0.2}, machine_busy=0.4, packets=4000
    )
    f = _run(w)
    assert f["server_cores"] == 0.08
    # 0.8 s over 8 streams x 10 s; video-only figure charges all CPU to the 4 video streams
    assert f["cpu_s_per_stream_s"] == 0.01
    assert f["ms_per_stream_s"] == 10.0
    assert f["ms_per_video_stream_s"] == 20.0
    assert f["ms_per_packet"] == 0.2
    assert f["ms_per_delivered_video_stream_s"] == round(800 / (40 * 290 / 300), 3)
    assert f["packets_per_s"] == 400.0
    assert f["subscriber_fps_mean"] == 14.5
    assert f["subscriber_fps_min"] == 14.0
    assert f["frame_loss_gaps"] == round(10 / 300, 5)
    assert f["delivery_ratio"] == round(290 / 300, 4)
    assert f["out_of_order"] == 1
    assert (f["ttff_p50_s"], f["ttff_p95_s"]) == (0.2, 0.3)
    assert (f["latency_p50_ms"], f["latency_p95_ms"]) == (20.0, 40.0)
    assert f["rss_mb_per_participant"] == 2.0
    assert f["other_cores"] == round(0.8 - 0.08 - 0.2, 3)
    assert f["verdict"] == "ok"


def test_no_streams_gives_no_per_stream_figure_rather_than_a_division_error():
    w = WindowFigures(seconds=5.0, server_cpu_s=0.1, bot_cores={}, machine_busy=0.1, packets=0)
    f = _run(w, video_streams=0, audio_streams=0, pairs=[], ttff=[], latencies=[])
    assert f["ms_per_stream_s"] is None and f["ms_per_packet"] is None
    assert f["subscriber_fps_mean"] is None and f["latency_p95_ms"] is None


@pytest.mark.parametrize(
    ("bot_cores", "busy", "pace", "server_cpu", "expected"),
    [
        ({1: 0.95}, 0.6, [1.0], 0.3, "bots saturated: a bot process used 0.95 core"),
        ({1: 0.5, 2: 0.5}, 0.97, [1.0], 9.0, "bots saturated: machine 97% busy on 2 cores"),
        ({1: 0.3}, 0.95, [0.8], 0.3, "machine shared: machine 95% busy on 2 cores (server 0.03"),
        ({1: 0.6, 2: 0.6}, 0.95, [0.8], 3.0, "bots saturated: machine 95% busy"),
        ({1: 0.3}, 0.5, [0.8], 0.3, "bots saturated: a publisher sent only 80%"),
        ({1: 0.3}, 0.7, [1.0], 9.5, "server saturated"),
    ],
)
def test_verdict_names_the_bottleneck(bot_cores, busy, pace, server_cpu, expected):
    w = WindowFigures(
        seconds=10.0, server_cpu_s=server_cpu, bot_cores=bot_cores, machine_busy=busy, packets=100
    )
    assert _run(w, publisher_pace=pace)["verdict"].startswith(expected)


def test_profile_summary_counts_leaf_and_inclusive_frames():
    raw = "\n".join(
        [
            "main (a.py:1);loop (b.py:2);send (c.py:3) 6",
            "main (a.py:1);loop (b.py:2);recv (c.py:9) 3",
            "main (a.py:1);idle (d.py:4) 1",
            "garbage line",
        ]
    )
    s = summarize_profile(raw)
    assert s["samples"] == 10
    assert s["self"][0] == ("send (c.py:3)", 0.6)
    assert dict(s["total"])["main (a.py:1)"] == 1.0
    assert dict(s["total"])["loop (b.py:2)"] == 0.9
    assert summarize_profile("")["samples"] == 0


def test_proc_readers_see_this_process():
    assert read_proc_cpu(os.getpid()) > 0
    assert read_proc_rss(os.getpid()) > 10 * 2**20

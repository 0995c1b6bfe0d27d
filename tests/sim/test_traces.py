"""Trace loaders, Poisson spreading and the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest

from tidal.sim.dists import default_service_time, parse_distribution
from tidal.sim.traces import (
    TraceError,
    dns_label,
    load_trace,
    sparse_trace,
    spread_counts,
    synthetic_rate,
    synthetic_trace,
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_generic_csv_with_iso_and_epoch_times_and_durations(tmp_path):
    path = write(
        tmp_path,
        "t.csv",
        "timestamp,duration\n2024-01-01T00:00:00,0.5\n2024-01-01T00:00:01.5,1\n1704067203,0.25\n",
    )
    trace = load_trace(path)
    assert trace.arrivals.tolist() == [0.0, 1.5, 3.0]
    assert trace.service_times.tolist() == [0.5, 1.0, 0.25]
    assert trace.start_epoch == 1704067200.0
    assert default_service_time(trace).kind == "trace"


def test_azure_llm_format_keeps_token_columns(tmp_path):
    path = write(
        tmp_path,
        "llm.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0319600,3180,8",
    )
    trace = load_trace(path)
    assert len(trace) == 2
    assert trace.arrivals[1] == pytest.approx(0.052)
    times = parse_distribution("tokens").sample(2, np.random.default_rng(0), trace)
    assert times.tolist() == pytest.approx([4808 / 5000 + 10 / 50, 3180 / 5000 + 8 / 50])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("timestamp,duration\n10,1\nnoon,1\n", 3, "bad timestamp"),
        ("timestamp\nnan\n10\n", 2, "bad timestamp 'nan' \\(a finite number\\)"),
        ("timestamp\n1\n1e12\n", 3, "spans 11,574,074 days; the simulator replays at most 366"),
        ("timestamp,duration\n10,1\n11,-2\n", 3, "bad duration"),
        ("timestamp,duration\n10,1\n11\n", 3, "expected 2 fields"),
        ("timestamp,service\n10,a\n11, \n", 3, "empty service"),
        ("app,func,end_timestamp\n1,f,10\n", 1, "unknown trace format"),
        ("when\n10\n", 1, "unknown trace format"),
    ],
)
def test_bad_rows_name_the_line(tmp_path, text, line, message):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(TraceError, match=message) as info:
        load_trace(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}:")


def test_rows_in_any_order_are_sorted_by_arrival_with_their_fields(tmp_path):
    path = write(
        tmp_path,
        "t.csv",
        "timestamp,service,duration\n12,b,2\n10,a,1\n12,c,3\n11,a,4\n",
    )
    trace = load_trace(path)
    assert trace.arrivals.tolist() == [0.0, 1.0, 2.0, 2.0]
    assert trace.service_times.tolist() == [1.0, 4.0, 2.0, 3.0]  # same time: file order
    assert [trace.services[i] for i in trace.service_of] == ["a", "a", "b", "c"]
    assert trace.start_epoch == 10.0


@pytest.mark.parametrize("unit", [1, 1_000, 1_000_000, 1_000_000_000])
def test_epoch_milliseconds_micro_and_nanoseconds_are_read_as_such(tmp_path, unit):
    stamps = "\n".join(str(t * unit) for t in (1_700_000_000, 1_700_000_002))
    trace = load_trace(write(tmp_path, "t.csv", f"timestamp\n{stamps}\n"))
    assert trace.arrivals.tolist() == [0.0, 2.0]
    assert trace.start_epoch == 1_700_000_000.0


def test_a_byte_order_mark_and_crlf_lines_are_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftimestamp,service\r\n10,a\r\n11,b\r\n".encode())
    trace = load_trace(path)
    assert trace.arrivals.tolist() == [0.0, 1.0] and trace.services == ("a", "b")


def test_burstgpt_columns_give_services_and_tokens(tmp_path):
    path = write(
        tmp_path,
        "BurstGPT_1.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,472,18,490,Conversation log\n45,GPT-4,1087,0,1087,API log\n",
    )
    trace = load_trace(path)
    assert trace.arrivals.tolist() == [0.0, 40.0]
    assert trace.services == ("chatgpt", "gpt-4")
    assert trace.context_tokens.tolist() == [472, 1087]
    assert trace.generated_tokens.tolist() == [18, 0]


def test_azure_functions_2021_invocations_arrive_a_duration_before_they_end(tmp_path):
    path = write(
        tmp_path,
        "AzureFunctionsInvocationTraceForTwoWeeksJan2021.txt",
        "app,func,end_timestamp,duration\n"
        "a1,9f86d081884c7d659a2feaa0,10.5,0.5\nb2,e3b0c44298fc1c149afb,11.0,3.0\n",
    )
    trace = load_trace(path)
    assert trace.arrivals.tolist() == [0.0, 2.0]  # arrived at 8.0 and 10.0
    assert trace.service_times.tolist() == [3.0, 0.5]
    assert trace.services == ("fn-9f86d081884c", "fn-e3b0c44298fc")  # in file order
    assert trace.service_of.tolist() == [1, 0]


def test_azure_functions_2019_as_published_has_numbered_minutes(tmp_path):
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(map(str, range(1, 4)))
    body = "o,a,7c9f0e1d2b3a4c5d6e7f,http,2,0,1\no,a,0a1b2c3d4e5f66,timer,0,1,0\n"
    trace = load_trace(
        write(tmp_path, "invocations_per_function_md.anon.d01.csv", header + "\n" + body)
    )
    assert trace.duration == 180.0
    assert trace.services == ("fn-7c9f0e1d2b3a", "fn-0a1b2c3d4e5f")
    assert np.bincount(trace.service_of).tolist() == [3, 1]
    assert np.bincount((trace.arrivals // 60).astype(int)).tolist() == [2, 1, 1]


def azure_functions_file(tmp_path, rows):
    header = "HashFunction,HashOwner,HashApp," + ",".join(f"minute_{m + 1}" for m in range(3))
    body = "\n".join(f"f{k},o,a," + ",".join(map(str, r)) for k, r in enumerate(rows))
    return write(tmp_path, "inv.csv", header + "\n" + body + "\n")


def test_azure_functions_counts_are_spread_within_their_minutes(tmp_path):
    path = azure_functions_file(tmp_path, [[3, 0, 5], [1, 2, 0]])
    trace = load_trace(path, seed=4)
    assert trace.duration == 180.0
    assert np.bincount((trace.arrivals // 60).astype(int)).tolist() == [4, 2, 5]
    assert (np.diff(trace.arrivals) >= 0).all()
    assert load_trace(path, seed=4).arrivals.tolist() == trace.arrivals.tolist()
    assert load_trace(path, seed=5).arrivals.tolist() != trace.arrivals.tolist()
    assert len(load_trace(path, functions=1)) == 8


def test_azure_functions_bad_count_names_the_line(tmp_path):
    path = azure_functions_file(tmp_path, [[1, 0, 1], [1, "x", 0]])
    with pytest.raises(TraceError, match="whole numbers") as info:
        load_trace(path)
    assert info.value.line == 3


def test_azure_functions_busiest_and_first_minutes_are_chosen_while_reading(tmp_path):
    """A published day is far larger than a replay holds: `busiest` and `seconds` choose what
    to keep before the arrivals are drawn, as `Trace.busiest` and `Trace.head` would."""
    rows = [[1, 0, 9], [4, 0, 0], [2, 2, 0], [0, 0, 0], [1, 3, 0]]
    path = azure_functions_file(tmp_path, rows)
    everything = load_trace(path)
    two = load_trace(path, busiest=2)
    assert two.services == everything.busiest(2).services == ("fn-f0", "fn-f1")  # f1 ties f2
    assert np.bincount(two.service_of).tolist() == [10, 4]
    ties = load_trace(path, busiest=3, seconds=60.0)  # minute 1: f1 has 4, then f2 2, f0 1
    assert ties.services == ("fn-f1", "fn-f2", "fn-f0")  # f0 before f4 (1 each): file order
    assert ties.duration == 60.0 and (ties.arrivals < 60.0).all() and len(ties) == 7


def test_a_too_large_azure_day_names_the_way_to_keep_part_of_it(tmp_path):
    path = azure_functions_file(tmp_path, [[1, 0, 1], [0, 30_000_000, 0]])
    with pytest.raises(TraceError, match="--services N keeps the N busiest functions"):
        load_trace(path)
    assert len(load_trace(path, busiest=1, seconds=60.0)) == 1


def test_a_trace_too_large_to_replay_is_refused_before_it_is_built(tmp_path):
    path = azure_functions_file(tmp_path, [[1, 0, 1], [1, 30_000_000, 0]])
    with pytest.raises(
        TraceError, match="30,000,003 requests; the simulator replays at most"
    ) as info:
        load_trace(path)
    assert info.value.line == 3
    path = write(
        tmp_path,
        "qps.csv",
        "timestamp_anon,value,container_ip,request_type\n1000.0,1e9,aa,Generative Requests\n",
    )
    with pytest.raises(TraceError, match="57,000,000,000 requests"):
        load_trace(path)


def test_alibaba_qps_sums_generative_rows_per_timestamp(tmp_path):
    path = write(
        tmp_path,
        "qps.csv",
        "timestamp_anon,value,container_ip,request_type\n"
        "1000.0,0.5,,API Requests\n1000.0,1.0,aa,Generative Requests\n"
        "1000.0,1.0,bb,Generative Requests\n1057.0,0.0,aa,Generative Requests\n",
    )
    trace = load_trace(path, seed=1)
    assert trace.duration == 114.0 and trace.start_epoch == 1000.0
    assert 60 < len(trace) < 180  # Poisson(2 req/s x 57 s)
    assert trace.arrivals.max() < 57.0
    assert load_trace(path, seed=1).arrivals.tolist() == trace.arrivals.tolist()


def test_spread_counts_is_a_seeded_uniform_spread():
    rng = np.random.default_rng(0)
    times = spread_counts(np.array([0.0, 10.0]), np.array([1000, 0]), 10.0, rng)
    assert len(times) == 1000 and times.min() >= 0 and times.max() < 10.0
    assert abs(times.mean() - 5.0) < 0.5


def test_synthetic_trace_is_seeded_diurnal_and_weekly():
    a, b = synthetic_trace(days=7, mean_rps=2, seed=3), synthetic_trace(days=7, mean_rps=2, seed=3)
    assert a.arrivals.tolist() == b.arrivals.tolist()
    assert len(a) == pytest.approx(7 * 86_400 * 2, rel=0.05)
    rate = synthetic_rate(7, 2.0, seed=3, bursts_per_day=0, noise=0)
    by_day = rate.reshape(7, 1440)
    assert by_day[:5].mean() > 1.8 * by_day[5:].mean()  # weekend dip
    assert by_day[0, 14 * 60] > 5 * by_day[0, 2 * 60]  # afternoon peak, night trough


def test_head_cuts_by_time():
    trace = synthetic_trace(days=1, mean_rps=1, seed=0).head(3600)
    assert trace.duration == 3600 and trace.arrivals.max() < 3600


def test_distributions_parse_and_sample():
    rng = np.random.default_rng(0)
    assert parse_distribution("0.3").sample(3, rng).tolist() == [0.3] * 3
    load = parse_distribution("alibaba-load").sample(10_000, rng)
    assert np.median(load) == pytest.approx(22.7, rel=0.1)
    for bad in ("exp", "uniform:1", "nope:1", "const:-1", "const:nan", "uniform:3,1", "tokens:0,1"):
        with pytest.raises(ValueError, match="bad distribution"):
            parse_distribution(bad)


def test_azure_functions_keep_one_service_per_function(tmp_path):
    path = azure_functions_file(tmp_path, [[3, 0, 5], [1, 2, 0]])
    trace = load_trace(path, seed=4)
    assert trace.services == ("fn-f0", "fn-f1")
    assert np.bincount(trace.service_of).tolist() == [8, 3]
    first = trace.arrivals[trace.service_of == 1]
    assert np.bincount((first // 60).astype(int)).tolist() == [1, 2]


def test_generic_csv_service_column_names_become_dns_labels(tmp_path):
    path = write(
        tmp_path,
        "fleet.csv",
        "timestamp,service,duration\n"
        "0,Llama_3 8B,1\n1,llama-3-8b,1\n2,7b/chat,0.5\n3,Llama_3 8B,1\n",
    )
    trace = load_trace(path)
    assert trace.services == ("llama-3-8b", "llama-3-8b-2", "s-7b-chat")
    assert trace.service_of.tolist() == [0, 1, 2, 0]
    busiest = trace.busiest(1)
    assert busiest.services == ("llama-3-8b",) and busiest.arrivals.tolist() == [0.0, 3.0]
    assert busiest.service_times.tolist() == [1.0, 1.0]
    assert dns_label("x" * 80) == "x" * 40
    assert dns_label("Modèle-Größe") == "modele-groe" and dns_label("模型") == "s"


def test_sparse_trace_is_seeded_bursty_with_day_and_week_rhythm():
    a, b = sparse_trace(days=14, seed=2), sparse_trace(days=14, seed=2)
    assert a.arrivals.tolist() == b.arrivals.tolist()
    assert len(a) == pytest.approx(14 * 86_400 * 0.0125, rel=0.15)
    gaps = np.diff(a.arrivals)
    assert np.median(gaps) < 30 and (gaps > 3600).sum() >= 10  # clusters, and long idle gaps
    hours = (a.arrivals // 3600 % 24).astype(int)
    assert (hours >= 9).sum() - (hours >= 18).sum() > 5 * (hours < 6).sum()
    days = (a.arrivals // 86_400 % 7).astype(int)
    assert (days < 5).sum() / 5 > 2 * (days >= 5).sum() / 2
    fleet = sparse_trace(days=3, mean_rps=0.2, seed=1, services=4)
    sizes = np.bincount(fleet.service_of)
    assert fleet.services == ("svc-1", "svc-2", "svc-3", "svc-4")
    assert (np.diff(sizes) < 0).all() and (np.diff(fleet.arrivals) >= 0).all()

#!/usr/bin/env python3
"""A Python gRPC client for ampsim, with stubs generated from proto/ at run time.

It creates a small simulation, generates a few days (printing the progress stream), streams one
day's events and checks their order and dates, fetches one user's journey and checks it, then
deletes the simulation. Any failed check ends the run with a non-zero exit status and a message.

    python client.py --server 127.0.0.1:50051

The stubs are generated with grpcio-tools into a temporary directory (or --gen-dir) on every run;
nothing generated is committed. If AMPSIM_AUTH_TOKEN is set, every call carries
`authorization: Bearer <token>`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_FILE = "ampsim/v1/simulator.proto"
RPC_TIMEOUT_S = 120.0


class CheckFailed(Exception):
    """A check on the server's answers failed."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def generate_stubs(out_dir: Path):
    """Runs protoc (from grpcio-tools) on proto/ and imports the generated modules."""
    from grpc_tools import protoc  # imported here: only this step needs grpcio-tools

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_ROOT / PROTO_FILE),
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise CheckFailed(f"protoc failed with status {rc} on {PROTO_ROOT / PROTO_FILE}")
    sys.path.insert(0, str(out_dir))
    pb2 = importlib.import_module("ampsim.v1.simulator_pb2")
    pb2_grpc = importlib.import_module("ampsim.v1.simulator_pb2_grpc")
    return pb2, pb2_grpc


def day_bounds_ms(date: str) -> tuple[int, int]:
    """[start, end) of a UTC day in ms since the epoch."""
    start = dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(days=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def plus_days(date: str, days: int) -> str:
    d = dt.date.fromisoformat(date) + dt.timedelta(days=days)
    return d.isoformat()


def run(args: argparse.Namespace, pb2, pb2_grpc) -> None:
    token = os.environ.get("AMPSIM_AUTH_TOKEN", "")
    metadata = [("authorization", f"Bearer {token}")] if token else []

    server = args.server.removeprefix("http://")
    channel = grpc.insecure_channel(
        server,
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
    except grpc.FutureTimeoutError:
        raise CheckFailed(f"could not connect to {server} within 30 s") from None
    stub = pb2_grpc.SimulationServiceStub(channel)
    print(f"connected to {server} (auth token: {'yes' if token else 'no'})")

    if token:
        # The token must really be required: the same call without it is refused.
        try:
            stub.ListSimulations(pb2.ListSimulationsRequest(), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as e:
            check(
                e.code() == grpc.StatusCode.UNAUTHENTICATED,
                f"ListSimulations without the token: expected UNAUTHENTICATED, got {e.code().name}",
            )
        else:
            raise CheckFailed("ListSimulations without the token succeeded; expected UNAUTHENTICATED")

    sim_id = f"py-client-{uuid.uuid4().hex[:12]}"
    created = stub.CreateSimulation(
        pb2.CreateSimulationRequest(
            simulation_id=sim_id,
            seed=args.seed,
            start_date=args.start,
            population_scale=args.scale,
        ),
        metadata=metadata,
        timeout=RPC_TIMEOUT_S,
    )
    try:
        check(created.simulation_id == sim_id, f"created id {created.simulation_id!r}, asked {sim_id!r}")
        check(created.seed == args.seed, f"created seed {created.seed}, asked {args.seed}")
        check(created.start_date == args.start, f"created start {created.start_date!r}, asked {args.start!r}")
        check(
            abs(created.population_scale - args.scale) < 1e-12,
            f"created scale {created.population_scale}, asked {args.scale}",
        )
        check(created.days_generated == 0, f"new simulation has {created.days_generated} days")
        print(
            f"created simulation {sim_id} (scenario {created.scenario_name}, seed {created.seed}, "
            f"start {created.start_date}, scale {created.population_scale:g})"
        )
        exercise(stub, pb2, sim_id, metadata, args)
    finally:
        # Always clean up, even after a failed check.
        try:
            resp = stub.DeleteSimulation(
                pb2.DeleteSimulationRequest(simulation_id=sim_id), metadata=metadata, timeout=RPC_TIMEOUT_S
            )
            print(f"deleted simulation {sim_id}: {resp.deleted}")
        except grpc.RpcError as e:
            print(f"warning: could not delete simulation {sim_id}: {e.code().name}: {e.details()}", file=sys.stderr)
    try:
        stub.GetSimulation(pb2.GetSimulationRequest(simulation_id=sim_id), metadata=metadata, timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as e:
        check(
            e.code() == grpc.StatusCode.NOT_FOUND,
            f"GetSimulation after delete: expected NOT_FOUND, got {e.code().name}",
        )
    else:
        raise CheckFailed(f"simulation {sim_id} still exists after DeleteSimulation")
    channel.close()


def exercise(stub, pb2, sim_id: str, metadata, args: argparse.Namespace) -> None:
    # --- GenerateDays: one DayProgress per committed day, in order.
    t0 = time.monotonic()
    progress = []
    for p in stub.GenerateDays(
        pb2.GenerateDaysRequest(simulation_id=sim_id, days=args.days), metadata=metadata, timeout=RPC_TIMEOUT_S
    ):
        i = len(progress)
        print(
            f"  day {i + 1}/{args.days} {p.date}: {p.sessions} sessions, {p.events} events, "
            f"{p.new_users} new users, {p.returning_users} returning"
        )
        check(p.day_index == i, f"progress #{i} has day_index {p.day_index}")
        check(p.date == plus_days(args.start, i), f"progress #{i} is for {p.date}, expected {plus_days(args.start, i)}")
        check(p.days_generated == i + 1, f"progress #{i}: days_generated {p.days_generated}, expected {i + 1}")
        check(
            p.days_remaining == args.days - i - 1,
            f"progress #{i}: days_remaining {p.days_remaining}, expected {args.days - i - 1}",
        )
        check(p.events > 0 and p.sessions > 0, f"day {p.date} has no sessions or events")
        progress.append(p)
    check(len(progress) == args.days, f"GenerateDays streamed {len(progress)} progress messages, expected {args.days}")
    total_events = sum(p.events for p in progress)
    total_sessions = sum(p.sessions for p in progress)
    print(f"generated {args.days} days: {total_sessions} sessions, {total_events} events in {time.monotonic() - t0:.2f}s")

    sim = stub.GetSimulation(pb2.GetSimulationRequest(simulation_id=sim_id), metadata=metadata, timeout=RPC_TIMEOUT_S)
    check(sim.days_generated == args.days, f"GetSimulation: days_generated {sim.days_generated}, expected {args.days}")
    check(
        sim.last_generated_date == progress[-1].date,
        f"GetSimulation: last_generated_date {sim.last_generated_date!r}, expected {progress[-1].date!r}",
    )
    check(sim.events == total_events, f"GetSimulation: {sim.events} events, the progress stream said {total_events}")
    check(sim.sessions == total_sessions, f"GetSimulation: {sim.sessions} sessions, progress said {total_sessions}")
    check(not sim.generating, "GetSimulation: still generating after GenerateDays ended")

    # --- A day not generated yet is refused with FAILED_PRECONDITION.
    future_day = plus_days(args.start, args.days)
    try:
        for _ in stub.StreamEvents(
            pb2.StreamEventsRequest(simulation_id=sim_id, from_date=future_day, to_date=future_day),
            metadata=metadata,
            timeout=RPC_TIMEOUT_S,
        ):
            pass
    except grpc.RpcError as e:
        check(
            e.code() == grpc.StatusCode.FAILED_PRECONDITION,
            f"StreamEvents of ungenerated {future_day}: expected FAILED_PRECONDITION, got {e.code().name}",
        )
    else:
        raise CheckFailed(f"StreamEvents of ungenerated day {future_day} succeeded")

    # --- StreamEvents of one day: time order, all on that day, the day's count.
    day = progress[min(1, len(progress) - 1)]
    lo, hi = day_bounds_ms(day.date)
    events = []
    batches = 0
    for batch in stub.StreamEvents(
        pb2.StreamEventsRequest(simulation_id=sim_id, from_date=day.date, to_date=day.date),
        metadata=metadata,
        timeout=RPC_TIMEOUT_S,
    ):
        batches += 1
        events.extend(batch.events)
    check(len(events) == day.events, f"StreamEvents {day.date}: {len(events)} events, GenerateDays said {day.events}")
    for i, e in enumerate(events):
        check(lo <= e.time < hi, f"event #{i} ({e.event_type}, time {e.time}) is not on {day.date}")
        if i:
            check(
                events[i - 1].time <= e.time,
                f"events out of order on {day.date}: #{i - 1} at {events[i - 1].time}, #{i} at {e.time}",
            )
    insert_ids = {e.insert_id for e in events}
    check(len(insert_ids) == len(events), f"StreamEvents {day.date}: duplicate insert_ids")
    devices = {e.device_id for e in events}
    users = {e.user_id for e in events if e.user_id}
    print(
        f"streamed {day.date}: {len(events)} events in {batches} batches, time-ordered, all on the day; "
        f"{len(devices)} devices, {len(users)} identified users"
    )

    # --- GetUserJourney: an identified user of that day, else of any generated day, else the
    # busiest device of that day.
    identified = [(e.user_id, e.device_id) for e in events if e.user_id]
    if not identified:
        for batch in stub.StreamEvents(
            pb2.StreamEventsRequest(simulation_id=sim_id), metadata=metadata, timeout=RPC_TIMEOUT_S
        ):
            identified.extend((e.user_id, e.device_id) for e in batch.events if e.user_id)
    if identified:
        user_id, device_id = min(identified)
        request = pb2.GetUserJourneyRequest(simulation_id=sim_id, user_id=user_id)
        who = f"user {user_id}"
    else:
        counts: dict[str, int] = {}
        for e in events:
            counts[e.device_id] = counts.get(e.device_id, 0) + 1
        device_id = max(sorted(counts), key=counts.__getitem__)
        user_id = ""
        request = pb2.GetUserJourneyRequest(simulation_id=sim_id, device_id=device_id)
        who = f"device {device_id} (no identified user in {args.days} days)"

    journey = []
    summaries = []
    for item in stub.GetUserJourney(request, metadata=metadata, timeout=RPC_TIMEOUT_S):
        kind = item.WhichOneof("item")
        check(kind in ("events", "summary"), f"journey item with no content ({kind!r})")
        check(not summaries, "journey: a message arrived after the summary")
        if kind == "events":
            journey.extend(item.events.events)
        else:
            summaries.append(item.summary)
    check(len(summaries) == 1, f"journey of {who}: {len(summaries)} summaries, expected 1")
    summary = summaries[0]
    check(journey, f"journey of {who} has no events")
    expected_user = user_id or summary.user_id
    for i, e in enumerate(journey):
        check(e.device_id == device_id, f"journey event #{i} has device {e.device_id}, expected {device_id}")
        # Events before identification carry no user_id; from identification on, this user's.
        check(
            e.user_id in ("", expected_user),
            f"journey event #{i} has user_id {e.user_id!r}, expected {expected_user!r} or none",
        )
        if i:
            check(journey[i - 1].time <= e.time, f"journey events out of order at #{i}")
    check(summary.device_id == device_id, f"summary device {summary.device_id}, expected {device_id}")
    if user_id:
        check(summary.user_id == user_id, f"summary user {summary.user_id!r}, expected {user_id!r}")
        check(summary.is_identified, "summary of an identified user says is_identified = false")
    check(summary.event_count == len(journey), f"summary event_count {summary.event_count}, streamed {len(journey)}")
    check(summary.session_count >= 1, f"summary session_count {summary.session_count}")
    check(summary.stages and summary.stages[0] == "anonymous", f"summary stages {list(summary.stages)}")
    # A user may have arrived in the warm start (simulated before the start date, never
    # emitted): first seen before the start date, but never after the last generated day.
    check(
        summary.first_seen_date <= progress[-1].date,
        f"summary first_seen_date {summary.first_seen_date} after the generated days",
    )
    seen_that_day = {e.insert_id for e in events if e.device_id == device_id}
    journey_ids = {e.insert_id for e in journey}
    check(seen_that_day <= journey_ids, f"journey of {who} misses events streamed for it on {day.date}")
    print(
        f"journey of {who}: {len(journey)} events, {summary.session_count} sessions, "
        f"first seen {summary.first_seen_date} via {summary.first_touch_source}/{summary.first_touch_medium}, "
        f"stages {' > '.join(summary.stages)}, trial outcome {summary.trial_outcome}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("AMPSIM_SERVER", "127.0.0.1:50051"),
        help="host:port of the server (env AMPSIM_SERVER; default 127.0.0.1:50051)",
    )
    parser.add_argument("--days", type=int, default=3, help="days to generate (default 3)")
    parser.add_argument("--scale", type=float, default=0.002, help="population scale (default 0.002)")
    parser.add_argument("--seed", type=int, default=20250106, help="seed (default 20250106)")
    parser.add_argument("--start", default="2025-01-06", help="start date (default 2025-01-06)")
    parser.add_argument("--gen-dir", help="where to generate the stubs (default: a temporary directory)")
    args = parser.parse_args()
    if args.days < 1:
        parser.error("--days must be at least 1")

    with tempfile.TemporaryDirectory(prefix="ampsim-stubs-") as tmp:
        try:
            pb2, pb2_grpc = generate_stubs(Path(args.gen_dir) if args.gen_dir else Path(tmp))
            run(args, pb2, pb2_grpc)
        except CheckFailed as e:
            print(f"client.py: FAILED: {e}", file=sys.stderr)
            return 1
        except grpc.RpcError as e:
            print(f"client.py: FAILED: RPC error {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    print("client.py: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

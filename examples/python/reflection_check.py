#!/usr/bin/env python3
"""A grpcurl-style check of ampsim's gRPC reflection, knowing nothing of proto/.

It asks the server which services it has, fetches their descriptors through reflection into a
DescriptorPool, builds request messages from those descriptors at run time and calls the methods
through a generic channel (no generated ampsim code anywhere):

  * grpc.health.v1.Health/Check for ampsim.v1.SimulationService must answer SERVING;
  * ampsim.v1.SimulationService/ListSimulations must answer a ListSimulationsResponse;
  * a throwaway simulation is created, must appear in ListSimulations, and is deleted.

    python reflection_check.py --server 127.0.0.1:50051

Reflection is tried with grpc.reflection.v1 first, then grpc.reflection.v1alpha (as grpcurl
does). grpcio-reflection's ProtoReflectionDescriptorDatabase speaks v1alpha only; the two
protocols' messages are identical on the wire, so its v1alpha messages serve for both. If
AMPSIM_AUTH_TOKEN is set, every call carries `authorization: Bearer <token>`.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid

import grpc
from google.protobuf import descriptor_pb2, json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_reflection.v1alpha.reflection_pb2 import ServerReflectionRequest, ServerReflectionResponse

SERVICE = "ampsim.v1.SimulationService"
HEALTH = "grpc.health.v1.Health"
REFLECTION_METHODS = {
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}
RPC_TIMEOUT_S = 60.0


class CheckFailed(Exception):
    """A check on the server's answers failed."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class _Stub:
    """Stands in for the generated ServerReflectionStub, for either protocol version."""

    def __init__(self, channel: grpc.Channel, path: str, metadata):
        self._call = channel.stream_stream(
            path,
            request_serializer=ServerReflectionRequest.SerializeToString,
            response_deserializer=ServerReflectionResponse.FromString,
        )
        self._metadata = metadata

    def ServerReflectionInfo(self, requests):  # noqa: N802 (the generated stub's name)
        return self._call(requests, metadata=self._metadata, timeout=RPC_TIMEOUT_S)


class ReflectionDatabase(ProtoReflectionDescriptorDatabase):
    """grpcio-reflection's descriptor database over reflection v1 or v1alpha, with metadata."""

    def __init__(self, channel: grpc.Channel, metadata):
        super().__init__(channel)
        self.protocol = None
        errors = []
        for protocol, path in REFLECTION_METHODS.items():
            self._stub = _Stub(channel, path, metadata)
            try:
                self.services = super().get_services()
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                errors.append(f"{protocol}: {e.code().name}")
                continue
            self.protocol = protocol
            return
        raise CheckFailed(f"the server implements no reflection protocol ({', '.join(errors)})")


def method_streaming(method) -> tuple[bool, bool]:
    proto = descriptor_pb2.MethodDescriptorProto()
    method.CopyToProto(proto)
    return proto.client_streaming, proto.server_streaming


def unary_call(channel, pool: DescriptorPool, service_name: str, method: str, metadata, **fields):
    """Calls a unary method knowing only its name: types come from the reflected descriptors."""
    desc = pool.FindServiceByName(service_name).FindMethodByName(method)
    check(desc is not None, f"{service_name} has no method {method}")
    check(method_streaming(desc) == (False, False), f"{service_name}.{method} is not unary")
    request_cls = message_factory.GetMessageClass(desc.input_type)
    response_cls = message_factory.GetMessageClass(desc.output_type)
    request = request_cls(**fields)
    call = channel.unary_unary(
        f"/{service_name}/{method}",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    response = call(request, metadata=metadata, timeout=RPC_TIMEOUT_S)
    check(
        response.DESCRIPTOR.full_name == desc.output_type.full_name,
        f"{method} answered a {response.DESCRIPTOR.full_name}, expected {desc.output_type.full_name}",
    )
    return response


def run(server: str) -> None:
    token = os.environ.get("AMPSIM_AUTH_TOKEN", "")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    channel = grpc.insecure_channel(server)
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
    except grpc.FutureTimeoutError:
        raise CheckFailed(f"could not connect to {server} within 30 s") from None

    db = ReflectionDatabase(channel, metadata)
    services = sorted(db.services)
    print(f"reflection ({db.protocol}) lists {len(services)} services:")
    for s in services:
        print(f"  {s}")
    for wanted in (SERVICE, HEALTH):
        check(wanted in services, f"reflection does not list {wanted}")

    pool = DescriptorPool(db)
    service = pool.FindServiceByName(SERVICE)
    print(f"{SERVICE} (file {service.file.name}) has {len(service.methods)} methods:")
    for m in service.methods:
        client_streaming, server_streaming = method_streaming(m)
        arrow = f"{'stream ' if client_streaming else ''}{m.input_type.full_name} -> " + (
            f"{'stream ' if server_streaming else ''}{m.output_type.full_name}"
        )
        print(f"  {m.name}({arrow})")
    check("ListSimulations" in service.methods_by_name, f"{SERVICE} has no ListSimulations")

    # Health, through descriptors from reflection too: the enum value is resolved by name.
    health = unary_call(channel, pool, HEALTH, "Check", metadata, service=SERVICE)
    status = health.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_number[health.status].name
    check(status == "SERVING", f"health of {SERVICE} is {status}")
    print(f"{HEALTH}/Check({SERVICE}): {status}")

    # ListSimulations with a request built from the descriptor.
    listed = unary_call(channel, pool, SERVICE, "ListSimulations", metadata)
    before = [s.simulation_id for s in listed.simulations]
    reparsed = type(listed)()
    reparsed.ParseFromString(listed.SerializeToString())
    check(reparsed == listed, "ListSimulationsResponse does not survive serialize + parse")
    print(f"ListSimulations: {len(before)} simulations")

    # A throwaway simulation, created and deleted with dynamic messages, must show up in the list.
    sim_id = f"py-reflection-{uuid.uuid4().hex[:12]}"
    created = unary_call(
        channel, pool, SERVICE, "CreateSimulation", metadata,
        simulation_id=sim_id, seed=1, start_date="2025-01-06", population_scale=0.001,
    )
    try:
        check(created.simulation_id == sim_id, f"CreateSimulation answered id {created.simulation_id!r}")
        listed = unary_call(channel, pool, SERVICE, "ListSimulations", metadata)
        found = [s for s in listed.simulations if s.simulation_id == sim_id]
        check(len(found) == 1, f"ListSimulations lists {sim_id} {len(found)} times, expected once")
        as_json = json_format.MessageToDict(found[0], preserving_proto_field_name=True)
        check(as_json.get("start_date") == "2025-01-06", f"listed simulation as JSON: {as_json}")
        print(
            f"ListSimulations after CreateSimulation: {len(listed.simulations)} simulations, including "
            f"{sim_id} (as JSON: {len(as_json)} fields, scenario {as_json.get('scenario_name')!r})"
        )
    finally:
        deleted = unary_call(channel, pool, SERVICE, "DeleteSimulation", metadata, simulation_id=sim_id)
    check(deleted.deleted, f"DeleteSimulation({sim_id}) answered deleted = false")
    channel.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("AMPSIM_SERVER", "127.0.0.1:50051"),
        help="host:port of the server (env AMPSIM_SERVER; default 127.0.0.1:50051)",
    )
    args = parser.parse_args()
    try:
        run(args.server.removeprefix("http://"))
    except CheckFailed as e:
        print(f"reflection_check.py: FAILED: {e}", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"reflection_check.py: FAILED: RPC error {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except KeyError as e:
        print(f"reflection_check.py: FAILED: reflection does not know {e}", file=sys.stderr)
        return 1
    print("reflection_check.py: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

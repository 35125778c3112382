"""A client of ringkv written from schema/kv.proto alone, in Python.

Run by scripts/python_client_check.sh, which generates kv_pb2 with protoc
and starts the replicas. Every request a client may send goes through
Google's protobuf runtime, and every reply is decoded by it and must carry
no field that kv.proto does not declare. Prints one line per failed check
and exits 1 if there was any.

    python_client_check.py [--secret-file FILE] HOST:PORT...
"""
import argparse
import socket
import struct
import sys

from google.protobuf import unknown_fields

import kv_pb2 as pb

LEVELS = (pb.CONSISTENCY_ONE, pb.CONSISTENCY_QUORUM, pb.CONSISTENCY_ALL)
failures = []


def check(holds, what):
    if not holds:
        failures.append(what)
        print(f"FAIL {what}")


def declared_fields_only(message, path):
    """Fails the check for every field kv.proto does not declare, at any depth."""
    check(len(unknown_fields.UnknownFieldSet(message)) == 0, f"{path} has undeclared fields: {message}")
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        items = value if field.is_repeated else [value]
        for i, item in enumerate(items):
            declared_fields_only(item, f"{path}.{field.name}[{i}]")


def body(reply):
    return reply.WhichOneof("body")


def error_kind(reply):
    return reply.error.kind if body(reply) == "error" else None


class Connection:
    """One TCP connection: 4-byte big-endian length, then an Envelope."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.next_id = 1

    def send_frame(self, payload):
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def send(self, **fields):
        envelope = pb.Envelope(request_id=self.next_id, **fields)
        self.next_id += 1
        self.send_frame(envelope.SerializeToString())
        return envelope.request_id

    def receive(self):
        (length,) = struct.unpack(">I", self.read_exact(4))
        reply = pb.Envelope()
        reply.ParseFromString(self.read_exact(length))
        declared_fields_only(reply, "reply")
        return reply

    def call(self, **fields):
        request_id = self.send(**fields)
        reply = self.receive()
        check(reply.request_id == request_id, f"reply to {request_id} came as {reply.request_id}")
        return reply

    def read_exact(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError("the replica closed the connection")
            data += chunk
        return data


def authenticate(connection, secret):
    refused = connection.call(get=pb.GetRequest(key=1, consistency=pb.CONSISTENCY_ONE))
    check(error_kind(refused) == pb.ERROR_KIND_UNAUTHENTICATED, f"a get before the secret: {refused}")
    wrong = connection.call(auth=pb.AuthRequest(secret=b"not the secret"))
    check(error_kind(wrong) == pb.ERROR_KIND_UNAUTHENTICATED, f"a wrong secret: {wrong}")
    right = connection.call(auth=pb.AuthRequest(secret=secret))
    check(body(right) == "auth_reply" and right.auth_reply.secret_required, f"the secret: {right}")


def every_level_through_every_coordinator(connections):
    written = {}
    for coordinator, connection in enumerate(connections):
        for level in LEVELS:
            # Key 0 is a real key: `optional` keeps it apart from "no key".
            for key in (0, 127, 255):
                value = f"python {coordinator}/{level}/{key} \u00e9\u4e2d\U0001f600"
                written.setdefault(key, []).append(value)
                put = connection.call(put=pb.PutRequest(key=key, value=value, consistency=level))
                check(body(put) == "put_reply" and put.put_reply.timestamp_micros > 0, f"put: {put}")
                got = connection.call(get=pb.GetRequest(key=key, consistency=level))
                check(body(got) == "get_reply" and got.get_reply.found.timestamp_micros > 0, f"get: {got}")
                # A ONE get after a ONE put may meet a replica the put has
                # not reached yet: any value written before is correct.
                expected = written[key] if level == pb.CONSISTENCY_ONE else [value]
                check(got.get_reply.found.value in expected, f"get at {level} after put: {got}")


def values_deletes_and_cas(connection):
    quorum = pb.CONSISTENCY_QUORUM
    connection.call(put=pb.PutRequest(key=5, value="", consistency=quorum))
    got = connection.call(get=pb.GetRequest(key=5, consistency=quorum))
    check(got.get_reply.HasField("found") and got.get_reply.found.value == "", f"an empty value: {got}")
    deleted = connection.call(delete=pb.DeleteRequest(key=5, consistency=quorum))
    check(body(deleted) == "delete_reply", f"delete: {deleted}")
    got = connection.call(get=pb.GetRequest(key=5, consistency=quorum))
    check(not got.get_reply.HasField("found"), f"a deleted key: {got}")

    created = connection.call(cas=pb.CasRequest(key=6, value="a"))
    check(body(created) == "cas_reply" and created.cas_reply.applied, f"cas of an absent key: {created}")
    swapped = connection.call(cas=pb.CasRequest(key=6, expected="a", value="b"))
    check(swapped.cas_reply.applied, f"cas a -> b: {swapped}")
    refused = connection.call(cas=pb.CasRequest(key=6, expected="a", value="c"))
    check(not refused.cas_reply.applied and refused.cas_reply.current.value == "b", f"cas refused: {refused}")
    serial = connection.call(get=pb.GetRequest(key=6, consistency=pb.CONSISTENCY_SERIAL))
    check(serial.get_reply.found.value == "b", f"a SERIAL get: {serial}")


def operator_requests(connection):
    for name, request in (
        ("status", pb.StatusRequest()),
        ("metrics", pb.MetricsRequest()),
        ("inspect", pb.InspectRequest(key=6)),
        ("repair", pb.RepairRequest()),
    ):
        reply = connection.call(**{name: request})
        check(body(reply) == f"{name}_reply", f"{name}: {reply}")
    inspect = connection.call(inspect=pb.InspectRequest(key=6))
    holders = sorted(r.replica_id for r in inspect.inspect_reply.replicas)
    check(len(holders) == 3, f"inspect names the key's three replicas: {inspect}")


def typed_errors(connection):
    invalid = pb.ERROR_KIND_INVALID
    for what, fields in (
        ("key 256", dict(get=pb.GetRequest(key=256, consistency=pb.CONSISTENCY_ONE))),
        ("no key", dict(get=pb.GetRequest(consistency=pb.CONSISTENCY_ONE))),
        ("no level", dict(get=pb.GetRequest(key=1))),
        ("a SERIAL put", dict(put=pb.PutRequest(key=1, value="x", consistency=pb.CONSISTENCY_SERIAL))),
        ("an empty envelope", dict()),
    ):
        reply = connection.call(**fields)
        check(error_kind(reply) == invalid and reply.error.message, f"{what}: {reply}")
    connection.send_frame(b"\xff\xff\xff")
    garbage = connection.receive()
    check(garbage.request_id == 0 and error_kind(garbage) == invalid, f"an undecodable frame: {garbage}")
    # A field kv.proto does not declare (number 900, varint) is skipped, as
    # a newer client's would be.
    extra = pb.Envelope(request_id=connection.next_id, get=pb.GetRequest(key=6, consistency=pb.CONSISTENCY_QUORUM))
    connection.next_id += 1
    connection.send_frame(extra.SerializeToString() + b"\xa0\x38\x01")
    reply = connection.receive()
    check(reply.get_reply.found.value == "b", f"a request with an undeclared field: {reply}")


def pipelined(connection):
    sent = [
        connection.send(put=pb.PutRequest(key=40 + i, value=str(i), consistency=pb.CONSISTENCY_QUORUM))
        for i in range(16)
    ]
    replies = [connection.receive() for _ in sent]
    check(sorted(r.request_id for r in replies) == sent, f"16 pipelined puts: {[r.request_id for r in replies]}")
    check(all(body(r) == "put_reply" for r in replies), "16 pipelined puts all answered")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret-file")
    parser.add_argument("addrs", nargs="+")
    args = parser.parse_args()
    connections = [Connection(addr) for addr in args.addrs]
    if args.secret_file:
        with open(args.secret_file, "rb") as f:
            secret = f.read().rstrip()
        for connection in connections:
            authenticate(connection, secret)
    every_level_through_every_coordinator(connections)
    values_deletes_and_cas(connections[0])
    operator_requests(connections[1])
    typed_errors(connections[2])
    pipelined(connections[3])
    if failures:
        print(f"python client check: {len(failures)} checks failed")
        return 1
    print("python client check: every request and reply went through Google's protobuf runtime intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())

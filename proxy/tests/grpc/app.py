"""A gRPC server and client from grpcio (PyPI), with no generated code: methods take and give
raw bytes. `server` prints its port and serves trellis.test.Echo; `client ADDR AUTHORITY`
makes the calls the test asks for on stdin (one per line: METHOD ARG) and prints one JSON
line per call: the status code's name, the details and the messages received."""
import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "trellis.test.Echo"


def code_of(n):
    return next(c for c in grpc.StatusCode if c.value[0] == n)


SEEN = set()


def say(request, context):
    # "fail:N" ends the call with status N before any message: a trailers-only response.
    if request.startswith(b"fail:"):
        context.abort(code_of(int(request[5:])), "asked to fail")
    # "once:X" fails UNAVAILABLE the first time X is asked, and answers after.
    if request.startswith(b"once:") and request not in SEEN:
        SEEN.add(request)
        context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
    # "slow:MS" answers after MS milliseconds.
    if request.startswith(b"slow:"):
        time.sleep(int(request[5:]) / 1000)
    return b"hello " + request


def count(request, context):
    # "N:CODE" sends N messages, then ends with CODE: the status in the trailers.
    n, code = (int(x) for x in request.split(b":"))
    for i in range(n):
        yield str(i).encode()
    if code:
        context.set_code(code_of(code))
        context.set_details("stream ends with %d" % code)


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Count": grpc.unary_stream_rpc_method_handler(count),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def client(addr, authority):
    channel = grpc.insecure_channel(addr, options=[("grpc.default_authority", authority)])
    for line in sys.stdin:
        # METHOD ARG [TIMEOUT_S]: the call's deadline, sent as grpc-timeout.
        method, arg, *deadline = line.split()
        timeout = float(deadline[0]) if deadline else 10
        messages, code, details = [], grpc.StatusCode.OK, ""
        try:
            if method == "Say":
                messages.append(channel.unary_unary(f"/{SERVICE}/Say")(arg.encode(), timeout=timeout).decode())
            else:
                for m in channel.unary_stream(f"/{SERVICE}/Count")(arg.encode(), timeout=timeout):
                    messages.append(m.decode())
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        print(json.dumps({"code": code.name, "details": details, "messages": messages}), flush=True)


if __name__ == "__main__":
    serve() if sys.argv[1] == "server" else client(sys.argv[2], sys.argv[3])

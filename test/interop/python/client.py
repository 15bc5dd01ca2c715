"""The Python grpcio client of the interop tier (make test-interop).

Run by interop_test.go as `/usr/bin/python3 client.py CONFIG.json` with
PYTHONPATH set to the code that Debian's protoc and grpc_python_plugin
generated from the mesh's descriptors. It makes each call of the tier and
prints one JSON object per call on stdout: case, code (the gRPC code's name),
message, ms and data. It judges nothing: the Go driver holds the
expectations, the same for every client.
"""

import json
import sys
import time

import grpc

from grpc_health.v1 import health_pb2, health_pb2_grpc
from shop.gateway.v1 import gateway_pb2 as gw1, gateway_pb2_grpc as gw1_grpc
from shop.gateway.v2 import gateway_pb2 as gw2, gateway_pb2_grpc as gw2_grpc
from shop.money.v1 import money_pb2
from shop.payments.v1 import payments_pb2, payments_pb2_grpc


def read(path):
    with open(path, "rb") as f:
        return f.read()


def channel(cfg, target, who):
    """A secure channel to target, as who (a key of cfg, or None for no client cert)."""
    if who is None:
        creds = grpc.ssl_channel_credentials(root_certificates=read(cfg["ca"]))
    else:
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(cfg["ca"]),
            private_key=read(cfg[who]["key"]),
            certificate_chain=read(cfg[who]["cert"]),
        )
    return grpc.secure_channel(target, creds)


def emit(case, start, code="OK", message="", **data):
    print(json.dumps({"case": case, "code": code, "message": message,
                      "ms": round((time.monotonic() - start) * 1000, 1), "data": data}), flush=True)


def call(case, fn):
    """Runs fn() -> data dict, and emits its result or its error."""
    start = time.monotonic()
    try:
        data = fn()
    except grpc.RpcError as e:
        emit(case, start, e.code().name, e.details() or "")
        return None
    emit(case, start, **data)
    return data


def main():
    cfg = json.loads(read(sys.argv[1]))
    timeout = cfg["deadline_ms"] / 1000
    ports = cfg["ports"]
    big = "a" * cfg["big_id_bytes"]

    with channel(cfg, ports["gateway"], "alice") as ch:
        v1 = gw1_grpc.StorefrontServiceStub(ch)
        v2 = gw2_grpc.StorefrontServiceStub(ch)
        call("list_products", lambda: {"products": len(v1.ListProducts(gw1.ListProductsRequest(), timeout=timeout).products)})
        placed = call("place_order", lambda: (lambda o: {"order_id": o.id, "status": gw1.OrderStatus.Name(o.status)})(
            v1.PlaceOrder(gw1.PlaceOrderRequest(items=[gw1.CartItem(product_id="sku-apple", quantity=1)]), timeout=timeout).order))
        order_id = placed["order_id"] if placed else "missing"
        call("watch_order", lambda: {"statuses": [gw1.OrderStatus.Name(r.order.status) for r in
                                                  v1.WatchOrder(gw1.WatchOrderRequest(order_id=order_id), timeout=timeout)]})
        items = [gw2.CartItem(product_id="sku-pear", quantity=1)]
        call("token_place_order", lambda: {"status": gw2.OrderStatus.Name(v2.PlaceOrder(
            gw2.PlaceOrderRequest(items=items), timeout=timeout,
            metadata=[("authorization", "Bearer " + cfg["token"])]).order.status)})
        call("no_token_place_order", lambda: {"status": gw2.OrderStatus.Name(
            v2.PlaceOrder(gw2.PlaceOrderRequest(items=items), timeout=timeout).order.status)})
        call("oversized_get_order", lambda: {"order": v1.GetOrder(gw1.GetOrderRequest(order_id=big), timeout=timeout).order.id})
        call("oversized_watch_order", lambda: {"statuses": [gw1.OrderStatus.Name(r.order.status) for r in
                                                            v1.WatchOrder(gw1.WatchOrderRequest(order_id=big), timeout=timeout)]})
        call("oversized_place_order", lambda: {"order": v1.PlaceOrder(gw1.PlaceOrderRequest(
            customer_id=big, items=[gw1.CartItem(product_id="sku-apple", quantity=1)]), timeout=timeout).order.id})

    with channel(cfg, ports["payments"], "alice") as ch:
        pay = payments_pb2_grpc.PaymentServiceStub(ch)
        call("denied_charge", lambda: {"payment": pay.Charge(payments_pb2.ChargeRequest(
            order_id="o1", amount=money_pb2.Money(currency_code="EUR", units_minor=100)), timeout=timeout).payment.id})

    for name in ("gateway", "orders", "inventory", "payments"):
        with channel(cfg, ports[name], "admin") as ch:
            h = health_pb2_grpc.HealthStub(ch)
            call("health_" + name, lambda: {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(
                h.Check(health_pb2.HealthCheckRequest(), timeout=timeout).status)})

    # What a refused handshake looks like, on each server stack, next to a
    # service that is down.
    for case, target, who in (("refused_no_cert", ports["gateway"], None),
                              ("refused_other_ca", ports["gateway"], "stranger"),
                              ("refused_no_cert_grpcgo", ports["orders"], None),
                              ("refused_other_ca_grpcgo", ports["orders"], "stranger"),
                              ("down", cfg["down"], "alice")):
        with channel(cfg, target, who) as ch:
            h = health_pb2_grpc.HealthStub(ch)
            call(case, lambda: {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(
                h.Check(health_pb2.HealthCheckRequest(), timeout=timeout).status)})


if __name__ == "__main__":
    main()

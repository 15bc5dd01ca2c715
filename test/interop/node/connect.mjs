// The @connectrpc/connect-node client of the interop tier (make test-interop).
//
// Run by interop_test.go as `node connect.mjs CONFIG.json`. It builds its
// schema at run time with @bufbuild/protobuf from the descriptor set the
// driver wrote (no generated code), makes each call of the tier over three
// transports, and prints one JSON object per call on stdout: case
// (TRANSPORT/NAME), code (the gRPC code's name), message, ms and data. It
// judges nothing: the Go driver holds the expectations.
//
//   grpc/        gRPC over HTTP/2, against every service
//   connect-h1/  the Connect protocol over HTTP/1.1, against the connect-go
//                servers (gateway, payments)
//   grpcweb-h1/  gRPC-Web over HTTP/1.1, against the same
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(cfg.descriptor_set)));
const service = (name) => {
  const s = registry.getService(name);
  if (!s) throw new Error(`connect.mjs: no service ${name} in ${cfg.descriptor_set}`);
  return s;
};
const V1 = service("shop.gateway.v1.StorefrontService");
const V2 = service("shop.gateway.v2.StorefrontService");
const Payments = service("shop.payments.v1.PaymentService");
const Health = service("grpc.health.v1.Health");
const orderStatus = registry.getEnum("shop.gateway.v1.OrderStatus");
const servingStatus = registry.getEnum("grpc.health.v1.HealthCheckResponse.ServingStatus");
const enumName = (e, n) => e.values.find((v) => v.number === n)?.name ?? String(n);
const big = "a".repeat(cfg.big_id_bytes);

// Code names as gRPC spells them: Code.PermissionDenied -> PERMISSION_DENIED.
const codeName = (c) => Code[c].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();

function tls(who) {
  const o = { ca: readFileSync(cfg.ca) };
  if (who) {
    o.cert = readFileSync(cfg[who].cert);
    o.key = readFileSync(cfg[who].key);
  }
  return o;
}

const transports = {
  grpc: (target, who) => createGrpcTransport({ baseUrl: "https://" + target, nodeOptions: tls(who) }),
  "connect-h1": (target, who) => createConnectTransport({ baseUrl: "https://" + target, httpVersion: "1.1", nodeOptions: tls(who) }),
  "grpcweb-h1": (target, who) => createGrpcWebTransport({ baseUrl: "https://" + target, httpVersion: "1.1", nodeOptions: tls(who) }),
};

function emit(name, start, code, message, data) {
  const ms = Math.round(Number(process.hrtime.bigint() - start) / 1e5) / 10;
  console.log(JSON.stringify({ case: name, code, message, ms, data: data ?? {} }));
}

// call runs fn() -> data and emits its result or its error.
async function call(name, fn) {
  const start = process.hrtime.bigint();
  try {
    const data = await fn();
    emit(name, start, "OK", "", data);
    return data;
  } catch (e) {
    const err = ConnectError.from(e);
    emit(name, start, codeName(err.code), err.rawMessage);
    return null;
  }
}

const opts = (headers) => ({ timeoutMs: cfg.deadline_ms, headers });

for (const [t, transport] of Object.entries(transports)) {
  const p = t + "/";
  const gw = createClient(V1, transport(cfg.ports.gateway, "alice"));
  const gw2 = createClient(V2, transport(cfg.ports.gateway, "alice"));
  await call(p + "list_products", async () => ({ products: (await gw.listProducts({}, opts())).products.length }));
  const placed = await call(p + "place_order", async () => {
    const { order } = await gw.placeOrder({ items: [{ productId: "sku-apple", quantity: 1 }] }, opts());
    return { order_id: order.id, status: enumName(orderStatus, order.status) };
  });
  await call(p + "watch_order", async () => {
    const statuses = [];
    for await (const m of gw.watchOrder({ orderId: placed?.order_id ?? "missing" }, opts())) {
      statuses.push(enumName(orderStatus, m.order.status));
    }
    return { statuses };
  });
  const items = [{ productId: "sku-pear", quantity: 1 }];
  await call(p + "token_place_order", async () => ({
    status: enumName(orderStatus, (await gw2.placeOrder({ items }, opts({ authorization: "Bearer " + cfg.token }))).order.status),
  }));
  await call(p + "no_token_place_order", async () => ({
    status: enumName(orderStatus, (await gw2.placeOrder({ items }, opts())).order.status),
  }));
  await call(p + "oversized_get_order", async () => ({ order: (await gw.getOrder({ orderId: big }, opts())).order.id }));
  await call(p + "oversized_watch_order", async () => {
    const statuses = [];
    for await (const m of gw.watchOrder({ orderId: big }, opts())) statuses.push(enumName(orderStatus, m.order.status));
    return { statuses };
  });
  await call(p + "oversized_place_order", async () => ({
    order: (await gw.placeOrder({ customerId: big, items: [{ productId: "sku-apple", quantity: 1 }] }, opts())).order.id,
  }));

  const pay = createClient(Payments, transport(cfg.ports.payments, "alice"));
  await call(p + "denied_charge", async () => ({
    payment: (await pay.charge({ orderId: "o1", amount: { currencyCode: "EUR", unitsMinor: 100n } }, opts())).payment.id,
  }));

  // grpc-go (orders, inventory) serves gRPC only.
  const stacks = t === "grpc" ? ["gateway", "orders", "inventory", "payments"] : ["gateway", "payments"];
  for (const name of stacks) {
    const h = createClient(Health, transport(cfg.ports[name], "admin"));
    await call(p + "health_" + name, async () => ({ status: enumName(servingStatus, (await h.check({}, opts())).status) }));
  }

  // What a refused handshake looks like, on each server stack, next to a
  // service that is down.
  const refusals = [
    ["refused_no_cert", cfg.ports.gateway, null],
    ["refused_other_ca", cfg.ports.gateway, "stranger"],
    ["down", cfg.down, "alice"],
  ];
  if (t === "grpc") {
    refusals.push(["refused_no_cert_grpcgo", cfg.ports.orders, null], ["refused_other_ca_grpcgo", cfg.ports.orders, "stranger"]);
  }
  for (const [name, target, who] of refusals) {
    const h = createClient(Health, transport(target, who));
    await call(p + name, async () => ({ status: enumName(servingStatus, (await h.check({}, opts())).status) }));
  }
}
process.exit(0);

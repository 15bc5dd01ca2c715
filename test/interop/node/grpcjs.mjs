// The @grpc/grpc-js client of the interop tier (make test-interop).
//
// Run by interop_test.go as `node grpcjs.mjs CONFIG.json`. It loads the
// mesh's descriptors at run time (@grpc/proto-loader, from the descriptor
// set the driver wrote: no generated code), makes each call of the tier and
// prints one JSON object per call on stdout: case, code (the gRPC code's
// name), message, ms and data. It judges nothing: the Go driver holds the
// expectations, the same for every client.
import { readFileSync } from "node:fs";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const pkgDef = protoLoader.loadFileDescriptorSetFromBuffer(readFileSync(cfg.descriptor_set), {
  keepCase: true, enums: String, longs: Number, defaults: true,
});
const pkg = grpc.loadPackageDefinition(pkgDef);
const codeName = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));
const big = "a".repeat(cfg.big_id_bytes);

function creds(who) {
  const ca = readFileSync(cfg.ca);
  if (!who) return grpc.credentials.createSsl(ca);
  return grpc.credentials.createSsl(ca, readFileSync(cfg[who].key), readFileSync(cfg[who].cert));
}

function client(Service, target, who) {
  return new Service(target, creds(who));
}

function deadline() {
  return new Date(Date.now() + cfg.deadline_ms);
}

function emit(name, start, code, message, data) {
  const ms = Math.round(Number(process.hrtime.bigint() - start) / 1e5) / 10;
  console.log(JSON.stringify({ case: name, code, message, ms, data: data ?? {} }));
}

// unary calls c.method(req) with a deadline and emits its result.
function unary(name, c, method, req, metadata, pick) {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => {
    c[method](req, metadata ?? new grpc.Metadata(), { deadline: deadline() }, (err, res) => {
      if (err) {
        emit(name, start, codeName[err.code] ?? String(err.code), err.details ?? err.message);
        resolve(null);
        return;
      }
      const data = pick(res);
      emit(name, start, "OK", "", data);
      resolve(data);
    });
  });
}

// stream reads a server stream to its end; grpc-js reports the end, OK or
// not, in one "status" event.
function stream(name, c, method, req, pick) {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => {
    const got = [];
    const call = c[method](req, new grpc.Metadata(), { deadline: deadline() });
    call.on("data", (m) => got.push(pick(m)));
    call.on("error", () => {}); // reported by "status"
    call.on("status", (s) => {
      if (s.code === grpc.status.OK) emit(name, start, "OK", "", { statuses: got });
      else emit(name, start, codeName[s.code] ?? String(s.code), s.details);
      resolve();
    });
  });
}

const V1 = pkg.shop.gateway.v1.StorefrontService;
const V2 = pkg.shop.gateway.v2.StorefrontService;
const Payments = pkg.shop.payments.v1.PaymentService;
const Health = pkg.grpc.health.v1.Health;

const gw = client(V1, cfg.ports.gateway, "alice");
const gw2 = client(V2, cfg.ports.gateway, "alice");
await unary("list_products", gw, "ListProducts", {}, null, (r) => ({ products: r.products.length }));
const placed = await unary("place_order", gw, "PlaceOrder", { items: [{ product_id: "sku-apple", quantity: 1 }] }, null,
  (r) => ({ order_id: r.order.id, status: r.order.status }));
await stream("watch_order", gw, "WatchOrder", { order_id: placed?.order_id ?? "missing" }, (m) => m.order.status);
const withToken = new grpc.Metadata();
withToken.set("authorization", "Bearer " + cfg.token);
const items = [{ product_id: "sku-pear", quantity: 1 }];
await unary("token_place_order", gw2, "PlaceOrder", { items }, withToken, (r) => ({ status: r.order.status }));
await unary("no_token_place_order", gw2, "PlaceOrder", { items }, null, (r) => ({ status: r.order.status }));
await unary("oversized_get_order", gw, "GetOrder", { order_id: big }, null, (r) => ({ order: r.order.id }));
await stream("oversized_watch_order", gw, "WatchOrder", { order_id: big }, (m) => m.order.status);
await unary("oversized_place_order", gw, "PlaceOrder", { customer_id: big, items: [{ product_id: "sku-apple", quantity: 1 }] }, null,
  (r) => ({ order: r.order.id }));
gw.close();
gw2.close();

const pay = client(Payments, cfg.ports.payments, "alice");
await unary("denied_charge", pay, "Charge", { order_id: "o1", amount: { currency_code: "EUR", units_minor: 100 } }, null,
  (r) => ({ payment: r.payment.id }));
pay.close();

for (const name of ["gateway", "orders", "inventory", "payments"]) {
  const h = client(Health, cfg.ports[name], "admin");
  await unary("health_" + name, h, "Check", {}, null, (r) => ({ status: r.status }));
  h.close();
}

// What a refused handshake looks like, on each server stack, next to a
// service that is down.
for (const [name, target, who] of [
  ["refused_no_cert", cfg.ports.gateway, null],
  ["refused_other_ca", cfg.ports.gateway, "stranger"],
  ["refused_no_cert_grpcgo", cfg.ports.orders, null],
  ["refused_other_ca_grpcgo", cfg.ports.orders, "stranger"],
  ["down", cfg.down, "alice"],
]) {
  const h = client(Health, target, who);
  await unary(name, h, "Check", {}, null, (r) => ({ status: r.status }));
  h.close();
}

// The load driver of run.sh: keep C sagas in flight for SECS seconds (after WARM seconds of warm-up), print
// throughput and latency percentiles as JSON. Usage: node load.cjs C SECS WARM
const http = require("http");
const [C, SECS, WARM] = [Number(process.argv[2] || 1), Number(process.argv[3] || 10), Number(process.argv[4] || 2)];
const agent = new http.Agent({ keepAlive: true, maxSockets: C });
let n = 0;
function call() {
  const id = `o-${process.pid}-${n++}`;
  const body = JSON.stringify({ order_id: id, customer: "ada", items: [{ sku: "A-1", qty: 2, price: 10.5 }] });
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: 8080, path: "/order/run", method: "POST", agent,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      let data = ""; res.on("data", (d) => (data += d));
      res.on("end", () => (res.statusCode === 200 ? resolve(data) : reject(new Error(`${res.statusCode} ${data}`))));
    });
    req.on("error", reject); req.end(body);
  });
}
async function main() {
  const lat = []; let errors = 0; let measuring = false; let stop = false;
  const t0 = process.hrtime.bigint();
  setTimeout(() => { measuring = true; start = process.hrtime.bigint(); }, WARM * 1000);
  setTimeout(() => { stop = true; }, (WARM + SECS) * 1000);
  let start = t0;
  async function lane() {
    while (!stop) {
      const a = process.hrtime.bigint();
      try { await call(); } catch (e) { errors++; if (errors < 3) console.error(String(e)); continue; }
      const b = process.hrtime.bigint();
      if (measuring && !stop) lat.push(Number(b - a) / 1e6);
    }
  }
  await Promise.all(Array.from({ length: C }, lane));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  lat.sort((x, y) => x - y);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  console.log(JSON.stringify({ concurrency: C, completed: lat.length, errors, sagas_per_sec: lat.length / secs,
    p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99), max_ms: lat[lat.length - 1] }));
  agent.destroy();
}
main();

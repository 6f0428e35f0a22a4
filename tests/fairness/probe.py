"""Fairness probe: POST latency and order latency on an idle host, then beside 64 looping sagas.

Usage (from the repository root, with a release host serving workflows/order.toml and
tests/fairness/spin.toml on 127.0.0.1:7711; see BENCHMARKS.md, "Fairness"):

    python3 tests/fairness/probe.py run1
"""
import http.client, json, sys, time
inp = json.load(open('workflows/order.input.json'))
def post(wf, id, body):
    c = http.client.HTTPConnection('127.0.0.1', 7711)
    t = time.perf_counter()
    c.request('POST', '/v1/sagas', json.dumps({"workflow": wf, "id": id, "input": body}), {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    return (time.perf_counter() - t) * 1000, r.status
def wait(id):
    c = http.client.HTTPConnection('127.0.0.1', 7711)
    c.request('GET', f'/v1/sagas/{id}?wait=60'); r = c.getresponse(); return json.loads(r.read())
def run(tag, n):
    posts, ends = [], []
    for i in range(n):
        t = time.perf_counter()
        ms, st = post("order", f"{tag}-{i}", inp); posts.append(ms)
        s = wait(f"{tag}-{i}"); ends.append((time.perf_counter() - t) * 1000)
        assert s["status"] == "completed", s["status"]
    posts.sort(); ends.sort()
    q = lambda v, p: v[min(len(v)-1, int(len(v)*p))]
    print(f"{tag}: POST p50 {q(posts,.5):.2f} p99 {q(posts,.99):.2f} max {posts[-1]:.2f} ms; order p50 {q(ends,.5):.2f} p99 {q(ends,.99):.2f} ms")
run(sys.argv[1] + "-idle", 200)
loop_posts = [post("spin", f"{sys.argv[1]}-spin-{i}", {})[0] for i in range(64)]
loop_posts.sort()
print(f"64 loop starts: POST p50 {loop_posts[32]:.2f} max {loop_posts[-1]:.2f} ms")
time.sleep(0.5)
run(sys.argv[1] + "-loaded", 200)

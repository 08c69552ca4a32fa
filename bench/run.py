"""hds_s3 benchmark: every figure as a ratio to a physical baseline measured in the same run.

    .venv/bin/python bench/run.py                       # 1,000,000 frames, local + moto_server
    .venv/bin/python bench/run.py --frames 20000 --stores local --json out.json

See bench/README.md for what is measured and the targets.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import stores  # noqa: E402
import synth  # noqa: E402
from loader_bench import run_loader_bench  # noqa: E402

from hds_s3 import Client, DatasetVersion  # noqa: E402
from hds_s3.index.frameindex import SEGMENT_ROWS  # noqa: E402
from hds_s3.store import FaultyStore  # noqa: E402

KB = 1024
MB = 1024 * 1024
GB = 1024 * MB
READ_DEPTHS = (1, 5, 10, 20)
QUERY_CITY = "bremen"
QUERY_LABEL = "cat"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def parquet_bytes(table: pa.Table) -> bytes:
    """Plain pyarrow defaults (the physical baseline)."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def run_worker(args: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "ingest_worker.py"), json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ingest worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- profiling


PY_SPY = shutil.which("py-spy") or (
    str(Path(sys.executable).with_name("py-spy"))
    if Path(sys.executable).with_name("py-spy").exists()
    else None
)


def profile_call(prof_dir: Path | None, name: str, fn: Callable[[], Any], min_seconds: float = 3.0) -> None:
    """Run ``fn`` again (not timed) under a sampling profiler and save a summary in ``prof_dir``.

    With py-spy (all threads, so the segment fetches of the thread pool are seen too): ``fn`` is
    repeated for at least ``min_seconds``. Without it: cProfile, which sees the calling thread only.
    """
    if prof_dir is None:
        return
    if PY_SPY:
        raw = prof_dir / f"{name}.raw.txt"
        spy = subprocess.Popen(
            [
                PY_SPY,
                "record",
                "--pid",
                str(os.getpid()),
                "-f",
                "raw",
                "-r",
                "200",
                "-o",
                str(raw),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # let py-spy attach
        t0 = time.perf_counter()
        runs = 0
        while runs == 0 or time.perf_counter() - t0 < min_seconds:
            fn()
            runs += 1
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        summarize_raw(raw, f"{name}: {runs} runs")
        return
    import cProfile

    prof = cProfile.Profile()
    prof.runcall(fn)
    path = prof_dir / f"{name}.prof"
    prof.dump_stats(str(path))
    summarize_profile(path)


def summarize_profile(path: Path) -> None:
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats("hds_s3", 30)
    path.with_suffix(".txt").write_text(out.getvalue())
    log(f"profile written: {path} (+ .txt)")


def summarize_raw(raw: Path, title: str) -> None:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed stacks) output."""
    from collections import Counter

    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        log(f"py-spy wrote nothing to {raw}")
        return
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        if frames:
            self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{title}; {total} samples (200/s, all threads, idle excluded)", "", "top self (leaf) frames:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_c.most_common(25)]
    out += ["", "top inclusive hds_s3 frames:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common() if "hds_s3" in f][:30]
    raw.with_name(raw.name.replace(".raw.txt", ".txt")).write_text("\n".join(out) + "\n")
    log(f"profile written: {raw}")


# ---------------------------------------------------------------------------------------------- one store


class StoreBench:
    def __init__(self, name: str, spec: dict[str, Any], opts: argparse.Namespace, prof_dir: Path | None):
        self.name = name
        self.spec = spec
        self.opts = opts
        self.prof_dir = prof_dir
        self.store = stores.open_spec(spec)
        self.results: dict[str, Any] = {"store": name}
        self.seed = opts.seed

    # -- helpers

    def version(self, client: Client, dataset_id: str, version_id: str) -> DatasetVersion:
        return DatasetVersion.get_version(dataset_id=dataset_id, version_id=version_id, client=client)

    # -- (a) + (e): ingest

    def ingest(self, n: int, dataset: str, timed_baseline: bool) -> dict[str, Any]:
        seg = self.opts.segment_rows
        log(f"{self.name}: ingest {n:,} frames with add_frames (child process)")
        ours = run_worker(
            {
                "mode": "ours",
                "spec": self.spec,
                "n": n,
                "seed": self.seed,
                "start": 0,
                "dataset": dataset,
                "segment_rows": seg,
                "publish": True,
            }
        )
        if ours["failed"]:
            raise RuntimeError(f"{ours['failed']} frames failed validation: {ours['failed_sample']}")
        log(
            f"{self.name}:   ours {ours['seconds']:.1f}s (generator {ours['gen_seconds']:.1f}s), "
            f"peak RSS {ours['rss_peak'] / MB:.0f} MB; publish {ours['publish_seconds']:.1f}s"
        )
        out = {"ours": ours}
        if timed_baseline:
            log(f"{self.name}: baseline ingest: from_pylist + write_table + one PUT (child process)")
            base = run_worker(
                {
                    "mode": "baseline",
                    "spec": self.spec,
                    "n": n,
                    "seed": self.seed,
                    "start": 0,
                    "key": f"bench/{dataset}-baseline.parquet",
                    "segment_rows": seg,
                }
            )
            log(
                f"{self.name}:   baseline {base['seconds']:.1f}s (generator {base['gen_seconds']:.1f}s), "
                f"{base['bytes'] / MB:.1f} MB, peak RSS {base['rss_peak'] / MB:.0f} MB"
            )
            out["baseline"] = base
            out["baseline_key"] = f"bench/{dataset}-baseline.parquet"
        if self.prof_dir is not None and timed_baseline:
            pn = min(n, 100_000)
            log(f"{self.name}: profiling an ingest of {pn:,} frames (extra run, not timed)")
            wargs = {
                "mode": "ours",
                "spec": self.spec,
                "n": pn,
                "seed": self.seed,
                "start": 0,
                "dataset": dataset + "-prof",
                "segment_rows": seg,
                "publish": False,
            }
            if PY_SPY:
                raw = self.prof_dir / f"{self.name}-ingest.raw.txt"
                subprocess.run(
                    [
                        PY_SPY,
                        "record",
                        "-f",
                        "raw",
                        "-r",
                        "200",
                        "-o",
                        str(raw),
                        "--",
                        sys.executable,
                        str(HERE / "ingest_worker.py"),
                        json.dumps(wargs),
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                summarize_raw(raw, f"{self.name}: add_frames of {pn:,} frames")
            else:
                wargs["profile"] = str(self.prof_dir / f"{self.name}-ingest.prof")
                run_worker(wargs)
                summarize_profile(self.prof_dir / f"{self.name}-ingest.prof")
        return out

    # -- (b): children

    def build_chain(
        self, n: int, dataset_id: str, root_id: str, depth: int, label: str, profile_last: bool = False
    ) -> dict[str, Any]:
        counting = stores.CountingStore(self.store)
        faulty = FaultyStore(counting)  # fail_at=None: counts requests, logs (op, key)
        client = Client(faulty)
        alive = list(range(n))
        next_index = n
        k = max(1, n // 100)
        parent = root_id
        children = []
        for d in range(1, depth + 1):
            rng = random.Random(self.seed * 7919 + d)
            deleted = rng.sample(alive, k)
            dset = set(deleted)
            rest = [i for i in alive if i not in dset]
            updated = rng.sample(rest, k)
            added = list(range(next_index, next_index + k))
            next_index += k
            add_dicts = [synth.make_frame(i, self.seed) for i in added]
            upd_dicts = [synth.make_frame(i, self.seed, variant=d) for i in updated]
            del_ids = [synth.frame_id(i, self.seed) for i in deleted]
            delta_frames = parquet_bytes(pa.Table.from_pylist(add_dicts + upd_dicts))
            delta_deletes = parquet_bytes(pa.table({"id": pa.array(del_ids, pa.string())}))
            delta = len(delta_frames) + len(delta_deletes)

            def make_child(parent: str = parent, d: int = d) -> DatasetVersion:
                return DatasetVersion.create_version(
                    dataset_id=dataset_id,
                    version_name=f"{label}-d{d:02d}",
                    parent_version_ids=[parent],
                    client=client,
                )

            def edit(
                child: DatasetVersion,
                add_dicts: list[Any] = add_dicts,
                upd_dicts: list[Any] = upd_dicts,
                del_ids: list[str] = del_ids,
            ) -> dict[str, float]:
                t: dict[str, float] = {}
                t["add"], failed = timed(lambda: child.add_frames(add_dicts))
                assert not failed, failed[:2]
                t["update"], failed = timed(lambda: child.update_frames(upd_dicts))
                assert not failed, failed[:2]
                t["delete"], _ = timed(lambda: child.delete_frames(del_ids))
                return t

            counting.reset()
            faulty.count, faulty.log = 0, []
            t_create, child = timed(make_child)
            times = edit(child)
            times["create"] = t_create
            edits = counting.snapshot()
            edit_requests = faulty.count
            times["publish"], _ = timed(child.publish_version)
            total = counting.snapshot()
            by_kind: dict[str, int] = {}
            for key, size in total["puts"]:
                kind = stores.key_kind(key)
                by_kind[kind] = by_kind.get(kind, 0) + size
            children.append(
                {
                    "depth": d,
                    "version_id": child.id,
                    "frames_expected": len(rest) + k,
                    "delta_frames": 2 * k,
                    "delta_deleted": k,
                    "delta_parquet_bytes": delta,
                    "bytes_written": total["bytes_written"],
                    "bytes_written_edits_only": edits["bytes_written"],
                    "puts": total["ops"].get("put", 0),
                    "requests": faulty.count,
                    "requests_edits_only": edit_requests,
                    "ops": total["ops"],
                    "bytes_read": total["bytes_read"],
                    "written_by_kind": by_kind,
                    "seconds": times,
                    "segments_in_manifest": len(client.frames.refs(child._entry)),
                }
            )
            c = children[-1]
            log(
                f"{self.name}: {label} child d={d}: wrote {c['bytes_written'] / KB:.1f} KB "
                f"in {c['puts']} PUTs "
                f"({ {k_: round(v / KB, 1) for k_, v in by_kind.items()} } KB), "
                f"{c['requests']} requests; delta {delta / KB:.1f} KB; "
                f"segments {c['segments_in_manifest']}; "
                f"{sum(times.values()):.1f}s ({ {k_: round(v, 2) for k_, v in times.items()} })"
            )
            if profile_last and d == depth and self.prof_dir is not None:
                extra_n = [0]

                def again(parent: str = child.id, extra_n: list[int] = extra_n) -> None:
                    extra_n[0] += 1
                    extra = DatasetVersion.create_version(
                        dataset_id=dataset_id,
                        version_name=f"{label}-prof{extra_n[0]}",
                        parent_version_ids=[parent],
                        client=client,
                    )
                    edit(extra)
                    extra.publish_version()

                log(f"{self.name}: profiling one more child (not timed)")
                profile_call(self.prof_dir, f"{self.name}-child", again, min_seconds=0)
            alive = rest + added
            parent = child.id
        return {"children": children, "alive": alive}

    # -- (c): reads

    def reads(self, dataset_id: str, chain: list[dict[str, Any]], reps: int) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        depths = [d for d in READ_DEPTHS if d <= len(chain)] or [len(chain)]
        if len(chain) not in depths:
            depths.append(len(chain))
        for depth in depths:
            child = chain[depth - 1]
            vid = child["version_id"]
            log(f"{self.name}: read depth {depth}: effective table vs one Parquet file")
            table = self.version(Client(self.store), dataset_id, vid).get_frames_table()
            assert table.num_rows == child["frames_expected"], (table.num_rows, child["frames_expected"])
            key = f"bench/read-baseline-d{depth:02d}.parquet"
            data = parquet_bytes(table)
            self.store.put(key, data)
            del table
            ours_t, base_t = [], []
            for _ in range(reps):
                client = Client(self.store)
                v = self.version(client, dataset_id, vid)
                t, tbl = timed(v.get_frames_table)
                ours_t.append(t)
                assert tbl.num_rows == child["frames_expected"]
                del tbl

                def baseline(key: str = key) -> pa.Table:
                    raw, _ = self.store.get(key)
                    return pq.read_table(pa.BufferReader(raw))

                t, tbl = timed(baseline)
                base_t.append(t)
                assert tbl.num_rows == child["frames_expected"]
                del tbl
            counting = stores.CountingStore(self.store)
            self.version(Client(counting), dataset_id, vid)
            counting.reset()
            self.version(Client(counting), dataset_id, vid).get_frames_table()
            snap = counting.snapshot()
            out[depth] = {
                "ours_seconds": statistics.median(ours_t),
                "baseline_seconds": statistics.median(base_t),
                "ours_all": ours_t,
                "baseline_all": base_t,
                "requests": snap["requests"],
                "bytes_read": snap["bytes_read"],
                "baseline_bytes": len(data),
                "rows": child["frames_expected"],
            }
            r = out[depth]
            log(
                f"{self.name}:   ours {r['ours_seconds']:.3f}s ({r['requests']} requests, "
                f"{r['bytes_read'] / MB:.1f} MB) vs baseline {r['baseline_seconds']:.3f}s "
                f"(1 GET, {len(data) / MB:.1f} MB)"
            )
            if depth == depths[-1]:

                def read_again(vid: str = vid) -> None:
                    self.version(Client(self.store), dataset_id, vid).get_frames_table()

                profile_call(self.prof_dir, f"{self.name}-read-d{depth}", read_again)
        return out

    # -- (d): point look-ups

    def lookups(self, dataset_id: str, vid: str, alive: list[int], count: int) -> dict[str, Any]:
        rng = random.Random(self.seed + 4242)
        picks = rng.sample(alive, 2 * count + 1)
        cold_ids = [synth.frame_id(i, self.seed) for i in picks[:count]]
        warm_ids = [synth.frame_id(i, self.seed) for i in picks[count : 2 * count]]
        warmup = synth.frame_id(picks[-1], self.seed)
        log(f"{self.name}: get_single_frame at the deepest version ({count} cold, {count} warm)")
        cold = []
        for fid in cold_ids:
            v = self.version(Client(self.store), dataset_id, vid)
            t, frame = timed(lambda v=v, fid=fid: v.get_single_frame(fid))
            assert frame.id == fid
            cold.append(t)
        client = Client(self.store)
        v = self.version(client, dataset_id, vid)
        v.get_single_frame(warmup)
        warm = []
        for fid in warm_ids:
            t, frame = timed(lambda fid=fid: v.get_single_frame(fid))
            assert frame.id == fid
            warm.append(t)
        counting = stores.CountingStore(self.store)
        vc = self.version(Client(counting), dataset_id, vid)
        counting.reset()
        vc.get_single_frame(cold_ids[0])
        cold_snap = counting.snapshot()
        counting.reset()
        vc.get_single_frame(warm_ids[0])
        warm_snap = counting.snapshot()
        profile_call(
            self.prof_dir,
            f"{self.name}-lookup-cold",
            lambda: self.version(Client(self.store), dataset_id, vid).get_single_frame(cold_ids[1]),
        )
        return {
            "cold_seconds": statistics.median(cold),
            "warm_seconds": statistics.median(warm),
            "cold_all": cold,
            "warm_all": warm,
            "cold_requests": cold_snap["requests"],
            "cold_bytes_read": cold_snap["bytes_read"],
            "warm_requests": warm_snap["requests"],
            "warm_bytes_read": warm_snap["bytes_read"],
        }

    # -- information: a simple query vs DuckDB

    def query(self, dataset_id: str, root_id: str, baseline_key: str, reps: int) -> dict[str, Any]:
        """(f): frames with >= 1 ROI labelled QUERY_LABEL and meta.city = QUERY_CITY, as a list of ids."""
        import duckdb
        import pyarrow.dataset as pads

        from hds_s3.query.lucene import match_ids

        log(f"{self.name}: (f) label {QUERY_LABEL!r} AND meta.city {QUERY_CITY!r}: ours, pyarrow, DuckDB")
        client = Client(self.store)

        def ours() -> tuple[float, list[str]]:
            t0 = time.perf_counter()
            version = self.version(client, dataset_id, root_id)
            ids = match_ids(version, f'meta.city:"{QUERY_CITY}"', roi_query=QUERY_LABEL)
            return time.perf_counter() - t0, ids.to_pylist()

        path = stores.local_path(self.spec, baseline_key)
        tmpdir = Path(tempfile.mkdtemp(prefix="hds-bench-q-"))

        def local_file() -> Path:
            if path is not None:
                return path
            raw, _ = self.store.get(baseline_key)  # S3: one GET (neither baseline reads S3 natively here)
            file = tmpdir / "q.parquet"
            file.write_bytes(raw)
            return file

        def by_hand() -> tuple[float, list[str]]:
            t0 = time.perf_counter()
            data = pads.dataset(str(local_file()), format="parquet")
            tbl = data.to_table(columns=["id", "rois"], filter=pc.field("meta", "city") == QUERY_CITY)
            labels = pc.list_flatten(pc.struct_field(pc.list_flatten(tbl.column("rois")), "labels"))
            roi_of_label = pc.list_parent_indices(
                pc.struct_field(pc.list_flatten(tbl.column("rois")), "labels")
            )
            frame_of_roi = pc.list_parent_indices(tbl.column("rois"))
            hit = pc.equal(labels, QUERY_LABEL)
            rows = pc.unique(pc.take(frame_of_roi, pc.filter(roi_of_label, hit)))
            return time.perf_counter() - t0, tbl.column("id").take(rows).to_pylist()

        def duck() -> tuple[float, list[str]]:
            t0 = time.perf_counter()
            con = duckdb.connect()
            got = con.execute(
                "SELECT id FROM read_parquet(?) WHERE meta.city = ? AND "
                "len(list_filter(rois, lambda r: list_contains(r.labels, ?))) > 0",
                [str(local_file()), QUERY_CITY, QUERY_LABEL],
            ).fetchall()
            con.close()
            return time.perf_counter() - t0, [g[0] for g in got]

        times: dict[str, list[float]] = {"ours": [], "pyarrow": [], "duckdb": []}
        found: dict[str, list[str]] = {}
        for _ in range(reps):
            for name, fn in (("ours", ours), ("pyarrow", by_hand), ("duckdb", duck)):
                t, ids = fn()
                times[name].append(t)
                found[name] = sorted(ids)
        shutil.rmtree(tmpdir, ignore_errors=True)
        assert found["ours"] == found["pyarrow"] == found["duckdb"], {k: len(v) for k, v in found.items()}
        return {
            "ours_seconds": statistics.median(times["ours"]),
            "pyarrow_seconds": statistics.median(times["pyarrow"]),
            "duckdb_seconds": statistics.median(times["duckdb"]),
            "count": len(found["ours"]),
            "all": times,
        }

    # -- everything

    def run(self) -> dict[str, Any]:
        o = self.opts
        n = o.frames
        small = max(100, o.small_frames or n // 10)
        t_start = time.perf_counter()

        ing = self.ingest(n, "bench-big", timed_baseline=True)
        self.results["ingest"] = ing
        big_id, root_id = ing["ours"]["dataset_id"], ing["ours"]["version_id"]

        ing_small = self.ingest(small, "bench-small", timed_baseline=False)
        self.results["ingest_small"] = ing_small
        small_chain = self.build_chain(
            small, ing_small["ours"]["dataset_id"], ing_small["ours"]["version_id"], 1, "small"
        )
        self.results["child_small"] = small_chain["children"]

        chain = self.build_chain(n, big_id, root_id, o.depth, "big", profile_last=True)
        self.results["chain"] = chain["children"]

        self.results["reads"] = self.reads(big_id, chain["children"], o.reps)
        deepest = chain["children"][-1]["version_id"]
        self.results["lookups"] = self.lookups(big_id, deepest, chain["alive"], o.lookups)
        self.results["query"] = self.query(big_id, root_id, ing["baseline_key"], o.reps)
        self.results["seconds"] = time.perf_counter() - t_start
        self.results["rows"] = make_rows(self.results, n, small)
        return self.results


def make_rows(r: dict[str, Any], n: int, small: int) -> list[dict[str, Any]]:
    """The printed table of one store, from its results (also works on results read back from JSON)."""
    rows: list[dict[str, Any]] = []

    def row(
        figure: str, ours: Any, base: Any, ratio: float | None, target: str, ok: bool | None, unit: str = ""
    ) -> None:
        rows.append(
            {
                "figure": figure,
                "ours": ours,
                "baseline": base,
                "ratio": ratio,
                "target": target,
                "pass": ok,
                "unit": unit,
            }
        )

    ours, base = r["ingest"]["ours"], r["ingest"]["baseline"]
    a_ours = ours["seconds"] - ours["gen_seconds"]
    a_base = base["seconds"] - base["gen_seconds"]
    row(
        f"(a) ingest {n:,} frames (net of generator)",
        a_ours,
        a_base,
        a_ours / a_base,
        "<= 1.5x",
        a_ours / a_base <= 1.5,
        "s",
    )
    row(
        "    same, end to end with the generator (info)",
        ours["seconds"],
        base["seconds"],
        ours["seconds"] / base["seconds"],
        "info",
        None,
        "s",
    )
    if "cpu_seconds" in ours and "cpu_seconds" in base:
        row(
            "    same, CPU time of the process (info)",
            ours["cpu_seconds"],
            base["cpu_seconds"],
            ours["cpu_seconds"] / base["cpu_seconds"],
            "info",
            None,
            "s",
        )

    def limit(c: dict[str, Any]) -> int:
        return 2 * c["delta_parquet_bytes"] + 16 * KB

    def child_row(tag: str, c: dict[str, Any]) -> None:
        row(
            f"(b) child bytes written, {tag}",
            c["bytes_written"],
            c["delta_parquet_bytes"],
            c["bytes_written"] / c["delta_parquet_bytes"],
            f"<= 2x+16KB = {limit(c) / KB:.0f} KB",
            c["bytes_written"] <= limit(c),
            "B",
        )

    def meta_bytes(c: dict[str, Any]) -> int:
        return sum(v for k, v in c["written_by_kind"].items() if k != "segment")

    c_big, c_small = r["chain"][0], r["child_small"][0]
    child_row(f"N={n:,} d=1", c_big)
    child_row(f"N={small:,} d=1", c_small)
    mb, ms = meta_bytes(c_big), meta_bytes(c_small)
    row(
        "(b) non-segment bytes (docs+manifests), N vs N/10",
        mb,
        ms,
        mb / ms if ms else None,
        "|diff| <= 16 KB",
        abs(mb - ms) <= 16 * KB,
        "B",
    )
    row(
        "(b) PUTs/requests of the child, N vs N/10",
        f"{c_big['puts']}/{c_big['requests']}",
        f"{c_small['puts']}/{c_small['requests']}",
        None,
        "same PUTs",
        c_big["puts"] == c_small["puts"],
        "",
    )
    # A publish that compacts (fewer segments than the child before it) rewrites the live frames
    # once every few levels: shown apart, with what it costs spread over the chain.
    chain = r["chain"]
    compacting = [
        c
        for i, c in enumerate(chain)
        if i and c["segments_in_manifest"] < chain[i - 1]["segments_in_manifest"]
    ]
    plain = [c for c in chain if c not in compacting] or chain
    worst = max(plain, key=lambda c: c["bytes_written"] / limit(c))
    child_row(f"worst child of the chain that does not compact (d={worst['depth']})", worst)
    if compacting:
        big = max(compacting, key=lambda c: c["bytes_written"])
        row(
            f"    info: a publish that compacts (d={', '.join(str(c['depth']) for c in compacting)})",
            big["bytes_written"],
            big["delta_parquet_bytes"],
            big["bytes_written"] / big["delta_parquet_bytes"],
            "info",
            None,
            "B",
        )
        spread = sum(c["bytes_written"] for c in chain) / len(chain)
        delta = sum(c["delta_parquet_bytes"] for c in chain) / len(chain)
        row(
            "    info: bytes per child over the chain, compactions included",
            spread,
            delta,
            spread / delta,
            "info",
            None,
            "B",
        )
    last = r["chain"][-1]
    row(f"    info: non-segment bytes at d={last['depth']}", meta_bytes(last), None, None, "info", None, "B")
    reads = {int(k): v for k, v in r["reads"].items()}
    for depth in sorted(reads):
        x = reads[depth]
        ratio = x["ours_seconds"] / x["baseline_seconds"]
        row(
            f"(c) read effective table, depth {depth} ({x['requests']} req)",
            x["ours_seconds"],
            x["baseline_seconds"],
            ratio,
            "<= 1.3x",
            ratio <= 1.3,
            "s",
        )
    deepest = max(reads)
    ref = reads[deepest]["ours_seconds"]
    lk = r["lookups"]
    for kind in ("cold", "warm"):
        pct = 100 * lk[f"{kind}_seconds"] / ref
        row(
            f"(d) get_single_frame d={deepest} {kind} ({lk[f'{kind}_requests']} req, "
            f"{lk[f'{kind}_bytes_read'] / MB:.1f} MB), % of (c)",
            lk[f"{kind}_seconds"],
            ref,
            pct / 100,
            "<= 5%",
            pct <= 5,
            "s",
        )
    row(
        "(e) ingest peak RSS (vs baseline process)",
        ours["rss_peak"],
        base["rss_peak"],
        ours["rss_peak"] / base["rss_peak"],
        "<= 1.5 GB",
        ours["rss_peak"] <= 1.5 * GB,
        "B",
    )
    if "rss_peak_with_publish" in ours:
        row(
            "    info: peak RSS incl. publish of the root",
            ours["rss_peak_with_publish"],
            None,
            None,
            "info",
            None,
            "B",
        )
    q = r["query"]
    what = f"label {QUERY_LABEL} AND meta.city {QUERY_CITY}: {q['count']:,} frames"
    if "pyarrow_seconds" in q:
        row(
            f"(f) query {what}, vs pyarrow",
            q["ours_seconds"],
            q["pyarrow_seconds"],
            q["ours_seconds"] / q["pyarrow_seconds"],
            "<= 1.0x",
            q["ours_seconds"] <= q["pyarrow_seconds"],
            "s",
        )
    row(
        "(f) same query vs DuckDB",
        q["ours_seconds"],
        q["duckdb_seconds"],
        q["ours_seconds"] / q["duckdb_seconds"],
        "info",
        None,
        "s",
    )
    if "loader" in r:
        g = r["loader"]
        row(
            f"(g) loader, {g['workers']} workers, {g['source_bytes'] // KB} KB sources (frames/s)",
            g["ours_fps"],
            g["baseline_fps"],
            g["ratio"],
            ">= 0.9x",
            g["ratio"] >= 0.9,
            "fps",
        )
    row("info: publish of the root (stats)", ours["publish_seconds"], None, None, "info", None, "s")
    pubs = [c["seconds"]["publish"] for c in r["chain"]]
    steps = [sum(c["seconds"].values()) for c in r["chain"]]
    row(
        "info: one child, create..publish (median)",
        statistics.median(steps),
        None,
        None,
        f"publish alone {fmt(statistics.median(pubs), 's')}",
        None,
        "s",
    )
    return rows


# ---------------------------------------------------------------------------------------------- output


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "B":
        if value >= GB:
            return f"{value / GB:.2f} GB"
        if value >= MB:
            return f"{value / MB:.1f} MB"
        return f"{value / KB:.1f} KB"
    if unit == "fps":
        return f"{value:,.0f}/s"
    return str(value)


def print_table(name: str, rows: list[dict[str, Any]], seconds: float) -> None:
    headers = ["figure", "ours", "baseline", "ratio", "target", "result"]
    lines = []
    for r in rows:
        ratio = r["ratio"]
        if ratio is None:
            ratio_s = "-"
        elif "% of" in r["figure"]:
            ratio_s = f"{ratio * 100:.1f}%"
        else:
            ratio_s = f"{ratio:.2f}x"
        result = "info" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        lines.append(
            [
                r["figure"],
                fmt(r["ours"], r["unit"]),
                fmt(r["baseline"], r["unit"]),
                ratio_s,
                r["target"],
                result,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    print(f"\n== store: {name}   (run took {seconds:.0f} s)")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    sys.stdout.flush()


def source_fingerprint() -> dict[str, str]:
    """Where hds_s3 was imported from and a hash of its sources (the code is edited concurrently)."""
    import hashlib

    import hds_s3

    root = Path(hds_s3.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return {"path": str(root), "sha256": digest.hexdigest()}


def main() -> int:
    if "--peers" in sys.argv[1:]:
        import peers

        return peers.main([a for a in sys.argv[1:] if a != "--peers"])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=1_000_000, help="frames in the dataset (default 1,000,000)")
    p.add_argument("--stores", default="local,moto_server", help="comma list of: local, moto_server")
    p.add_argument("--depth", type=int, default=20, help="length of the chain of children (default 20)")
    p.add_argument("--small-frames", type=int, default=0, help="second N for (b) (default frames/10)")
    p.add_argument("--reps", type=int, default=5, help="repetitions of each read (median; default 5)")
    p.add_argument("--lookups", type=int, default=15, help="ids looked up cold and warm (default 15)")
    p.add_argument("--segment-rows", type=int, default=SEGMENT_ROWS, help="add_frames segment_rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--profile", type=Path, help="save cProfile profiles of extra, untimed runs here")
    p.add_argument("--workdir", type=Path, help="parent folder of the local store (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the local store folder")
    p.add_argument("--report", type=Path, help="only re-print the tables of a JSON written by --json")
    opts = p.parse_args()
    if opts.report:
        saved = json.loads(opts.report.read_text())
        n = int(saved["args"]["frames"])
        small = max(100, int(saved["args"].get("small_frames") or 0) or n // 10)
        for name, res in saved["stores"].items():
            print_table(name, make_rows(res, n, small), res["seconds"])
        return 0

    names = [s.strip() for s in opts.stores.split(",") if s.strip()]
    for s in names:
        if s not in ("local", "moto_server"):
            p.error(f"unknown store {s!r}; use local and/or moto_server")
    if opts.profile:
        opts.profile.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / GB, 1),
            "pyarrow": pa.__version__,
        },
        "hds_s3": source_fingerprint(),
        "stores": {},
    }
    log(f"hds_s3 from {report['hds_s3']['path']} (sources sha256 {report['hds_s3']['sha256'][:12]})")
    tables = []
    for name in names:
        work = Path(tempfile.mkdtemp(prefix="hds-bench-", dir=opts.workdir))
        server = None
        try:
            if name == "local":
                spec = {"kind": "local", "root": str(work / "store")}
            else:
                server = stores.MotoServer()
                spec = {"kind": "s3", "endpoint": server.endpoint, "bucket": "hds-bench", "prefix": "run"}
                stores.open_spec(spec).create_bucket()
            log(f"store {name}: {spec}")
            bench = StoreBench(name, spec, opts, opts.profile)
            res = bench.run()
            if server is not None:
                res["moto_server_rss"] = psutil.Process(server.pid).memory_info().rss
                log(f"{name}: (g) loader throughput vs a plain read loop")
                res["loader"] = run_loader_bench(server.endpoint)
                res["rows"] = make_rows(res, opts.frames, max(100, opts.small_frames or opts.frames // 10))
            report["stores"][name] = res
            tables.append((name, res["rows"], res["seconds"]))
            print_table(name, res["rows"], res["seconds"])
            if opts.json:
                opts.json.write_text(json.dumps(report, indent=1, default=str))
        finally:
            if server is not None:
                server.stop()
            if not opts.keep:
                shutil.rmtree(work, ignore_errors=True)
            else:
                log(f"kept {work}")
    print(
        f"\nhds_s3 bench: N={opts.frames:,}, depth {opts.depth}, seed {opts.seed}, "
        f"{report['machine']['cpus']} CPUs, {report['machine']['memory_gb']} GB"
    )
    for name, rows, seconds in tables:
        print_table(name, rows, seconds)
    if opts.json:
        opts.json.write_text(json.dumps(report, indent=1, default=str))
        log(f"results written to {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

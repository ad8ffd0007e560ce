"""Compact summary of a scripts/gpu_check/run.sh run: step exit codes, then the JSON files' key
figures (standard library only). Usage: python summarize.py OUT_DIR STEPS_TSV"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except Exception as exc:  # noqa: BLE001
        return {"_missing": f"{path.name}: {type(exc).__name__}: {exc}"[:160]}


def num(value, fmt="{:.1f}"):
    return "-" if value is None else fmt.format(value)


def short(text, n=110):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def main(out: Path, steps_tsv: Path) -> None:
    print("=" * 100)
    print("SUMMARY (scripts/gpu_check/run.sh)")
    print(f"{'step':<18}{'rc':>5}{'seconds':>9}  note")
    for line in steps_tsv.read_text().splitlines() if steps_tsv.exists() else []:
        name, rc, seconds = (line.split("\t") + ["", "", ""])[:3]
        notes = {"0": "ok", "-": "", "skip": "SKIPPED (budget)", "124": "TIMEOUT", "137": "KILLED (timeout)"}
        note = notes.get(rc, "FAILED")
        print(f"{name:<18}{rc:>5}{seconds:>9}  {note}")

    gpu = load(out / "gpu.json")
    print(f"\n[gpu_throughput] {gpu.get('_missing') or gpu.get('machine')}")
    if "models" in gpu:
        print(f"{'model':<12}{'dev':<6}{'variant':<8}{'size':>5}{'bs':>4}{'fp32/s':>9}{'amp/s':>9}{'eval/s':>9}"
              f"{'memGB':>7}{'mfu16':>7}  error")
        for r in gpu["models"]:
            mem = r.get("peak_memory_bytes_amp")
            print(f"{r['model']:<12}{str(r.get('device', '-')):<6}{str(r.get('variant', '-')):<8}"
                  f"{str(r.get('input_size', '-')):>5}{str(r.get('batch', '-')):>4}"
                  f"{num(r.get('train_images_per_s_fp32')):>9}{num(r.get('train_images_per_s_amp')):>9}"
                  f"{num(r.get('eval_images_per_s')):>9}{num(mem / 2**30 if mem else None, '{:.2f}'):>7}"
                  f"{num(r.get('mfu_fp16'), '{:.3f}'):>7}  {short(r.get('error') or r.get('skipped') or '', 60)}")

    smoke = load(out / "smoke_on_cuda.json")
    print(f"\n[smoke_on_cuda] {smoke.get('_missing') or ''}")
    if "rows" in smoke:
        print(f"{'model':<12}{'result':<7}{'accelerator':<24}{'maxmemMB':>9}{'img/s':>8}{'steps':>7}  metric / failure")
        for r in smoke["rows"]:
            failure = r.get("failure")
            mem = r.get("cuda_max_memory_allocated")
            metrics = r.get("metrics") or {}
            first = next(iter(metrics.items()), None)
            tail = short(failure["message"]) if failure else (f"{first[0]}={first[1]:.3f}" if first else "no metrics")
            print(f"{r['model']:<12}{'FAIL' if failure else 'ok':<7}{short(r.get('accelerator') or '-', 23):<24}"
                  f"{num(mem / 2**20 if mem else None, '{:.0f}'):>9}{num(r.get('throughput')):>8}"
                  f"{str(r.get('steps_done', '-')) + '/' + str(r.get('steps_planned', '-')):>7}  {tail}")

    nccl = load(out / "nccl_world1.json")
    print(f"\n[nccl_world1] {nccl.get('_missing') or ''}")
    if "_missing" not in nccl:
        failure = nccl.get("failure")
        print(f"backend={nccl.get('backend')} nccl={nccl.get('nccl_version')} all_reduce={nccl.get('all_reduce')} "
              f"run_job={'FAIL ' + short(failure['message']) if failure else ('ok' if 'metrics' in nccl else '-')} "
              f"accel={nccl.get('accelerator')} img/s={num(nccl.get('throughput'))} "
              f"error={short(nccl.get('error') or '-')}")
        forced = nccl.get("forced_ddp")
        if forced:
            why = forced.get("error") or (forced.get("failure") or {}).get("message") or ""
            print(f"forced DDP (data_parallel patched on, world 1): {'ok' if forced.get('ok') else 'FAIL'} "
                  f"steps={forced.get('steps_done')} img/s={num(forced.get('throughput'))} {short(why, 200)}")

    precision = load(out / "precision_ab.json")
    print(f"\n[precision_ab] {precision.get('_missing') or ''}")
    if "rows" in precision:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from precision_ab import table  # standard library only, as this script

        print(f"{precision.get('images')} images, hardware={precision.get('hardware')}")
        print(table(precision["rows"]))
    print("=" * 100)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

#!/bin/bash
# Memory of trial processes over a search: RSS of every Ray trial process and system memory in use, every 3 s.
#   bench/trial_memory.sh OUT_DIR [search/run.py options]      (default: the 16-trial default search)
# Ray reuses trial processes (reuse_actors), so a process that grows trial after trial shows here.
dir=$(realpath -m "${1:?usage: bench/trial_memory.sh OUT_DIR [options]}"); shift; root=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
(while true; do echo "T $(date +%s)"; ps -eo pid,rss,args | awk '/ray::ImplicitFunc/ && !/awk/ {print $1, $2}'; free -m | awk '/Mem:/ {print "FREE", $3}'; sleep 3; done > ps.log 2>&1) &
sampler=$!
/usr/bin/time -v "$root/.venv/bin/python" "$root/search/run.py" --num-samples 16 --name mem --storage-path "$dir/res" --tracking-uri "sqlite:///$dir/m.db" "$@" > run.log 2>&1
kill $sampler
python3 - <<'PY'
import collections
rows = collections.defaultdict(list); t=t0=None; used=[]
for line in open("ps.log"):
    if line.startswith("T "): t=int(line.split()[1]); t0=t0 or t; continue
    if line.startswith("FREE"): used.append(int(line.split()[1])); continue
    pid, rss = line.split(); rows[pid].append((t-t0, int(rss)//1024))
for pid, v in rows.items():
    if len(v) > 3: print(f"trial process {pid}: {v[0][1]} MB at {v[0][0]} s, max {max(r for _, r in v)} MB, {v[-1][1]} MB at {v[-1][0]} s")
print(f"system memory in use: {used[0]} MB at start, peak {max(used)} MB, {used[-1]} MB at the end")
PY
grep "Elapsed\|Maximum resident" run.log; echo "failed trials: $(grep -c FAILED run.log)"

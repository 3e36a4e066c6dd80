#!/bin/bash
# usage: run.sh SRC_DIR LABEL RATE DURATION [serve args...]
src=$1; label=$2; rate=$3; dur=$4; shift 4
port=18500
models=$(ls /work/main/runs/repo16 | grep mobilenet | paste -sd,)
cd $src; export XDG_STATE_HOME=/tmp/ab/state-$label
PYTHONPATH=$src/src /work/main/.venv/bin/python -m clockwork.cli.main serve --repository /work/main/runs/repo16 --host 127.0.0.1 --http-port $port --grpc-port 0 --threads 1 --status-interval 0 "$@" > /tmp/ab/serve-$label.log 2>&1 &
pid=$!
for i in $(seq 1 120); do curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:$port/v2/health/ready 2>/dev/null | grep -q 200 && break; sleep 0.5; done
sleep 3
PYTHONPATH=$src/src /work/main/.venv/bin/python -m clockwork.cli.main bench --url http://127.0.0.1:$port --models $models --json --workload poisson --rate 10 --duration 3 --slo-ms 100 --seed 1001 --no-plots --quiet --out /tmp/ab/warm-$label > /dev/null 2>&1
if [ -n "$SPY" ]; then (sleep 2; /work/main/.venv/bin/py-spy record -p $pid -d 12 -r 100 --nonblocking -f raw -o /tmp/ab/spy-$label.txt > /tmp/ab/spy-$label.log 2>&1) & fi
PYTHONPATH=$src/src /work/main/.venv/bin/python -m clockwork.cli.main bench --url http://127.0.0.1:$port --models $models --json --workload poisson --rate $rate --duration $dur --slo-ms 100 --seed 2 --no-plots --quiet --out /tmp/ab/out-$label-$rate > /dev/null 2>&1
python3 -c "
import json; s=json.load(open('/tmp/ab/out-$label-$rate/summary.json'))
print('$label rate $rate:', 'attainment %.2f%%' % (100*s['slo_attainment']), 'goodput %.1f' % s.get('goodput_rps', 0), {k: v for k, v in s.get('refused', {}).items()})
"
for c in $pid $(pgrep -P $pid); do echo "  cpu $(ps -o comm=,cputime= -p $c | tr -s ' ') $(tr '\0' ' ' < /proc/$c/cmdline | cut -c1-80 | sed 's/.*clockwork.cli.main //')"; done
for c in $(pgrep -P $pid); do for g in $(pgrep -P $c); do echo "  cpu(grandchild) $(ps -o cputime= -p $g) $(tr '\0' ' ' < /proc/$g/cmdline | cut -c1-60)"; done; done
kill -INT $pid; wait $pid 2>/dev/null

#!/usr/bin/env bash
# p2bot's GPU check: every command on CUDA in bf16, and the README's GPU table (device, dtype, s/step, tokens/s,
# peak memory for 135M full, 135M LoRA and a 1.7B-shaped LoRA policy, with each generation backend).
#
# It runs with the GPU kit of ../shared/gpu (random-weight stand-ins with the real configs and tokenizers, the
# pure-Python wheels a bare GPU machine lacks): prepare .gpu/ as ../shared/gpu/README.md says, copy this script in
# (`cp launch/gpu_check.sh .gpu/run.sh`), then run `bash .gpu/run.sh` from the checkout root on the GPU machine.
# Results go to $OUT (default ./gpu-out): one log per run and gpu_table.md. Keep the list short: a device call
# has 10 minutes.
set -u
OUT=${OUT:-./gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false P2BOT_CACHE=/tmp/p2c
if [ -d .gpu/whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
python3 -c "import torch,transformers;print(torch.__version__,transformers.__version__,torch.cuda.get_device_name())" || exit 1
[ -f .gpu/mk_models.py ] && python3 .gpu/mk_models.py 2>&1 | tail -2
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$OUT/gpumem.txt" &
SM=$!
ACC="python3 -m accelerate.commands.launch --config_file launch/configs/accelerate/single_gpu.yaml -m launch.cli"
echo "| run | device | dtype | backend | s/step | rollout tokens/s | peak GPU MiB |" > "$OUT/gpu_table.md"
echo "| --- | --- | --- | --- | --- | --- | --- |" >> "$OUT/gpu_table.md"
BATCH="--pairs_per_step 8 --rollouts_per_pair 4 --max_exchanges 2 --min_exchanges 2 --response_length 32"

rl() {  # name backend dtype [p2bot rl options]
  local n=$1 backend=$2 dtype=$3; shift 3
  : > "$OUT/gpumem.txt"
  timeout "${T:-120}" $ACC rl --output_dir "/tmp/$n" --save_steps 0 --receiver_name_or_path /tmp/minilm \
    --sample_log_steps 0 --disable_tqdm true --generation_backend "$backend" --torch_dtype "$dtype" $BATCH "$@" \
    > "$OUT/$n.log" 2>&1
  echo "== $n rc=$?"; tail -1 "$OUT/$n.log"
  python3 - "$n" "$backend" "$dtype" "$OUT" <<'PY'
import json, sys
n, backend, dtype, out = sys.argv[1:]
rows = [json.loads(l) for l in open(f"/tmp/{n}/metrics.jsonl")][1:]  # the first step compiles and warms up
step = sum(r["time/step_s"] for r in rows) / len(rows)
tps = sum(r["selfplay/generated_tokens"] for r in rows) / sum(r["time/rollout_s"] for r in rows)
mem = max((int(x) for x in open(f"{out}/gpumem.txt").read().split() if x.strip().isdigit()), default=0)
tps = f"{tps:.0f}"
with open(f"{out}/gpu_table.md", "a") as f:
    f.write(f"| {n} | cuda | {dtype} | {backend} | {step:.2f} | {tps} | {mem} |\n")
PY
}
rl smol_full_hf hf bfloat16 --model_name_or_path /tmp/smol --max_steps 4 --num_ppo_epochs 2 --gradient_accumulation_steps 4
T=100 rl smol_full_continuous continuous bfloat16 --model_name_or_path /tmp/smol --max_steps 4 --num_ppo_epochs 2 --gradient_accumulation_steps 4
rl smol_full_static static bfloat16 --model_name_or_path /tmp/smol --max_steps 4 --num_ppo_epochs 2 --gradient_accumulation_steps 4
rl smol_lora_hf hf bfloat16 --model_name_or_path /tmp/smol --use_peft true --max_steps 4 --num_ppo_epochs 2 --gradient_accumulation_steps 4
T=180 rl smol17_lora_hf hf bfloat16 --model_name_or_path /tmp/smol17 --use_peft true --max_steps 3 --num_ppo_epochs 1 \
  --gradient_accumulation_steps 4 --gradient_checkpointing true
: > "$OUT/gpumem.txt"
s=$(date +%s)
timeout 120 python3 -m launch.cli eval --selfplay --model /tmp/smol --judge_lm /tmp/smol --judge_encoder /tmp/minilm \
  --pairs 32 --dialogues_per_pair 2 --exchanges 2 --device cuda --torch_dtype bfloat16 --output_dir /tmp/ev > "$OUT/eval.log" 2>&1
echo "== eval --selfplay rc=$? wall=$(( $(date +%s) - s ))s peak GPU MiB=$(sort -n "$OUT/gpumem.txt" | tail -1)"
kill $SM
cat "$OUT/gpu_table.md"

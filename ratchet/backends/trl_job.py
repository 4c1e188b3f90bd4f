"""One ``trl`` training job, run in its job folder (``python -m ratchet.backends.trl_job DIR``).

:mod:`ratchet.backends.trl` prepares the folder (``spec.json``: strategy, dataset kind, base
model folder and resolved hyperparameters; ``train.parquet``: the dataset version's table,
copied out of the store) and runs this module in a subprocess, or calls :func:`run_job` in
process. Everything this writes is in the folder, so a poll from any process reads it without
blocking and a flow resumed after a kill finds it:

``progress.jsonl``  one JSON line per logged step: ``{"at", "step", "max_steps", "metrics"}``
                    (train ``loss``, validation ``eval_loss``, learning rate...; numbers only)
``result.json``     written last: ``{"state": completed|failed|cancelled, "metrics", "error"}``
``model/``          the LoRA adapter (or the merged model) and the tokenizer

Examples are formatted through the base tokenizer's chat template: ``sft_examples`` messages
-> ``text``; ``preference_pairs`` -> ``prompt`` (with the generation prompt), ``chosen``,
``rejected``; ``binary_feedback`` -> ``prompt``, ``completion``, ``label`` (KTO). Errors keep the
exception's type and message, never an example.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SPEC_FILE = "spec.json"
PROGRESS_FILE = "progress.jsonl"
RESULT_FILE = "result.json"
CANCEL_FILE = "cancel.request"
MODEL_DIR = "model"
TRAIN_FILE = "train.parquet"


def now() -> str:
    return datetime.now(UTC).isoformat()


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    """Atomic write (rename), so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def chat_messages(messages: Sequence[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    """Plain ``{role, content}`` messages for a chat template (tool calls as their JSON)."""
    out: list[dict[str, str]] = []
    for m in messages or []:
        content = m.get("content") or ""
        calls = m.get("tool_calls")
        if calls:
            content = (content + "\n" if content else "") + json.dumps(calls, sort_keys=True)
        out.append({"role": str(m.get("role") or "user"), "content": str(content)})
    return out


def _template(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    text: str = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    return text


def build_rows(kind: str, rows: list[dict[str, Any]], tokenizer: Any) -> dict[str, list[Any]]:
    """Columns TRL trains on, in its standard (already templated) format."""
    if kind == "sft_examples":
        texts = [
            _template(tokenizer, chat_messages(r["messages"]), False)
            for r in rows
            if r.get("messages")
        ]
        return {"text": texts}
    if kind == "preference_pairs":
        return {
            "prompt": [_template(tokenizer, chat_messages(r["input"]), True) for r in rows],
            "chosen": [str(r["chosen"]) for r in rows],
            "rejected": [str(r["rejected"]) for r in rows],
        }
    if kind == "binary_feedback":
        return {
            "prompt": [_template(tokenizer, chat_messages(r["prompt"]), True) for r in rows],
            "completion": [str(r["completion"]) for r in rows],
            "label": [bool(r["label"]) for r in rows],
        }
    raise ValueError(f"trl: dataset kind {kind} is not trainable")


def load_model(folder: Path) -> Any:
    """A causal LM from a folder: a PEFT adapter (merged into its base) or a plain model."""
    if (folder / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(str(folder)).merge_and_unload()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder))


def _splits(job: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(job / TRAIN_FILE).to_pylist()
    train = [r for r in rows if r.get("split", "train") == "train"]
    validation = [r for r in rows if r.get("split") == "validation"]
    return train, validation


def _trainer(
    spec: Mapping[str, Any],
    model: Any,
    tokenizer: Any,
    train: Any,
    validation: Any,
    job: Path,
    callback: Any,
) -> Any:
    import torch
    from peft import LoraConfig

    p = spec["hyper"]
    common: dict[str, Any] = {
        "output_dir": str(job / "checkpoints"),
        "learning_rate": p["learning_rate"],
        "num_train_epochs": p["epochs"],
        "max_steps": p["max_steps"],
        "per_device_train_batch_size": p["batch_size"],
        "per_device_eval_batch_size": p["batch_size"],
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": not torch.cuda.is_available(),
        "seed": p["seed"],
        "disable_tqdm": True,
        "max_length": p["max_length"],
        "gradient_checkpointing": p.get("gradient_checkpointing", True),
    }
    if validation is not None:
        common |= {"eval_strategy": "steps", "eval_steps": p["eval_steps"]}
    peft_config = LoraConfig(
        r=p["lora_r"],
        lora_alpha=p["lora_alpha"],
        lora_dropout=p["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    strategy = spec["strategy"]
    kwargs = {
        "model": model,
        "train_dataset": train,
        "eval_dataset": validation,
        "processing_class": tokenizer,
        "peft_config": peft_config,
        "callbacks": [callback],
    }
    if strategy == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer(args=SFTConfig(**common, dataset_text_field="text"), **kwargs)
    if strategy == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer(args=DPOConfig(**common, beta=p["beta"]), **kwargs)
    if strategy == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer(args=KTOConfig(**common, beta=p["beta"]), **kwargs)
    raise ValueError(f"trl: strategy {strategy} is not trained here")


def run_job(job: Path) -> dict[str, Any]:
    """Train, save the model under ``model/``, write ``result.json``; return the result."""
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    try:
        result = _run(job, started_wall, started_cpu)
    except Exception as exc:  # the job's outcome, for poll: type and message, no example
        result = {
            "state": "failed",
            "error": f"{type(exc).__name__}: {str(exc)[:1000]}",
            "metrics": {},
            "finished_at": now(),
        }
    write_json(job / RESULT_FILE, result)
    return result


def _run(job: Path, started_wall: float, started_cpu: float) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    spec = json.loads((job / SPEC_FILE).read_text(encoding="utf-8"))
    progress = job / PROGRESS_FILE

    class Progress(TrainerCallback):
        """Appends each log line's numbers to progress.jsonl; stops on a cancel request."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            metrics = {
                k: float(v)
                for k, v in (logs or {}).items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            line = {
                "at": now(),
                "step": int(state.global_step),
                "max_steps": int(state.max_steps),
                "metrics": metrics,
            }
            with progress.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line, sort_keys=True) + "\n")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if (job / CANCEL_FILE).exists():
                control.should_training_stop = True

    torch.manual_seed(spec["hyper"]["seed"])
    if spec["hyper"].get("cpu_threads") and not torch.cuda.is_available():
        torch.set_num_threads(int(spec["hyper"]["cpu_threads"]))
    base = Path(spec["base_model"])
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("trl: the base model's tokenizer has no chat_template")
    model = load_model(base)
    train_rows, validation_rows = _splits(job)
    train = Dataset.from_dict(build_rows(spec["kind"], train_rows, tokenizer))
    if len(train) == 0:
        raise ValueError("trl: the dataset version has no train-split example")
    validation = (
        Dataset.from_dict(build_rows(spec["kind"], validation_rows, tokenizer))
        if validation_rows
        else None
    )
    trainer = _trainer(spec, model, tokenizer, train, validation, job, Progress())
    output = trainer.train()
    if (job / CANCEL_FILE).exists():
        return {
            "state": "cancelled",
            "error": "cancelled by request",
            "metrics": {},
            "finished_at": now(),
        }
    out = job / MODEL_DIR
    model = trainer.model
    merged = bool(spec["hyper"]["merge"])
    if merged:
        model = model.merge_and_unload()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    wall = time.perf_counter() - started_wall
    gpu = torch.cuda.is_available()
    metrics = {
        k: float(v)
        for k, v in (output.metrics or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    metrics |= {
        "steps": float(output.global_step),
        "train_examples": float(len(train)),
        "validation_examples": float(len(validation) if validation is not None else 0),
        "cpu_seconds": 0.0 if gpu else time.process_time() - started_cpu,
        "gpu_seconds": wall * torch.cuda.device_count() if gpu else 0.0,
        "wall_seconds": wall,
    }
    return {
        "state": "completed",
        "error": None,
        "metrics": metrics,
        "merged": merged,
        "finished_at": now(),
    }


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ratchet.backends.trl_job JOB_FOLDER", file=sys.stderr)
        return 2
    result = run_job(Path(argv[0]))
    return 0 if result["state"] == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from rait.chat import IGNORE_INDEX, encode_system, encode_turns
from rait.cli import app
from rait.errors import DataError, RaitError
from rait.models import load_model
from rait.records import Mention, Record
from rait.templates import build_conversation
from rait.testing import save_tiny_model, tiny_model_and_tokenizer
from rait.training import (
    CONFIG_FILE,
    LOG_FILE,
    LOSS_PLOT,
    SUMMARY_FILE,
    PaddingCollator,
    TrainConfig,
    encode_conversations,
    load_conversations,
    merge_adapter,
    read_validation,
    resolve_config,
    split_validation,
    train,
)
from rait.training.config import LORA_TARGETS
from rait.training.trainer import _trainer_class

RECORDS = [
    (
        "en",
        Record(
            "a", "Barack Obama was born in Honolulu.", [Mention("Barack Obama", "person")], ["person", "date"]
        ),
    ),
    ("en", Record("b", "Apple Inc. is in Cupertino.", [Mention("Apple Inc.", "organization")])),
    ("zh", Record("c", "马云在杭州创立了阿里巴巴。", [Mention("马云", "人名"), Mention("杭州", "地名")])),
    ("en", Record("d", "Marie Curie studied in Paris.", [Mention("Paris", "location")])),
]


def conversations():
    return [build_conversation(r, lang=lang) for lang, r in RECORDS]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    save_tiny_model(root / "model")
    write_jsonl(root / "conv.jsonl", [c.to_sharegpt() for c in conversations()])
    return root


def config(workdir: Path, out: str, **overrides) -> TrainConfig:
    values = dict(
        data=[str(workdir / "conv.jsonl")],
        output_dir=str(workdir / out),
        model=str(workdir / "model"),
        max_steps=6,
        batch_size=2,
        per_device_batch_size=1,
        learning_rate=2e-2,
        warmup_ratio=0.0,
        save_steps=3,
        logging_steps=1,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.1,
        precision="fp32",  # the same numbers on every CPU; bf16 has its own tests
    )
    return TrainConfig(**(values | overrides))


def test_collated_labels_cover_exactly_the_assistant_spans():
    _, tok = tiny_model_and_tokenizer()
    convs = conversations()
    data = encode_conversations(tok, convs, max_length=4096)
    batch = PaddingCollator(tok.pad_token_id)(data.examples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    for row, conv in enumerate(convs):
        n = len(encode_turns(tok, conv.turns))
        assert batch["attention_mask"][row].sum() == n
        assert batch["input_ids"][row, :n].tolist() == encode_turns(tok, conv.turns)
        assert (batch["input_ids"][row, n:] == tok.pad_token_id).all()
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        labelled = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX].tolist()
        assert tok.decode(labelled) == "".join(
            t.content + "<|im_end|>" for t in conv.turns if t.role == "assistant"
        )
        assert "Text:" not in tok.decode(labelled) and "文本：" not in tok.decode(labelled)


def test_length_rule_counts():
    _, tok = tiny_model_and_tokenizer()
    convs = conversations()
    lengths = sorted(len(encode_turns(tok, c.turns)) for c in convs)
    limit = lengths[1]  # two conversations are longer than this
    truncated = encode_conversations(tok, convs, limit, "truncate")
    assert truncated.n_truncated == 2 and len(truncated.examples) == 4
    assert max(len(e["input_ids"]) for e in truncated.examples) == limit
    dropped = encode_conversations(tok, convs, limit, "drop")
    assert dropped.n_dropped_long == 2 and len(dropped.examples) == 2
    tiny = encode_conversations(tok, convs, 5, "truncate")  # no assistant token within 5 tokens
    assert tiny.n_dropped_unlabelled == 4 and tiny.examples == []


def test_training_run_outputs_and_loss_decreases(workdir):
    out = train(config(workdir, "run", max_steps=12, batch_size=4, per_device_batch_size=2, lora_dropout=0.0))
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        CONFIG_FILE,
        LOSS_PLOT,
    ):
        assert (out / name).is_file(), name
    losses = [
        row["loss"] for row in map(json.loads, (out / LOG_FILE).read_text().splitlines()) if "loss" in row
    ]
    assert len(losses) == 12
    assert losses[-1] < losses[0] - 0.2
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["optimizer_steps"] == 12 and summary["gradient_accumulation_steps"] == 2
    assert summary["data"]["examples"] == 4
    assert summary["validation"] is None and read_validation(out) is None
    # the saved config is complete and reproduces the run's config
    assert resolve_config(out / CONFIG_FILE) == config(
        workdir, "run", max_steps=12, batch_size=4, per_device_batch_size=2, lora_dropout=0.0
    )
    # the adapter names its base model and loads alone; it changed the model
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str((workdir / "model").resolve())
    assert adapter_config["target_modules"] == sorted(LORA_TARGETS)  # the same bytes run after run
    tuned, _ = load_model(str(out))
    base, _ = load_model(str(workdir / "model"))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(tuned(ids).logits, base(ids).logits)


class Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 4:
            raise KeyboardInterrupt


@pytest.mark.parametrize("group_by_length", [True, False])
def test_resume_gives_the_same_adapter(workdir, group_by_length):
    tag = f"g{int(group_by_length)}"
    full = train(config(workdir, f"full-{tag}", group_by_length=group_by_length))
    with pytest.raises(KeyboardInterrupt):
        train(config(workdir, f"cut-{tag}", group_by_length=group_by_length), callbacks=[Crash()])
    cut = workdir / f"cut-{tag}"
    assert not (cut / "adapter_model.safetensors").exists()
    with pytest.raises(RaitError, match="--resume"):
        train(config(workdir, f"cut-{tag}", group_by_length=group_by_length))
    with pytest.raises(RaitError, match="learning_rate"):
        train(config(workdir, f"cut-{tag}", group_by_length=group_by_length, resume=True, learning_rate=1e-3))
    resumed = train(config(workdir, f"cut-{tag}", group_by_length=group_by_length, resume=True))
    a = load_file(full / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (resumed / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]
    summaries = [json.loads((d / SUMMARY_FILE).read_text()) for d in (full, resumed)]
    assert summaries[1]["train_loss"] == pytest.approx(summaries[0]["train_loss"], rel=1e-6)  # the whole run


def test_finished_runs_stay_finished_and_a_lost_final_save_is_redone_without_training(workdir):
    steps = {"max_steps": 5, "save_steps": 5}  # 2 steps per epoch: the last epoch is cut short
    full = train(config(workdir, "finished", **steps))
    adapter = (full / "adapter_model.safetensors").read_bytes()
    summary = (full / SUMMARY_FILE).read_text()
    again = train(config(workdir, "finished", resume=True, **steps))  # a finished run: nothing happens
    assert (again / "adapter_model.safetensors").read_bytes() == adapter
    assert (again / SUMMARY_FILE).read_text() == summary
    (full / "adapter_model.safetensors").unlink()  # killed during the final save
    (full / SUMMARY_FILE).unlink()
    train(config(workdir, "finished", resume=True, **steps))
    assert (full / "adapter_model.safetensors").read_bytes() == adapter  # no sixth step
    assert json.loads((full / SUMMARY_FILE).read_text())["optimizer_steps"] == 5


def test_a_moved_run_with_a_truncated_checkpoint_and_tmp_leftovers_resumes(workdir):
    full = workdir / "full-g1"
    if not full.exists():
        train(config(workdir, "full-g1"))
    with pytest.raises(KeyboardInterrupt):
        train(config(workdir, "moved-a"), callbacks=[Crash()])
    broken = workdir / "moved-a" / "checkpoints" / "checkpoint-5"  # a later checkpoint cut by a kill
    broken.mkdir()
    (broken / "trainer_state.json").write_text('{"global_step": 5, "log_hist')
    leftover = workdir / "moved-a" / ".train_summary.json.x1y2.tmp"
    leftover.write_text("half")
    (workdir / "moved-a").rename(workdir / "moved-b")
    resumed = train(config(workdir, "moved-b", resume=True))
    a = load_file(full / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (workdir / "moved-b" / leftover.name).exists()
    summary = json.loads((resumed / SUMMARY_FILE).read_text())
    assert summary["resumed_from"].endswith("checkpoint-3")


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (
            [{"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}, {"id": 1}],
            "line 2",
        ),
        ([{"conversations": [{"from": "system", "value": "x"}]}], r"conversations\[0\]\.from"),
        ([{"messages": [{"role": "user", "content": 3}]}], r"messages\[0\]\.content"),
        ([{"messages": [{"role": "user", "content": "only a question"}]}], "no assistant turn"),
        ([], "no conversations"),
    ],
)
def test_bad_conversation_files(tmp_path, rows, match):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=match) as info:
        load_conversations([path])
    assert "bad.jsonl" in str(info.value)


def test_bad_json_list_names_the_index(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"messages": [{"role": "assistant", "content": "ok"}]}, {"messages": "x"}]))
    with pytest.raises(DataError, match=r"bad\.json: field '\[1\]\.messages'"):
        load_conversations([path])


def test_bad_inputs_fail_before_training(workdir, tmp_path):
    def fails(match: str, **overrides):
        cfg = config(workdir, "never", **overrides)
        with pytest.raises(RaitError, match=match):
            train(cfg)
        assert not (workdir / "never" / "checkpoints").exists()

    fails("does not exist", data=[str(tmp_path / "missing.jsonl")])
    fails("does not exist", model=str(tmp_path / "no-model"))
    fails("not a multiple", batch_size=3, per_device_batch_size=2)
    fails("length_rule", length_rule="cut")
    (workdir / "done").mkdir()
    (workdir / "done" / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(RaitError, match="already holds a trained model"):
        train(config(workdir, "done"))
    no_template = save_tiny_model(tmp_path / "base")
    (no_template / "chat_template.jinja").unlink()
    fails("no chat template", model=str(no_template), require_chat_template=True)


def test_config_file_errors_and_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 2\nlora_r: 4\nlora_target_modules: q_proj,v_proj\n")
    cfg = resolve_config(path, data=["d.jsonl"], output_dir="o", lora_r=8)
    assert (cfg.epochs, cfg.lora_r, cfg.lora_target_modules) == (2.0, 8, ["q_proj", "v_proj"])
    path.write_text("epochs: 2\nlearning_rat: 1e-4\n")
    with pytest.raises(DataError, match=r"train\.yaml: field 'learning_rat': unknown option"):
        resolve_config(path, data=["d.jsonl"], output_dir="o")
    path.write_text("group_by_length: maybe\n")
    with pytest.raises(DataError, match="group_by_length"):
        resolve_config(path, data=["d.jsonl"], output_dir="o")


def test_cli_train_and_merge(workdir, tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        f"model: {workdir / 'model'}\nmax_steps: 2\nbatch_size: 2\nlora_r: 4\nlearning_rate: 0.01\n"
    )
    out = tmp_path / "adapter"
    runner = CliRunner()
    options = ["--lr", "0.02", "--system-prompt", "Be brief.", "--validation-fraction", "0.25"]
    result = runner.invoke(
        app, ["train", str(workdir / "conv.jsonl"), "-o", str(out), "-c", str(cfg_file), *options]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / CONFIG_FILE).read_text())
    assert (saved["max_steps"], saved["learning_rate"], saved["lora_r"]) == (2, 0.02, 4)
    assert (saved["system_prompt"], saved["validation_fraction"]) == ("Be brief.", 0.25)
    assert read_validation(out)["conversations"] == 1
    merged_dir = tmp_path / "merged"
    result = runner.invoke(app, ["merge", str(out), str(merged_dir)])
    assert result.exit_code == 0, result.output
    merged, _ = load_model(str(merged_dir))
    adapted, _ = load_model(str(out))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)
    result = runner.invoke(app, ["merge", str(out), str(merged_dir)])
    assert isinstance(result.exception, RaitError) and "already exists" in str(result.exception)


def test_split_validation_is_seeded_disjoint_and_complete():
    convs = [build_conversation(Record(str(i), f"Passage number {i}."), lang="en") for i in range(20)]
    train_part, val = split_validation(convs, 0.1, seed=3)
    assert len(val) == 2 and len(train_part) == 18
    assert sorted(map(id, train_part + val)) == sorted(map(id, convs))
    assert split_validation(convs, 0.1, seed=3) == (train_part, val)
    assert split_validation(convs, 0.1, seed=4)[1] != val
    assert split_validation(convs, 0.0, seed=3) == (convs, [])
    with pytest.raises(RaitError, match="none to train on"):
        split_validation(convs[:1], 0.5, seed=3)


def test_validation_hold_out_keeps_the_best_checkpoint(workdir):
    out = train(config(workdir, "val", validation_fraction=0.25, save_steps=2, save_total_limit=None))
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["data"]["conversations"] == 3
    validation = read_validation(out)
    assert validation == summary["validation"]
    assert validation["conversations"] == 1 and validation["examples"] == 1
    losses = validation["eval_losses"]
    assert [row["step"] for row in losses] == [2, 4, 6]
    best = min(losses, key=lambda row: row["eval_loss"])
    assert validation["best_step"] == best["step"] and validation["best_eval_loss"] == best["eval_loss"]
    kept = load_file(out / validation["best_checkpoint"] / "adapter_model.safetensors")
    final = load_file(out / "adapter_model.safetensors")
    assert kept.keys() == final.keys() and all(torch.equal(kept[k], final[k]) for k in kept)
    log = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in log if "eval_loss" in r] == [2, 4, 6]


@pytest.mark.parametrize("accumulated", [False, True])
def test_loss_on_labelled_positions_equals_the_models_loss(accumulated):
    """rait projects onto the vocabulary only where a labelled token is predicted; the loss (and so the
    gradients) must equal the model's own causal-LM loss over the full logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import TrainingArguments

    model, tok = tiny_model_and_tokenizer()
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]))
    batch = PaddingCollator(tok.pad_token_id)(encode_conversations(tok, conversations(), 4096).examples)
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    trainer = _trainer_class(True)(model=model, args=args, train_dataset=[{}])
    n_items = (batch["labels"][:, 1:] != IGNORE_INDEX).sum() + 7 if accumulated else None
    ours = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
    ours.backward()
    ours_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    kwargs = {"num_items_in_batch": n_items} if accumulated else {}
    reference = model(**batch, **kwargs).loss
    reference.backward()
    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-6)
    for got, want in zip(ours_grads, [p.grad for p in model.parameters() if p.requires_grad], strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_bf16_training_keeps_lora_weights_and_optimizer_fp32(workdir):
    seen = {}

    class Inspect(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            trained = [p for p in model.parameters() if p.requires_grad]
            frozen = [p for p in model.parameters() if not p.requires_grad]
            seen["trained"] = {p.dtype for p in trained}
            seen["frozen"] = {p.dtype for p in frozen}
            seen["state"] = {
                v.dtype for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.ndim
            }

    out = train(config(workdir, "bf16", max_steps=2, precision="bf16"), callbacks=[Inspect()])
    assert seen == {"trained": {torch.float32}, "frozen": {torch.bfloat16}, "state": {torch.float32}}
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["precision"] == "bf16" and summary["train_loss"] > 0
    assert json.loads((out / CONFIG_FILE).read_text())["precision"] == "bf16"
    assert {v.dtype for v in load_file(out / "adapter_model.safetensors").values()} == {torch.float32}


def test_resume_of_a_run_saved_before_the_precision_option(workdir):
    with pytest.raises(KeyboardInterrupt):
        train(config(workdir, "legacy"), callbacks=[Crash()])
    saved = json.loads((workdir / "legacy" / CONFIG_FILE).read_text())
    del saved["precision"]  # what rait wrote before the option existed (it trained fp32 on CPU)
    (workdir / "legacy" / CONFIG_FILE).write_text(json.dumps(saved))
    with pytest.raises(RaitError, match="precision"):
        train(config(workdir, "legacy", resume=True, precision="bf16"))
    train(config(workdir, "legacy", resume=True))
    assert (workdir / "legacy" / "adapter_model.safetensors").is_file()


def test_precision_option_is_checked(tmp_path):
    with pytest.raises(DataError, match="precision"):
        resolve_config(None, data=["x"], output_dir=str(tmp_path), precision=3)
    with pytest.raises(RaitError, match="precision must be one of"):
        resolve_config(None, data=["x"], output_dir=str(tmp_path), precision="fp8")


def test_system_prompt_is_trained_on_stored_and_reused_at_inference(workdir, tmp_path):
    from rait.inference import PredictConfig, load_predictor

    _, tok = tiny_model_and_tokenizer()
    system = encode_system(tok, "Be brief.")
    data = encode_conversations(tok, conversations(), 4096, system_prompt="Be brief.")
    plain = encode_conversations(tok, conversations(), 4096)
    for encoded, bare in zip(data.examples, plain.examples, strict=True):
        assert encoded["input_ids"] == system + bare["input_ids"]
        assert encoded["labels"] == [IGNORE_INDEX] * len(system) + bare["labels"]
    out = train(config(workdir, "system", max_steps=2, system_prompt="Be brief."))
    assert json.loads((out / CONFIG_FILE).read_text())["system_prompt"] == "Be brief."
    merged = merge_adapter(out, tmp_path / "merged")
    for model in (out, merged):
        predictor = load_predictor(str(model))
        assert predictor.system_prompt == "Be brief." and list(predictor.system_ids) == system
        settings = PredictConfig(tmp_path / "p.jsonl", model=str(model)).settings()
        assert settings["system_prompt"] == "Be brief."
    assert load_predictor(str(out), system_prompt="none").system_ids == ()
    assert load_predictor(str(workdir / "model")).system_prompt == "none"
    with pytest.raises(RaitError, match="system_prompt is empty"):
        config(workdir, "x", system_prompt=" ").validate()


def test_full_finetuning_saves_a_bf16_model_that_loads_and_predicts(workdir, tmp_path):
    import rait
    from rait.inference import load_predictor

    out = train(config(workdir, "fullft", max_steps=4, finetuning="full", system_prompt="Be brief."))
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    weights = load_file(out / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    base = load_file(workdir / "model" / "model.safetensors")
    assert any(
        not torch.equal(weights[k], base[k].to(torch.bfloat16)) for k in weights
    )  # every weight trains
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["optimizer_steps"] == 4 and summary["dtype"] == "bfloat16"
    again = train(
        config(workdir, "fullft", max_steps=4, finetuning="full", system_prompt="Be brief.", resume=True)
    )
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()  # finished
    predictor = load_predictor(str(out))
    assert predictor.system_prompt == "Be brief."
    ner = rait.NER.from_pretrained(str(out))
    assert len(ner.extract(["Barack Obama was born in Honolulu."], ["person"])) == 1
    (tmp_path / "texts.txt").write_text("Barack Obama was born in Honolulu.\n", encoding="utf-8")
    args = ["predict", "-m", str(out), "-i", str(tmp_path / "texts.txt"), "--types", "person"]
    args += ["-o", str(tmp_path / "p.jsonl"), "--max-new-tokens", "4", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])["type"] == "person"
    with pytest.raises(RaitError, match="finetuning must be one of"):
        config(workdir, "x", finetuning="qlora").validate()


def test_resume_of_a_run_saved_before_the_finetuning_option(workdir):
    with pytest.raises(KeyboardInterrupt):
        train(config(workdir, "legacy-ft"), callbacks=[Crash()])
    saved = json.loads((workdir / "legacy-ft" / CONFIG_FILE).read_text())
    del saved["finetuning"]  # what rait wrote before the option existed (LoRA)
    (workdir / "legacy-ft" / CONFIG_FILE).write_text(json.dumps(saved))
    with pytest.raises(RaitError, match="finetuning"):
        train(config(workdir, "legacy-ft", resume=True, finetuning="full"))
    train(config(workdir, "legacy-ft", resume=True))
    assert (workdir / "legacy-ft" / "adapter_model.safetensors").is_file()

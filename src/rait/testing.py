"""Tiny random models for tests: a byte-level BPE tokenizer and a 2-layer causal LM, built in code in seconds.

The tokenizer is trained on a small English + Chinese fixture text (including every template string of
:data:`rait.templates.WORDINGS` and JSON punctuation) and carries ChatML special tokens and a ChatML chat
template, like the instruct models rait is used with. Byte-level BPE encodes any text, so tests can use
arbitrary English or Chinese passages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from rait.templates import WORDINGS

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_FIXTURE_LINES = [
    "Barack Obama was born in Honolulu, Hawaii, and served as the president of the United States.",
    "Apple Inc. released the iPhone in San Francisco on January 9, 2007.",
    "The Eiffel Tower is in Paris, France; Marie Curie studied at the University of Paris.",
    "Steven Spielberg directed Jurassic Park, a movie starring Sam Neill and Laura Dern.",
    "The restaurant serves cheap Italian food near Boston with a 5 star rating.",
    "Deep learning models such as BERT and GPT are trained with PyTorch or TensorFlow.",
    "person, organization, location, date, movie, actor, programming language, disease, drug",
    '["Barack Obama", "Honolulu"] [] {"mention": "type"} [{\'Paris\': \'location\'}]',
    ": , ; ? ! ( ) 0 1 2 3 4 5 6 7 8 9",
    "北京是中华人民共和国的首都，位于华北平原。",
    "马云于1999年在杭州创立了阿里巴巴集团。",
    "上海交通大学的学生参加了全国数学竞赛。",
    "患者出现发热、咳嗽等症状，医生建议服用阿莫西林。",
    "人名、地名、机构名、疾病、药物、症状、时间",
    '["北京", "杭州"] ["阿里巴巴集团"] 【】“”：，。？！',
]


def fixture_text() -> list[str]:
    """The lines the tiny tokenizer is trained on."""
    lines = list(_FIXTURE_LINES)
    for wording in WORDINGS.values():
        for value in (
            wording.passage,
            wording.passage_ack,
            wording.question,
            wording.examples_intro,
            wording.example,
            wording.examples_ack,
        ):
            lines.append(value.replace("%s", "Paris" if value.isascii() else "北京"))
    return lines


def tiny_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on :func:`fixture_text`, with ChatML tokens and chat template."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(fixture_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_model_and_tokenizer(arch: str = "llama", seed: int = 0):
    """A 2-layer, hidden-64 random causal LM (``"llama"`` or ``"qwen2"``) and its tiny tokenizer."""
    tokenizer = tiny_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose 'llama' or 'qwen2'")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


def lookup_predictor(
    known: dict[str, list[str]], arch: str = "llama", open_probs: dict[str, float] | None = None, **kwargs
):
    """A real :class:`rait.inference.Predictor` over the tiny model whose decoding is replaced by a
    lookup: for the type asked, it answers the JSON list of the ``known[type]`` mentions present in the
    passage of the prompt (so the whole path -- templates, token ids, batching, parsing, locating -- runs for
    real, and each chunk's answer depends on that chunk only). With ``open_probs``, each mention of a type's
    answer is scored ``open_probs[type]`` (1.0 for a type not in it); without, answers have no scores.
    ``iter_calls`` / ``passages`` record its use."""
    from rait.chat import stop_token_ids
    from rait.inference import Predictor
    from rait.inference.stopping import Continuation

    questions = "|".join(re.escape(w.question).replace("%s", "(.+?)") for w in WORDINGS.values())
    passage_starts = "|".join(re.escape(w.passage.split("%s")[0]) for w in WORDINGS.values())

    class _Lookup(Predictor):
        def __init__(self, model, tokenizer, **options):
            super().__init__(model, tokenizer, **options)
            self.passages: list[str] = []
            self.iter_calls = 0

        def iter_answers(self, queries):
            self.iter_calls += 1
            self.passages += [q.text for q in queries]
            yield from super().iter_answers(queries)

        def _greedy(self, prefixes, owner, suffixes, passages=None):
            outputs = []
            for row, suffix in zip(owner, suffixes, strict=True):
                prompt = self.tokenizer.decode(prefixes[row] + suffix)
                entity_type = "".join(re.findall(questions, prompt)[-1])
                passage = re.split(passage_starts, prompt)[-1]
                mentions = [m for m in known.get(entity_type, []) if m in passage]
                answer = json.dumps(mentions, ensure_ascii=False)
                ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + stop_token_ids(
                    self.tokenizer
                )
                if open_probs is not None:
                    ids = Continuation(ids, "stop", [open_probs.get(entity_type, 1.0)] * len(mentions))
                outputs.append(ids)
            return outputs

    model, tokenizer = tiny_model_and_tokenizer(arch)
    return _Lookup(model, tokenizer, **kwargs)


def save_tiny_model(path: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    """Save a tiny model and its tokenizer to ``path`` (loadable by :func:`rait.models.load_model`)."""
    path = Path(path)
    model, tokenizer = tiny_model_and_tokenizer(arch, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _llama_cpp_permute(weights, n_head: int):
    """llama.cpp's row order for q/k projections (transformers reverses it when it reads a GGUF)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_tiny_gguf(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny llama model and tokenizer as an F32 GGUF file, laid out as llama.cpp writes one."""
    import gguf

    path = Path(path)
    model, tokenizer = tiny_model_and_tokenizer("llama", seed)
    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("rait tiny llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = backend["model"]["vocab"]
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(sorted(vocab, key=vocab.get))
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(vocab))]
    )
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state.pop("model.embed_tokens.weight"))
    writer.add_tensor("output_norm.weight", state.pop("model.norm.weight"))
    writer.add_tensor("output.weight", state.pop("lm_head.weight"))
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in names.items():
            weights = state.pop(f"model.layers.{layer}.{hf_name}.weight")
            if gguf_name == "attn_q":
                weights = _llama_cpp_permute(weights, config.num_attention_heads)
            elif gguf_name == "attn_k":
                weights = _llama_cpp_permute(weights, config.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

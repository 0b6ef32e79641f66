"""GGUF import: a tiny Llama written with the `gguf` package round-trips into an HF directory whose
logits equal the original model's; errors name the culprit; the packaged SmolLM2 resolves."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

gguf = pytest.importorskip("gguf")
pytest.importorskip("accelerate")

from core.errors import TandemError  # noqa: E402
from core.models.builtin import resolve_model_path  # noqa: E402
from core.models.gguf import cached_import, import_gguf, packaged_gguf  # noqa: E402
from core.models.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, build_byte_tokenizer  # noqa: E402

HEADS, KV_HEADS = 2, 1


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer) + 1, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=64, max_position_embeddings=256,
        tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"), eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


def _permute(weight, n_head):
    # llama.cpp's layout for q/k (transformers undoes it when it reads a llama GGUF)
    return weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_gguf(model, tokenizer, path):
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    # the byte vocabulary, its special tokens, and one merge (a GGUF stores no empty merge list)
    tokens = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])] + ["ab"]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in SPECIAL_TOKENS else 1 for token in tokens])
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(cfg.bos_token_id)
    writer.add_eos_token_id(cfg.eos_token_id)
    writer.add_chat_template(CHAT_TEMPLATE)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], HEADS))
        writer.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], KV_HEADS))
        writer.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        writer.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    model, tokenizer = tiny_llama()
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    write_gguf(model, tokenizer, path)
    return model, path


def test_round_trip_logits_equal(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    original, path = tiny_gguf
    out = import_gguf(path, tmp_path / "hf")
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert loaded.config.tie_word_embeddings
    assert not hasattr(loaded.config, "quantization_config")  # plain floats: save_pretrained works
    loaded.save_pretrained(tmp_path / "saved")
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ids = torch.randint(0, original.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, original(ids).logits, rtol=0, atol=1e-5)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("cab = 3 + 4", add_special_tokens=False).input_ids
    assert tokenizer.convert_ids_to_tokens(ids[:2]) == ["c", "ab"]  # the merge survived
    assert tokenizer.decode(ids) == "cab = 3 + 4"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_cached_import_is_keyed_by_checksum_and_reused(tiny_gguf, tmp_path):
    _, path = tiny_gguf
    first = cached_import(path, tmp_path)
    assert first.name.startswith("gguf-tiny-llama.F32-")
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert cached_import(path, tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime  # not written twice
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging directory left


def test_gguf_file_as_model_path(tiny_gguf, tmp_path, monkeypatch):
    _, path = tiny_gguf
    monkeypatch.setenv("TANDEM_CACHE", str(tmp_path))
    assert resolve_model_path(str(path)).startswith(str(tmp_path))


def test_errors_name_the_culprit(tmp_path):
    with pytest.raises(TandemError, match="not found"):
        import_gguf(tmp_path / "missing.gguf", tmp_path / "out")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(TandemError, match="cannot read"):
        import_gguf(bogus, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bogus.gguf"]  # nothing half-written
    with pytest.raises(TandemError, match="unknown packaged model 'nope'"):
        packaged_gguf("nope")


def test_import_cli_refuses_existing_dir(tiny_gguf, tmp_path):
    _, path = tiny_gguf
    (tmp_path / "taken").mkdir()
    cli = [sys.executable, "-m", "core.models.import_gguf", str(path), str(tmp_path / "taken")]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "already exists" in done.stderr and "Traceback" not in done.stderr


def test_a_corrupt_or_foreign_config_json_is_named(tmp_path, caplog):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(TandemError, match="config.json is not valid JSON"):
        resolve_model_path(str(tmp_path / "broken"))
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "config.json").write_text('{"model_type": "llama", "auto_map": {"AutoModel": "x.Y"}}')
    with caplog.at_level("WARNING", logger="tandem"):
        assert resolve_model_path(str(tmp_path / "custom")) == str(tmp_path / "custom")
    assert "declares custom model code" in caplog.text


def test_an_unfaithful_tokenizer_is_refused_and_nothing_is_written(tiny_gguf, tmp_path, monkeypatch):
    from core.models import gguf_tokenizer

    _, path = tiny_gguf
    vocabulary = gguf_tokenizer.read_vocabulary(path)
    # the file asks for a BOS token its tokenizer (as transformers built it) does not add: Gemma 3 under 5.17
    monkeypatch.setattr(gguf_tokenizer, "read_vocabulary",
                        lambda _: gguf_tokenizer.GGUFVocabulary(vocabulary.tokens, True, vocabulary.bos_id))
    with pytest.raises(TandemError, match=r"reads the tokenizer of tiny-llama.F32.gguf wrongly: prompts do not "
                                          r"start with the BOS token .*transformers>=5.23"):
        import_gguf(path, tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []


def test_a_cached_import_made_with_a_wrong_tokenizer_is_imported_again(tiny_gguf, tmp_path, monkeypatch):
    from core.models import gguf_tokenizer
    from core.models.gguf import TOKENIZER_CHECKED

    _, path = tiny_gguf
    first = cached_import(path, tmp_path)
    assert (first / TOKENIZER_CHECKED).is_file()
    (first / TOKENIZER_CHECKED).unlink()  # as a directory imported before the check existed
    (first / "stale-marker").touch()
    answers = iter(["prompts do not start with the BOS token 1, which the file asks for", None])
    monkeypatch.setattr(gguf_tokenizer, "tokenizer_problem", lambda *_: next(answers))
    assert cached_import(path, tmp_path) == first
    assert (first / TOKENIZER_CHECKED).is_file() and not (first / "stale-marker").exists()  # imported afresh
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


def test_an_import_logged_to_a_file_writes_no_bar_frames(tiny_gguf, tmp_path):
    """transformers' de-quantising bar ignores its own switch, and tqdm was imported (by torch) before ours."""
    _, path = tiny_gguf
    script = ("import sys; from core.main import setup_logging; setup_logging(); "
              "from core.models.gguf import import_gguf; import_gguf(sys.argv[1], sys.argv[2])")
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "hf")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "hf" / "config.json").is_file()
    assert "\r" not in done.stdout + done.stderr and "de-quantizing" not in done.stderr

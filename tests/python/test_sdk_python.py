"""The Python package end to end: run a real pipeline through ctypes, and get
an XquantError with the runtime's message from a bad one.

usage: test_sdk_python.py MODEL_DIR WORK_DIR   (run by scripts/test-sdk.sh)
"""
import os
import sys

import xquant

model, work = sys.argv[1], sys.argv[2]
out = os.path.join(work, "py-out")

with xquant.Runtime(log_level="error") as rt:
    names = {p["name"] for p in rt.plugins()}
    assert {"rtn", "safetensors", "compressed-tensors"} <= names, names
    rt.run_pipeline(f"""
model: {{path: {model}}}
quantize: [{{algorithm: rtn, weights: {{bits: 8, strategy: channel}}}}]
ignore: [lm_head]
output: {{path: {out}}}
""")
    assert os.path.exists(os.path.join(out, "model.safetensors")), os.listdir(out)
    assert os.path.exists(os.path.join(out, "config.json"))

    try:
        rt.run_pipeline(f"model: {{path: {model}}}\nquantize: [{{algorithm: rtn, weights: {{bits: 4}}}}]\noutput: {{path: {out}}}\nextra: 1\n")
    except xquant.XquantError as e:
        assert e.status_name == "invalid argument", e.status_name
        assert "unknown key 'extra'" in str(e), str(e)
    else:
        raise AssertionError("a pipeline with an unknown key must raise")
    # The engine through the same API: greedy generation and perplexity.
    gguf = os.path.join(os.path.dirname(model), "stories260K", "stories260K.gguf")
    with rt.open_model(gguf) as m:
        text = m.generate("", n_tokens=16)
        assert text.startswith("Once upon a time"), text
        text_path = os.path.join(os.path.dirname(os.path.dirname(model)), "data", "tinystories",
                                 "tinystories_val.subset.txt")
        r = m.perplexity(text_path, ctx=256, max_tokens=2048)
        assert r["tokens_scored"] > 1000 and 1.0 < r["perplexity"] < 20.0, r
    # Options of xq_model_open_ex: the vocabulary of another checkpoint, a weight memory limit.
    with rt.open_model(os.path.join(os.path.dirname(model), "stories260K-hf"), provider="cpu",
                       tokenizer_from=gguf, weight_memory_limit=1 << 30) as m:
        assert m.generate("", n_tokens=16) == text, "stories260K-hf with the GGUF's vocabulary differs"
    try:
        rt.open_model(gguf, weight_memory_limit=1000)
    except xquant.XquantError as e:
        assert e.status_name == "out of memory" and "does not fit" in str(e), (e.status_name, str(e))
    else:
        raise AssertionError("a model above its weight memory limit must raise")
    try:
        rt.open_model(gguf, provider="no-such-provider")
    except xquant.XquantError as e:
        assert "no-such-provider" in str(e), str(e)
    else:
        raise AssertionError("an unknown provider must raise")
    try:
        rt.open_model(os.path.join(work, "no-such-model"))
    except xquant.XquantError as e:
        assert e.status_name == "not found", (e.status_name, str(e))
    else:
        raise AssertionError("opening a missing model must raise")
# Status names come from the C API (xq_status_string), not a Python copy.
assert xquant.status_string(7) == "out of memory", xquant.status_string(7)
assert xquant.status_string(999) == "unknown status"
print(f"python sdk: ok (xquant {xquant.version()})")

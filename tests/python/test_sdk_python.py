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
print(f"python sdk: ok (xquant {xquant.version()})")

"""xquant: Python bindings to the xquant runtime through its C API (ctypes).

No compiled extension: this package loads libxquant and calls xquant.h.

    import xquant
    with xquant.Runtime() as rt:
        rt.run_pipeline_file("examples/quickstart.yaml")

Errors raise XquantError carrying the runtime's message and status.
The library is found through $XQUANT_LIBRARY, then the build tree beside a
source checkout (build/lib), then an install prefix (../../lib relative to
this package when installed under <prefix>/share/xquant/python), then the
system loader path.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import List, Optional

__all__ = ["XquantError", "Runtime", "Model", "library_path", "status_string", "version"]

_LOG_LEVELS = {"trace": 0, "debug": 1, "info": 2, "warn": 3, "error": 4}


class XquantError(RuntimeError):
    """A failed xquant call: `status` is the xq_status code, str() the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.status_name = status_string(status)


class _RuntimeOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("log_level", ctypes.c_int),
        ("num_threads", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("plugin_path", ctypes.c_char_p),
    ]


class _ModelOptions(ctypes.Structure):  # xquant.h's xq_model_options
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("provider", ctypes.c_char_p),
        ("tokenizer_from", ctypes.c_char_p),
        ("device_weights", ctypes.c_char_p),
        ("weight_memory_limit", ctypes.c_uint64),
    ]


def library_path() -> str:
    """The libxquant this package will load (see the module docstring)."""
    env = os.environ.get("XQUANT_LIBRARY")
    if env:
        return env
    here = Path(__file__).resolve().parent
    candidates = [
        here.parents[2] / "build" / "lib" / "libxquant.so",  # <checkout>/sdk/python/xquant
        here.parents[3] / "lib" / "libxquant.so",            # <prefix>/share/xquant/python/xquant
    ]
    for c in candidates:
        if c.exists():
            return str(c)
    return "libxquant.so"


_lib = None


def _load():
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(library_path())
    lib.xq_version.restype = ctypes.c_char_p
    lib.xq_last_error.restype = ctypes.c_char_p
    lib.xq_status_string.argtypes = [ctypes.c_int]
    lib.xq_status_string.restype = ctypes.c_char_p
    lib.xq_runtime_create.argtypes = [ctypes.POINTER(_RuntimeOptions), ctypes.POINTER(ctypes.c_void_p)]
    lib.xq_runtime_create.restype = ctypes.c_int
    lib.xq_runtime_destroy.argtypes = [ctypes.c_void_p]
    lib.xq_runtime_destroy.restype = None
    lib.xq_runtime_load_plugins.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.xq_runtime_load_plugins.restype = ctypes.c_int
    lib.xq_runtime_plugin_count.argtypes = [ctypes.c_void_p]
    lib.xq_runtime_plugin_count.restype = ctypes.c_uint32
    lib.xq_runtime_plugin_json.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.xq_runtime_plugin_json.restype = ctypes.c_char_p
    lib.xq_run_pipeline_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.xq_run_pipeline_file.restype = ctypes.c_int
    lib.xq_run_pipeline_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.xq_run_pipeline_string.restype = ctypes.c_int
    lib.xq_model_open.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.xq_model_open.restype = ctypes.c_int
    lib.xq_model_open_ex.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_ModelOptions),
                                     ctypes.POINTER(ctypes.c_void_p)]
    lib.xq_model_open_ex.restype = ctypes.c_int
    lib.xq_model_close.argtypes = [ctypes.c_void_p]
    lib.xq_model_close.restype = None
    lib.xq_model_perplexity.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint64,
                                        ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
                                        ctypes.POINTER(ctypes.c_uint64)]
    lib.xq_model_perplexity.restype = ctypes.c_int
    lib.xq_model_generate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_float,
                                      ctypes.c_uint64, ctypes.POINTER(ctypes.c_void_p)]
    lib.xq_model_generate.restype = ctypes.c_int
    lib.xq_string_free.argtypes = [ctypes.c_void_p]
    lib.xq_string_free.restype = None
    _lib = lib
    return lib


def _check(status: int) -> None:
    if status != 0:
        msg = _load().xq_last_error().decode("utf-8", "replace")
        raise XquantError(status, msg or status_string(status))


def status_string(status: int) -> str:
    """The runtime's name of an xq_status code (xq_status_string)."""
    return _load().xq_status_string(status).decode()


def version() -> str:
    return _load().xq_version().decode()


class Runtime:
    """An xquant runtime with its plugins loaded. Use as a context manager or call close()."""

    def __init__(self, log_level: str = "warn", threads: int = 0, plugin_path: Optional[List[str]] = None):
        lib = _load()
        if log_level not in _LOG_LEVELS:
            raise ValueError(f"log_level must be one of {sorted(_LOG_LEVELS)}, got {log_level!r}")
        self._path_bytes = ":".join(plugin_path).encode() if plugin_path else None
        opts = _RuntimeOptions(ctypes.sizeof(_RuntimeOptions), _LOG_LEVELS[log_level], threads, 0, self._path_bytes)
        handle = ctypes.c_void_p()
        _check(lib.xq_runtime_create(ctypes.byref(opts), ctypes.byref(handle)))
        self._handle = handle

    def close(self) -> None:
        if self._handle:
            _load().xq_runtime_destroy(self._handle)
            self._handle = None

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _live(self):
        if not self._handle:
            raise XquantError(1, "runtime is closed")
        return self._handle

    def load_plugins(self, directory: str) -> None:
        _check(_load().xq_runtime_load_plugins(self._live(), os.fsencode(directory)))

    def plugins(self) -> List[dict]:
        lib = _load()
        h = self._live()
        return [json.loads(lib.xq_runtime_plugin_json(h, i)) for i in range(lib.xq_runtime_plugin_count(h))]

    def run_pipeline_file(self, path: str) -> None:
        _check(_load().xq_run_pipeline_file(self._live(), os.fsencode(str(path))))

    def run_pipeline(self, yaml_text: str, base_dir: Optional[str] = None) -> None:
        base = os.fsencode(str(base_dir)) if base_dir is not None else None
        _check(_load().xq_run_pipeline_string(self._live(), yaml_text.encode(), base))

    def open_model(self, path: str, provider: Optional[str] = None, tokenizer_from: Optional[str] = None,
                   device_weights: Optional[str] = None, weight_memory_limit: int = 0) -> "Model":
        """Opens a model on `provider` ("cpu" by default, "cuda" on a GPU). tokenizer_from: a
        checkpoint whose vocabulary to use when the model has none; device_weights: "auto"
        (as stored), "bf16" or "f32" for dense weights on a device; weight_memory_limit: bytes
        the weights may take (0: the device's free memory). xquant.h, xq_model_open_ex."""
        o = _ModelOptions()
        o.struct_size = ctypes.sizeof(_ModelOptions)
        o.provider = provider.encode() if provider else None
        o.tokenizer_from = os.fsencode(str(tokenizer_from)) if tokenizer_from else None
        o.device_weights = device_weights.encode() if device_weights else None
        o.weight_memory_limit = weight_memory_limit
        handle = ctypes.c_void_p()
        _check(_load().xq_model_open_ex(self._live(), os.fsencode(str(path)), ctypes.byref(o), ctypes.byref(handle)))
        return Model(handle, self)


class Model:
    """A model opened by the inference engine (any format a loader reads)."""

    def __init__(self, handle, runtime: Runtime):
        self._handle = handle
        self._runtime = runtime  # keeps the runtime alive

    def close(self) -> None:
        if self._handle:
            _load().xq_model_close(self._handle)
            self._handle = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def perplexity(self, text_path: str, ctx: int = 512, max_tokens: int = 0) -> dict:
        ppl, nll, n = ctypes.c_double(), ctypes.c_double(), ctypes.c_uint64()
        _check(_load().xq_model_perplexity(self._handle, os.fsencode(str(text_path)), ctx, max_tokens,
                                           ctypes.byref(ppl), ctypes.byref(nll), ctypes.byref(n)))
        return {"perplexity": ppl.value, "mean_nll": nll.value, "tokens_scored": n.value}

    def generate(self, prompt: str, n_tokens: int = 32, temperature: float = 0.0, seed: int = 0) -> str:
        out = ctypes.c_void_p()
        _check(_load().xq_model_generate(self._handle, prompt.encode(), n_tokens, temperature, seed,
                                         ctypes.byref(out)))
        try:
            return ctypes.string_at(out).decode("utf-8", "replace")
        finally:
            _load().xq_string_free(out)

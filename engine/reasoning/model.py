"""Loading EmotionThinker's thinker: from a hub id or a local directory, quantised or not.

    from engine.reasoning.model import load_model
    m = load_model()                          # the released model; nf4 on a CUDA GPU
    m = load_model("/ckpt", quant="bf16")     # a local checkpoint (full Omni or thinker only)
    m = load_model("/ckpt", device="cpu")     # fp32 on the CPU (slow, but works)

Only the thinker is loaded (`Qwen2_5OmniThinkerForConditionalGeneration`): text out, no talker,
and the never-used vision tower's blocks are not even read (the config is given depth 0 before
loading, then the remaining stub is dropped). From the hub, only the files the thinker needs are
fetched: the safetensors index says which shards hold `thinker.*` weights.

Quantisation (`quant`): "nf4" (bitsandbytes 4-bit NormalFloat, double quantisation, bf16
compute: the default, also on a CPU: see `default_quant`), "int8" (bitsandbytes LLM.int8),
"int4" (torchao's int4 weight-only layout, group 128: tinygemm's tile-packed kernels on CUDA,
which compile; on a CPU torchao's prototype "opaque" layout), "bf16", "fp32". On a CPU,
quantising the 7B with bitsandbytes takes minutes: the result is cached (`quantized_cache_dir`,
ET_QUANT_CACHE) and later loads read it (torchao's int4 tensors cannot be saved by transformers
5.17, so "int4" quantises at every load).
The output layer always stays in 16 bits, and so does the audio encoder unless
`quantize_audio_encoder=True`: it carries the prosody perception the paper trained for
(docs/paper.md §4), and it is ~0.64 B of the 8.9 B parameters (bench/reasoning.py weighs both).

Failure is fast and says how to fix it: `HF_HUB_OFFLINE` is respected, hub look-ups time out
after `HUB_TIMEOUT_S`, a machine without CUDA never starts the 16 GB download on its own (pass
device="cpu" to insist), and remote code is never trusted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.reasoning.features import EmotionThinkerProcessor

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "ddwang2000/EmotionThinker"
QUANTS = ("auto", "nf4", "int8", "int4", "bf16", "fp32")
BNB_QUANTS = ("nf4", "int8")  # the bitsandbytes ones: weights stay quantised, adapters unmerged
QUANTISED = (*BNB_QUANTS, "int4")  # the weights stay quantised in memory
INT4_GROUP = 128  # weights per int4 scale and zero point (torchao's default; 32 for a model
#                   narrower than that, such as the tiny test one, whose layers would else be skipped)
HUB_TIMEOUT_S = 10.0  # metadata look-ups; a dead network fails in seconds, not minutes
CONFIG_FILES = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken"]  # configs and tokenizer


class ModelUnavailable(RuntimeError):
    """The model cannot be loaded here; the message says why and how to fix it."""


@dataclass(frozen=True, eq=False)
class LoadedModel:
    model: Any  # Qwen2_5OmniThinkerForConditionalGeneration, in eval mode
    processor: EmotionThinkerProcessor
    source: str  # what the caller asked for (hub id or directory)
    path: str  # the local directory the weights were read from
    device: str  # "cuda:0", "cpu", ...
    quant: str  # nf4, int8, int4, bf16 or fp32
    audio_encoder_quantized: bool
    load_s: float  # wall time of load_model, download excluded
    weights_gib: float  # parameters and buffers as held in memory

    def describe(self) -> str:
        """One line for a status display: what, where, how big."""
        audio = ""
        if self.quant in QUANTISED:
            audio = " (audio encoder quantised)" if self.audio_encoder_quantized else \
                " (audio encoder in 16 bits)"
        size = (f"{self.weights_gib:.2f} GiB" if self.weights_gib >= 0.1
                else f"{self.weights_gib * 1024:.1f} MiB")
        name = Path(self.source).name if Path(self.source).is_dir() else self.source
        return f"{name} on {self.device}, {self.quant}{audio}, {size} of weights"


def auto_device(cuda: bool, env: Mapping[str, str] = os.environ, gpus: int | None = None) -> str:
    """"auto": this process's GPU, the one its launcher assigned (torchrun / accelerate set
    LOCAL_RANK: under `accelerate launch` each process loads onto its own GPU, not all onto
    GPU 0; modulo the GPUs it can see, for schedulers that show each rank one), else the
    first; the CPU without CUDA."""
    if not cuda:
        return "cpu"
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    return f"cuda:{int(env.get('LOCAL_RANK', 0)) % max(gpus, 1)}"


def load_model(source: str | os.PathLike = DEFAULT_SOURCE, quant: str = "auto",
               device: str = "auto", *, quantize_audio_encoder: bool = False,
               progress: Callable[[str], None] | None = None) -> LoadedModel:
    """Load the thinker and its processor from a hub id or a local directory. Raises
    `ModelUnavailable` (with the fix in the message) when it cannot, and `ValueError` for an
    unknown `quant`."""
    import torch

    say = progress or (lambda message: None)
    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {', '.join(QUANTS)}; got {quant!r}")
    cuda = torch.cuda.is_available()
    chose_cpu = device == "cpu"
    if device == "auto":
        device = auto_device(cuda)
    if device.startswith("cuda") and not cuda:
        raise ModelUnavailable(f"device {device} was asked for, but torch sees no CUDA GPU")
    quant = default_quant(device) if quant == "auto" else quant
    local = Path(source).expanduser()
    if local.is_dir():
        path = local
    elif _looks_like_path(str(source)):
        raise ModelUnavailable(f"no checkpoint directory at {source}")
    else:
        if device == "cpu" and not chose_cpu:
            raise ModelUnavailable(
                "no CUDA GPU here, so the ~16 GB model is not downloaded automatically and the "
                "app runs prosody-only. To run it on the CPU anyway (slow), pass device 'cpu' "
                "(--device cpu); or pass a local checkpoint directory (--model DIR).")
        path = fetch_checkpoint(str(source), say)
    return _load(path, str(source), quant, device, quantize_audio_encoder, say)


def fetch_checkpoint(repo_id: str, say: Callable[[str], None] = print) -> Path:
    """Download (or find in the cache) the files the thinker needs from a hub repository."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline and not _hub_reachable():
        # the hub client would retry for ~25 s before giving up: use the cache, or fail now
        say("the Hugging Face hub cannot be reached; looking in the local cache")
        offline = True
    try:
        try:
            index_file = hf_hub_download(repo_id, "model.safetensors.index.json",
                                         etag_timeout=HUB_TIMEOUT_S, local_files_only=offline)
            weights = thinker_shards(json.loads(Path(index_file).read_text()))
        except LocalEntryNotFoundError:
            raise
        except Exception as exc:  # no index: a single-file checkpoint
            if "404" not in str(exc) and "Entry Not Found" not in str(exc):
                raise
            weights = ["*.safetensors"]
        say(f"fetching {repo_id}: {len(weights)} weight file(s) for the thinker")
        path = snapshot_download(repo_id, allow_patterns=CONFIG_FILES + weights,
                                 etag_timeout=HUB_TIMEOUT_S, local_files_only=offline,
                                 tqdm_class=_progress_bar(say, repo_id))
    except GatedRepoError:
        raise ModelUnavailable(f"{repo_id} is gated: accept its terms on the hub and log in "
                               "(`hf auth login`), or pass a local directory") from None
    except RepositoryNotFoundError:
        raise ModelUnavailable(f"{repo_id} was not found on the hub (check the name), or it is "
                               "private and you are not logged in") from None
    except LocalEntryNotFoundError:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise ModelUnavailable(
                f"HF_HUB_OFFLINE is set and {repo_id} is not in the local cache: download it once "
                "with network access, or pass a local checkpoint directory") from None
        raise ModelUnavailable(
            f"cannot reach the Hugging Face hub to fetch {repo_id} and it is not cached: check "
            "the network (or HF_ENDPOINT / proxy settings), or pass a local checkpoint "
            "directory") from None
    except OSError as exc:
        raise ModelUnavailable(f"fetching {repo_id} failed ({exc}); check the network and disk "
                               "space, or pass a local checkpoint directory") from None
    return Path(path)


def _progress_bar(say: Callable[[str], None], repo_id: str):
    """A tqdm class that also reports "fetching ...: k of n files" through `say` (the app's
    status line), beside the usual console bar."""
    from tqdm.auto import tqdm

    class Reporting(tqdm):
        def update(self, n=1):
            shown = super().update(n)
            if self.total:
                say(f"fetching {repo_id}: {self.n:.0f} of {self.total:.0f} files")
            return shown

    return Reporting


def _hub_reachable() -> bool:
    """One quick request to the hub endpoint (HF_ENDPOINT), honouring proxy settings."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_TIMEOUT_S, follow_redirects=True)
        return True
    except Exception:  # noqa: BLE001 - connection refused, DNS failure, timeout, proxy error ...
        return False


def thinker_shards(index: dict) -> list[str]:
    """The weight files of a safetensors index that hold thinker weights (all of them for a
    thinker-only checkpoint, whose keys carry no `thinker.` prefix)."""
    weight_map = index.get("weight_map", {})
    files = sorted({f for key, f in weight_map.items() if key.startswith("thinker.")})
    return files or sorted(set(weight_map.values()))


def _load(path: Path, source: str, quant: str, device: str, quantize_audio: bool, say):
    if (path / "adapter_config.json").exists():
        return _load_adapter(path, source, quant, device, quantize_audio, say)
    import torch
    from transformers import AutoConfig
    from transformers.models.qwen2_5_omni import Qwen2_5OmniThinkerForConditionalGeneration

    start = time.perf_counter()
    say(f"loading the thinker from {path} ({quant} on {device})")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"{path} is not a loadable Qwen2.5-Omni checkpoint: {exc}") from exc
    config = getattr(config, "thinker_config", config)
    if not hasattr(config, "audio_config"):
        raise ModelUnavailable(f"{path} holds a {type(config).__name__}, not a Qwen2.5-Omni "
                               "(thinker) checkpoint")
    config.vision_config.depth = 0  # the vision blocks are never used: do not read them
    kwargs: dict[str, Any] = {"config": config, "trust_remote_code": False}
    on_cuda = device.startswith("cuda")
    # The dtype of everything not quantised (and of the 4-bit layers' compute): bf16 on CUDA and
    # on CPUs with native bf16 (AVX512-BF16 / AMX), which halves the 7B's unquantised parts
    # (embeddings, output layer, audio encoder: 1.7 B parameters) against fp32.
    bf16 = on_cuda or quant == "bf16" or (quant in QUANTISED and cpu_has_bf16())
    compute = torch.bfloat16 if bf16 else torch.float32
    if quant in BNB_QUANTS:
        kwargs["quantization_config"] = _bnb_config(quant, compute, quantize_audio)
        kwargs["device_map"] = {"": device}
    elif quant == "int4":
        kwargs["quantization_config"] = _int4_config(on_cuda, quantize_audio, config.text_config.hidden_size)
        kwargs["device_map"] = {"": device}  # quantised where it will run: the layouts differ
    kwargs["dtype"] = compute
    cache = quantized_cache_dir(path, quant, quantize_audio, str(compute)) \
        if quant in BNB_QUANTS and not on_cuda else None
    model = _load_cached(cache, device, compute, say) if cache is not None else None
    if model is None:
        try:
            model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"{path} is not a loadable Qwen2.5-Omni checkpoint: {exc}") from exc
        if cache is not None:
            _save_quantized(model, cache, say)
    if quant not in QUANTISED:
        model.to(device)
    # where it came from, as the user named it (not the quantised-weight cache): an adapter
    # trained on it records this as its base (peft's base_model_name_or_path)
    model.config._name_or_path = model.name_or_path = source
    model.visual = None  # free the vision stub: this app sends no images
    model.eval()
    from engine.reasoning.features import load_processor

    processor = load_processor(path)
    weights = sum(_nbytes(t) for t in list(model.parameters()) + list(model.buffers()))
    return LoadedModel(model=model, processor=processor, source=source, path=str(path),
                       device=device, quant=quant,
                       audio_encoder_quantized=quant in QUANTISED and quantize_audio,
                       load_s=time.perf_counter() - start, weights_gib=weights / 2**30)


def _load_adapter(path: Path, source: str, quant: str, device: str, quantize_audio: bool, say):
    """A LoRA adapter (train.sft's output): its base loaded the same way, the adapter applied,
    and merged into the weights unless the base is quantised."""
    import dataclasses

    from peft import PeftModel

    if quant == "int4":
        raise ModelUnavailable("a LoRA adapter cannot be applied to torchao int4 weights here: load "
                               "it with quant nf4 (bitsandbytes, unmerged) or bf16 (merged)")
    base_source = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    base_path = Path(base_source) if Path(base_source).is_dir() else fetch_checkpoint(base_source, say)
    say(f"loading the base {base_source} for the adapter {path.name}")
    base = _load(base_path, base_source, quant, device, quantize_audio, say)
    model = PeftModel.from_pretrained(base.model, str(path))
    model = model if quant in BNB_QUANTS else model.merge_and_unload()
    model.eval()
    from engine.reasoning.features import load_processor

    processor = load_processor(path) if (path / "preprocessor_config.json").exists() else base.processor
    return dataclasses.replace(base, model=model, processor=processor, source=source, path=str(path))


# Quantising the 7B on a CPU takes minutes (bitsandbytes, tensor by tensor); its result is kept
# here (ET_QUANT_CACHE: another folder, or "off") so that later loads read it in seconds.
QUANT_CACHE_ENV = "ET_QUANT_CACHE"


CACHE_FORMAT = 1  # bump when the loader changes what it builds (skip lists, vision depth ...)
CACHE_COMPLETE = "COMPLETE"  # written last: a folder without it is a save that did not finish
STALE_PARTIAL_S = 3600.0  # a half-written save older than this is a crashed one: removed


def quantized_cache_dir(path: Path, quant: str, quantize_audio: bool, dtype: str) -> Path | None:
    """Where this checkpoint's quantised weights are (or will be) kept: a folder named after the
    checkpoint and a digest of everything the result depends on (its weight files' sizes and
    dates, its configuration files' contents, the settings, the library versions and this
    loader's CACHE_FORMAT), so that any change makes a new one. None when caching is off.
    Old folders are not pruned: delete the cache folder to reclaim the space."""
    import hashlib

    import bitsandbytes
    import torch
    import transformers

    root = os.environ.get(QUANT_CACHE_ENV, "")
    if root.lower() in ("off", "0", "no", "false"):
        return None
    root_path = Path(root).expanduser() if root else Path.home() / ".cache" / "emotionthinker" / "quantized"
    folder = Path(path)
    weights = sorted((f.name, f.stat().st_size, int(f.stat().st_mtime))
                     for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern))
    configs = sorted((f.name, hashlib.sha256(f.read_bytes()).hexdigest()) for f in folder.glob("*.json")
                     if not f.name.endswith(".index.json"))
    key = json.dumps([str(folder.resolve()), weights, configs, quant, quantize_audio, dtype, CACHE_FORMAT,
                      torch.__version__, transformers.__version__, bitsandbytes.__version__])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return root_path / f"{folder.name}-{quant}{'-audio' if quantize_audio else ''}-{digest}"


def _load_cached(cache: Path, device: str, compute, say):
    """The model from a finished cache folder, or None (absent, unfinished or unreadable: then
    it is removed, and the caller quantises again)."""
    import shutil

    from transformers.models.qwen2_5_omni import Qwen2_5OmniThinkerForConditionalGeneration

    if not (cache / CACHE_COMPLETE).exists():
        if cache.exists():
            shutil.rmtree(cache, ignore_errors=True)  # an unfinished save blocks nothing
        return None
    say(f"loading the weights quantised earlier ({cache})")
    try:
        return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
            cache, device_map={"": device}, dtype=compute, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - a damaged cache: quantise again rather than fail
        logger.warning("the cached quantised weights in %s are unreadable (%s); quantising again",
                       cache, exc)
        shutil.rmtree(cache, ignore_errors=True)
        return None


def _save_quantized(model, cache: Path, say) -> None:
    """Keep the quantised weights for next time: written to a partial folder, synced, marked
    complete, then renamed into place. Any failure (disk full, read-only home, a second
    process) only means the next load quantises again."""
    import shutil
    import tempfile
    import time as clock

    partial = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        for old in cache.parent.glob(".partial-*"):  # saves that crashed long ago
            if clock.time() - old.stat().st_mtime > STALE_PARTIAL_S:
                shutil.rmtree(old, ignore_errors=True)
        need = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        if shutil.disk_usage(cache.parent).free < 1.2 * need:
            say(f"not caching the quantised weights: {cache.parent} has too little free space")
            return
        say(f"caching the quantised weights in {cache} (set {QUANT_CACHE_ENV}=off not to)")
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache.parent))
        model.save_pretrained(partial)
        for f in partial.iterdir():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
        (partial / CACHE_COMPLETE).write_text("quantised weights, complete\n")
        os.replace(partial, cache)  # whole or not at all
        partial = None
    except Exception as exc:  # noqa: BLE001 - the model is loaded; only the cache is lost
        logger.warning("could not cache the quantised weights in %s: %s", cache, exc)
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def default_quant(device: str) -> str:
    """What "auto" means: nf4 on CUDA; on a CPU nf4 too where bitsandbytes is installed (the 7B
    measured on a 2-core AVX512-BF16 machine, warm: nf4 6.3 GiB, first token 6.4 s, 5.6 tok/s;
    torchao int4 6.5 GiB, 11.7 s, 5.5 tok/s, and re-quantised at every load; bf16 15.4 GiB,
    1.3 tok/s; fp32 would need 30 GiB), else bf16 on CPUs with native bf16, else fp32. On CUDA
    nf4 stays the default until a GPU measures int4 (bench/gpu_check.sh runs both)."""
    import importlib.util

    if device.startswith("cuda") or importlib.util.find_spec("bitsandbytes") is not None:
        return "nf4"
    return "bf16" if cpu_has_bf16() else "fp32"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), where bf16 is as fast as
    fp32 or faster; elsewhere it is emulated, and slow."""
    import torch

    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if check is not None:
        return bool(check() or (amx is not None and amx()))
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _bnb_config(quant: str, compute, quantize_audio: bool):
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelUnavailable(f"quant={quant} needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    skip = ["lm_head", "visual"] + ([] if quantize_audio else ["audio_tower"])
    if quant == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute,
                                  llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def _int4_config(on_cuda: bool, quantize_audio: bool, hidden: int):
    """torchao's int4 weight-only quantisation of the text model's linear layers (and the audio
    encoder's when asked), in the layout that runs where the model will: tinygemm's
    tile-packed int4 on CUDA (bf16, sm80 or newer; compiles), the prototype "opaque" CPU layout
    (torch's int4 CPU matmul kernel) elsewhere. torchao would also change inductor's global
    settings and the float32 matmul precision for the whole process (set_inductor_config): not
    here, so loading int4 changes nothing for the other models and benchmarks that share it."""
    if not on_cuda:  # its CUDA-only extensions would each print a warning on a CPU machine
        os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
    try:
        import torchao  # noqa: F401
    except ImportError:
        raise ModelUnavailable("quant=int4 needs torchao: pip install torchao==0.17.0") from None
    from transformers import TorchAoConfig

    group = INT4_GROUP if hidden % INT4_GROUP == 0 else 32
    skip = ["lm_head", "visual"] + ([] if quantize_audio else ["audio_tower"])
    if on_cuda:
        from torchao.quantization import Int4WeightOnlyConfig

        layout = Int4WeightOnlyConfig(group_size=group, int4_packing_format="tile_packed_to_4d",
                                      set_inductor_config=False)
    else:
        try:  # torchao 0.15-0.17
            from torchao.prototype.quantization.int4 import Int4WeightOnlyOpaqueTensorConfig as CpuInt4
        except ImportError:  # 0.18 renamed it
            from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig as CpuInt4
        layout = CpuInt4(group_size=group, set_inductor_config=False)
    return TorchAoConfig(layout, modules_to_not_convert=skip)


def _nbytes(tensor) -> int:
    """Bytes a parameter holds: a tensor subclass (torchao's int4) by its inner tensors."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(_nbytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") != 1


"""How closely the simulator's token count follows real tokenizers.

Run: ``.venv/bin/python benchmarks/token_fidelity.py`` (``--vocab-dir DIR`` to use llama.cpp's
``models/`` folder; otherwise the llama-cpp-python source package is fetched from PyPI with pip
and its vocabulary-only GGUF files are read from it).

SimulatedLLM paces replies and reports usage by :func:`tomasulo.testing.count_tokens`, so the
end-to-end benchmark's "50 tokens per second" means 50 of those. This prints, for each kind of
text the benchmark sends or receives (whole plans, ReAct turns, joiner replies, questions) and
for prose and Python, the simulator's count over the real count of the Llama 3 (``llama-bpe``),
Qwen2 and GPT-2 vocabularies, using llama.cpp's own tokenizer (``llama_cpp``, vocab only).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _workloads import WORKLOADS, check_datasets, default_datasets, load_items  # noqa: E402

from tomasulo.testing import count_tokens  # noqa: E402

VOCABS = ("llama-bpe", "qwen2", "gpt-2")


def fetch_vocabs(dest: Path) -> Path:
    """Download llama-cpp-python's source package and unpack its vocab-only GGUF files."""
    version = metadata.version("llama_cpp_python")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(dest),
            f"llama-cpp-python=={version}",
        ],
        check=True,
    )
    sdist = next(dest.glob("llama_cpp_python-*.tar.gz"))
    out = dest / "models"
    out.mkdir()
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if "/models/" in member.name and name in {f"ggml-vocab-{v}.gguf" for v in VOCABS}:
                fileobj = tar.extractfile(member)
                assert fileobj is not None
                (out / name).write_bytes(fileobj.read())
    return out


def texts(datasets: Path, n: int) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {"plan": [], "react turn": [], "joiner reply": [], "question": []}
    for workload in WORKLOADS:
        for thoughts in (False, True):
            for item in load_items(workload, n, datasets=datasets, thoughts=thoughts):
                kinds["plan"].append(item.plan_text())
                kinds["react turn"].append(item.turn("react", 1))
                kinds["joiner reply"].append(item.joiner_reply())
                kinds["question"].append(item.question)
    kinds["prose (README)"] = [(ROOT / "README.md").read_text(encoding="utf-8")]
    kinds["python (planner prompts)"] = [(ROOT / "tomasulo/planner/_prompts.py").read_text(encoding="utf-8")]
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vocab-dir", type=Path, help="a folder holding ggml-vocab-*.gguf")
    parser.add_argument("--datasets", type=Path, default=default_datasets(ROOT))
    parser.add_argument("--n", type=int, default=20, help="questions per workload")
    opts = parser.parse_args()
    import llama_cpp

    with tempfile.TemporaryDirectory() as tmp:
        vocab_dir = opts.vocab_dir or fetch_vocabs(Path(tmp))
        check_datasets(opts.datasets)
        kinds = texts(opts.datasets, opts.n)
        print("simulator tokens / real tokens (1.00 = same count)")
        print(f"{'text':26s}" + "".join(f"{v:>11s}" for v in VOCABS) + "   simulator tokens")
        models = {
            v: llama_cpp.Llama(
                model_path=str(vocab_dir / f"ggml-vocab-{v}.gguf"), vocab_only=True, verbose=False
            )
            for v in VOCABS
        }
        for kind, items in kinds.items():
            sim = sum(count_tokens(t) for t in items)
            row = f"{kind:26s}"
            for v in VOCABS:
                real = sum(len(models[v].tokenize(t.encode(), add_bos=False, special=False)) for t in items)
                row += f"{sim / real:11.2f}"
            print(row + f"   {sim:8d}")


if __name__ == "__main__":
    main()

"""What the benchmarks' phases measure besides time: peak memory (the kernel's high-water mark, the heap and
mapped files apart), the GPU's utilisation and memory, and a loopback Qdrant server to write to."""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class PeakMemory:
    """Peak RSS (the kernel's high-water mark, VmHWM: exact, where sampling would miss a pass's spike), and
    the highest anonymous RSS (the heap, without mapped files) and file-backed RSS (mapped files: libraries,
    the engine's mmapped vectors), both sampled every 50 ms; and the process's page faults and CPU time
    (user and kernel) meanwhile."""

    def __init__(self) -> None:
        self.rss = self.anon = self.file = 0
        self._usage = resource.getrusage(resource.RUSAGE_SELF)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def count_from_here(self) -> None:
        """Page faults and CPU time from now on (after the weights load), peak memory from the start."""
        self._usage = resource.getrusage(resource.RUSAGE_SELF)

    @staticmethod
    def _status() -> dict[str, int]:
        fields = dict(ln.split(":", 1) for ln in Path("/proc/self/status").read_text().splitlines() if ":" in ln)
        wanted = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
        return {k: int(fields.get(k, "0 kB").split()[0]) * 1024 for k in wanted}

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            now = self._status()
            self.rss = max(self.rss, now["VmRSS"])
            self.anon = max(self.anon, now["RssAnon"])
            self.file = max(self.file, now["RssFile"])

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        hwm = self._status()["VmHWM"]
        now, then = resource.getrusage(resource.RUSAGE_SELF), self._usage
        cpu = {"faults": now.ru_minflt - then.ru_minflt, "user_s": now.ru_utime - then.ru_utime}
        cpu |= {"sys_s": now.ru_stime - then.ru_stime}
        return {"peak_rss": max(self.rss, hwm), "peak_anon": self.anon, "peak_file": self.file, **cpu}


class GpuUse:
    """The GPU's utilisation while a phase runs: nvidia-smi's ``utilization.gpu`` (the share of each 100 ms
    in which a kernel ran) sampled every 100 ms, and torch's peak memory on the device. Without nvidia-smi
    the utilisation is None."""

    def __init__(self, device: str) -> None:
        import torch

        self.device = torch.device(device)
        index = self.device.index or 0  # nvidia-smi numbers GPUs as torch does unless CUDA_VISIBLE_DEVICES maps them
        torch.cuda.reset_peak_memory_stats(self.device)
        self.samples: list[float] = []
        query = ["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        try:
            self.proc: subprocess.Popen[str] | None = subprocess.Popen(
                [*query, "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
        except OSError:
            self.proc = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        if self.proc is None or self.proc.stdout is None:
            return
        for line in self.proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                continue

    def stop(self) -> dict:
        import torch

        torch.cuda.synchronize(self.device)
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
        self._reader.join(timeout=5)
        mean = sum(self.samples) / len(self.samples) if self.samples else None
        return {"gpu_util": mean, "gpu_samples": len(self.samples), "gpu_peak": torch.cuda.max_memory_allocated()}


def on_gpu(device: str) -> bool:
    return device.startswith("cuda")


@contextlib.contextmanager
def standin_process() -> Iterator[str]:
    """tests/qdrant_standin (REST and gRPC, qdrant-client's local engine behind them) in a process of its own,
    keeping no record of the calls; yields "URL GRPC_PORT" for ``--server-at``."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.qdrant_standin import QdrantStandIn\n"
        "with QdrantStandIn(record=False) as s:\n"
        "    print(f'http://127.0.0.1:{s.rest_port} {s.grpc_port}', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)

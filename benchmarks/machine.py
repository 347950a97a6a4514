"""What the benchmarks report about the machine they ran on."""

import importlib.metadata
import os
import platform
import subprocess

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def total_memory_gib():
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def git_state():
    """``HEAD <sha>``, and how many files of repalign/ and jobs/ differ from it."""

    def git(*arguments):
        command = ["git", "-C", REPOSITORY, *arguments]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = [line for line in git("status", "--porcelain", "--", "repalign", "jobs").split("\n")
                 if line.strip()]  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"HEAD {head}" + (
        f", {len(dirty)} files of repalign/ and jobs/ changed or new" if dirty else ""
    )

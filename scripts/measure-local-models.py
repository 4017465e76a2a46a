"""Measure the bundled local models as served (docs/LOCAL_MODELS.md has the figures).

    DEBUG=true .venv/bin/python scripts/measure-local-models.py [KEY ...]

For each model, alone: start `manage.py serve_model` on spare ports, then measure its
load time, first-token time and decode speed on short questions (streamed, as the
app asks), prompt speed on a ~1,000-token prompt, accuracy on 16 short factual and
arithmetic questions, and the server's resident memory (RSS) before and after.
`--together`: the Local preset's seats at once (the 1.5B and the 0.5B answering the
same question side by side), and two requests to the 1.5B at once (its two slots).
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PORT = 19181  # LOCAL_MODELS_PORT for the measured servers; away from dev and test ports
KEYS = {"qwen2.5-coder-0.5b": 0, "smollm2-135m": 1, "qwen2.5-coder-1.5b": 2}

QUESTIONS = [
    ("What is 17 + 26? Answer with the number only.", ["43"]),
    ("What is 9 times 8? Answer with the number only.", ["72"]),
    ("What is 144 divided by 12? Answer with the number only.", ["12"]),
    ("Is 17 a prime number? Answer yes or no.", ["yes"]),
    ("Is 21 a prime number? Answer yes or no.", ["no"]),
    ("What is the capital of Australia?", ["canberra"]),
    ("What is the capital of Canada?", ["ottawa"]),
    ("Which planet is closest to the Sun?", ["mercury"]),
    ("What is the chemical symbol for gold?", ["au"]),
    ("How many days are there in a leap year?", ["366"]),
    ("Who wrote 'Pride and Prejudice'?", ["austen"]),
    ("What is the boiling point of water at sea level in degrees Celsius?", ["100"]),
    ("How many sides does a hexagon have?", ["6", "six"]),
    ("What is 15% of 200? Answer with the number only.", ["30"]),
    ("Name a primary colour.", ["red", "blue", "yellow"]),
    ("In which year did World War II end?", ["1945"]),
]


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def ask(url: str, content: str, max_tokens: int) -> dict:
    body = {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started, first, text, timings = time.monotonic(), None, [], {}
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=600) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                if piece := choice["delta"].get("content"):
                    first = first or time.monotonic() - started
                    text.append(piece)
            timings = chunk.get("timings") or timings
    return {"first": first or 0.0, "text": "".join(text), **timings}


def url_of(key: str) -> str:
    return f"http://127.0.0.1:{PORT + KEYS[key]}/v1"


def start(key: str) -> subprocess.Popen:
    env = {**os.environ, "LOCAL_MODELS_PORT": str(PORT), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve_model", key],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            if httpx.get(f"{url_of(key)}/models", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"{key}: serve_model exited with {server.returncode}")
        time.sleep(0.2)


def measure(key: str) -> dict:
    url = url_of(key)
    started = time.monotonic()
    server = start(key)
    try:
        load_s, idle = time.monotonic() - started, rss_mb(server.pid)
        short = [ask(url, "Write a short paragraph about the sea.", 128) for _ in range(2)]
        long_prompt = (ROOT / "README.md").read_text()[:4000] + "\n\nSummarise this in one line."
        prompt = ask(url, long_prompt, 16)
        right = 0
        for question, answers in QUESTIONS:
            text = ask(url, question, 60)["text"].lower()
            right += any(re.search(rf"\b{re.escape(a)}\b", text) for a in answers)
        return {
            "model": key,
            "load_s": round(load_s, 1),
            "first_token_s": round(statistics.median(s["first"] for s in short), 2),
            "decode_tok_s": round(statistics.median(s["predicted_per_second"] for s in short), 1),
            "prompt_tok_s": round(prompt["prompt_per_second"], 1),
            "prompt_tokens": prompt["prompt_n"],
            "right": f"{right}/{len(QUESTIONS)}",
            "rss_idle_mb": idle,
            "rss_after_mb": rss_mb(server.pid),
        }
    finally:
        server.terminate()
        server.wait(30)


def together() -> None:
    question = "Is 391 a prime number? Explain briefly."
    servers = [start(key) for key in ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")]
    try:
        for label, keys in (
            ("seats side by side", ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"]),
            ("two requests, one 1.5B", ["qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b"]),
        ):
            started = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda k: ask(url_of(k), question, 128), keys))
            figures = [
                {
                    "model": k,
                    "first_token_s": round(r["first"], 2),
                    "decode_tok_s": round(r["predicted_per_second"], 1),
                    "tokens": r["predicted_n"],
                }
                for k, r in zip(keys, results, strict=True)
            ]
            wall = round(time.monotonic() - started, 1)
            print(json.dumps({"case": label, "wall_s": wall, "answers": figures}), flush=True)
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    if sys.argv[1:] == ["--together"]:
        together()
    else:
        for key in sys.argv[1:] or list(KEYS):
            print(json.dumps(measure(key)), flush=True)

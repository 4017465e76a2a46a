"""`Idempotency-Key` through the official `openai` client against the live stack: a
request sent again starts no second run, whether the client retried it after a 502,
sent it twice, or sent it while the first was still running (chat/api/idempotency.py,
docs/RELIABILITY.md). A run that failed is answered so that the SDK does not retry."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from chat.models import Run
from tests.conftest import wait_for
from tests.scripted_server import Reply
from tests.test_api_single_model import _scripted_model

pytestmark = [pytest.mark.stack, pytest.mark.database, pytest.mark.django_db(transaction=True)]

QUESTION = [{"role": "user", "content": "Greet me."}]


def client_for(url: str, api_key: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=retries, timeout=120)


def key() -> dict:
    return {"Idempotency-Key": f"test-{uuid.uuid4()}"}


class BadGateway:
    """A proxy in front of Daphne that passes the first POST on, waits for its whole
    answer, and tells the client 502 instead (a load balancer that gave up after the
    run had started); later requests pass through. Real sockets both ways."""

    def __init__(self, target: str):
        self.target, self.posts = target, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = httpx.post(
                    proxy.target + self.path, content=body, headers=headers, timeout=120
                )
                proxy.posts += 1
                status, content = answer.status_code, answer.content
                kept = {"content-type": answer.headers.get("content-type", "")}
                kept |= {
                    k: v for k, v in answer.headers.items() if k.lower() == "idempotent-replayed"
                }
                if proxy.posts == 1:
                    status, content, kept = (
                        502,
                        b"<html>Bad Gateway</html>",
                        {"content-type": "text/html"},
                    )
                self.send_response(status)
                for name, value in kept.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_retry_after_a_502_follows_the_run_the_first_attempt_started(
    live_stack, api_key, alice, server
):
    _scripted_model(server, "Scripted Cloud", "scripted-1")
    server.default = Reply.stream(["Hello ", "there."])
    proxy = BadGateway(live_stack.url)
    try:
        # The SDK's own retries (two by default) send the same key again.
        client = client_for(proxy.url, api_key, retries=2)
        response = client.chat.completions.with_raw_response.create(
            model="scripted-1", messages=QUESTION, extra_headers=key()
        )
    finally:
        proxy.close()
    assert proxy.posts == 2  # the 502, then the retry
    assert response.headers["idempotent-replayed"] == "true"
    answer = response.parse()
    assert answer.choices[0].message.content == "Hello there."
    assert len(server.requests) == 1 and Run.objects.count() == 1
    assert answer.model_extra["fusion"]["run"] == Run.objects.get().pk


def test_the_same_key_twice_gives_the_same_answer_streamed_or_not(live_stack, api_key, server):
    _scripted_model(server, "Scripted Cloud", "scripted-1")
    server.default = Reply.stream(["Hello ", "there."])
    client = client_for(live_stack.url, api_key)
    same = key()
    first = client.chat.completions.create(
        model="scripted-1", messages=QUESTION, extra_headers=same
    )
    again = client.chat.completions.create(
        model="scripted-1", messages=QUESTION, extra_headers=same
    )
    assert again.id == first.id and again.choices[0].message.content == "Hello there."
    streamed_key = key()
    texts = []
    for _ in range(2):
        stream = client.chat.completions.create(
            model="scripted-1", messages=QUESTION, stream=True, extra_headers=streamed_key
        )
        texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    assert texts == ["Hello there.", "Hello there."]
    assert len(server.requests) == 2 and Run.objects.count() == 2  # one run a key
    responses_key = key()
    answers = [
        client.responses.create(model="scripted-1", input="Greet me.", extra_headers=responses_key)
        for _ in range(2)
    ]
    assert answers[0].id == answers[1].id and answers[1].output_text == "Hello there."
    assert Run.objects.count() == 3


def test_a_retry_while_the_first_is_running_follows_that_run(live_stack, api_key, server):
    _scripted_model(server, "Scripted Cloud", "scripted-1")
    release = threading.Event()

    def held_back():
        yield b": waiting\n\n"  # the headers go out; the text waits for the test
        release.wait(60)
        yield from Reply.stream(["Held ", "back."]).chunks

    server.default = Reply(headers={"Content-Type": "text/event-stream"}, chunks=held_back())
    client = client_for(live_stack.url, api_key)
    same = key()

    def text_of(stream) -> str:
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    def ask() -> str:
        return text_of(
            client.chat.completions.create(
                model="scripted-1", messages=QUESTION, stream=True, extra_headers=same
            )
        )

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(ask)
        try:
            wait_for(lambda: len(server.requests) == 1, "the first run to reach its model", 60)
            # The same request again while the run waits on its model: it follows it.
            again = client.chat.completions.with_raw_response.create(
                model="scripted-1", messages=QUESTION, stream=True, extra_headers=same
            )
            assert again.headers["idempotent-replayed"] == "true"
        finally:
            release.set()
        assert first.result(60) == text_of(again.parse()) == "Held back."
    assert len(server.requests) == 1 and Run.objects.count() == 1


def test_the_same_key_with_another_body_is_a_conflict_that_is_not_retried(
    live_stack, api_key, server
):
    _scripted_model(server, "Scripted Cloud", "scripted-1")
    server.default = Reply.stream(["Hello."])
    client = client_for(live_stack.url, api_key, retries=2)
    same = key()
    client.chat.completions.create(model="scripted-1", messages=QUESTION, extra_headers=same)
    with pytest.raises(openai.ConflictError) as caught:
        client.chat.completions.create(
            model="scripted-1", messages=[{"role": "user", "content": "Other."}], extra_headers=same
        )
    error = caught.value.body
    assert error["code"] == "idempotency_key_reused" and "new key" in error["message"]
    assert caught.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.ConflictError):  # another door is another request
        client.responses.create(model="scripted-1", input="Greet me.", extra_headers=same)
    assert len(server.requests) == 1 and Run.objects.count() == 1


def test_a_failed_run_is_answered_so_the_sdk_does_not_start_it_again(live_stack, api_key, server):
    _scripted_model(server, "Scripted Cloud", "scripted-1")
    server.default = Reply(status=401, body=b'{"error": {"message": "bad key"}}')
    client = client_for(live_stack.url, api_key, retries=2)  # no Idempotency-Key
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="scripted-1", messages=QUESTION)
    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="scripted-1", input="Greet me.")
    assert Run.objects.count() == 2  # one a request: neither was retried

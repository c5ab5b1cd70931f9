"""A Policy that samples from any OpenAI-compatible server through the completions API.

Spec: `openai:URL/MODEL`, where URL is the API base the server documents (for `vllm serve`,
`http://HOST:PORT/v1`) and MODEL, the last path segment, is the served model name: so
`openai:http://127.0.0.1:8000/v1/embedded` posts to `http://127.0.0.1:8000/v1/completions` with
`"model": "embedded"`. A model name containing '/' is written after '#' instead:
`openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-1.5B`.

One HTTP request per prompt (carrying `n`), at most `max_concurrency` in flight. Connection
errors, timeouts, HTTP 429 and 5xx are retried with exponential backoff and jitter (a 429's
Retry-After is honoured, up to the backoff cap); when the retries run out, or the server refuses
the request outright (401, 404, ...), `PolicyUnavailable` says so in one line naming the endpoint.
The API key comes from the environment only and is never logged or put in a message.

generated_tokens per choice: vLLM's `token_ids` (asked for with its `return_token_ids`
extension) when the server returns them; else the choice's `logprobs.tokens`; else, for n = 1,
`usage.completion_tokens`; else `usage.completion_tokens` split across the choices in proportion
to their text length (an approximation: the total is exact, the split is not). A server that
rejects the `return_token_ids` field is asked again without it.

Chat prompts (`tasks.prompts.ChatPrompt`) go to `{base}/chat/completions`, where the server
renders its own chat template; the steps written so far are sent as the assistant's message with
vLLM's `continue_final_message`. A chat prompt that names a local tokenizer (`template_from`,
from `chat_template_from`) is rendered here instead and sent to the completions endpoint as text,
with vLLM's `add_special_tokens: false` (the template wrote them). The extension fields are
dropped, once, by a server that rejects them.

Whether a prompt fits: vLLM's server reports `max_model_len` in `/v1/models` and counts prompt
tokens at `/tokenize` (beside `/v1`); another server gives neither, and then nothing is checked
before sending (the server refuses what is too long).

Determinism: each prompt's request carries the seed the vLLM backend would use (see
`tasks.policies.vllm_policy.request_seed`). `vllm serve` honours per-request seeds, so reruns
against the same server and model reproduce the samples; other servers may treat the seed as a
hint or ignore it.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit

import httpx

from schemas.records import Generation, SamplingParams
from tasks.policies.base import PolicyUnavailable
from tasks.policies.transformers_policy import check_params
from tasks.policies.vllm_policy import request_seed
from tasks.prompts import ChatPrompt, Prompt, chat_tokenizer, prompt_key, render_chat

API_KEY_ENV = "PRMFORGE_OPENAI_API_KEY"
FALLBACK_API_KEY_ENV = "OPENAI_API_KEY"
TOKEN_IDS_FIELD = "return_token_ids"  # a vLLM extension of the completions API
SPECIAL_TOKENS_FIELD = "add_special_tokens"  # another: off for a prompt rendered with its chat template


def parse_target(target: str) -> tuple[str, str]:
    """(base URL, model) of the part of an `openai:` spec after the colon.

    >>> parse_target("http://127.0.0.1:8000/v1/embedded")
    ('http://127.0.0.1:8000/v1', 'embedded')
    >>> parse_target("https://api.example.com/v1#Qwen/Qwen2.5-1.5B")
    ('https://api.example.com/v1', 'Qwen/Qwen2.5-1.5B')
    """
    if "#" in target:
        base_url, _, model = target.partition("#")
    else:
        base_url, _, model = target.rstrip("/").rpartition("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not model:
        raise ValueError(
            f"'{target}' is not URL/MODEL: write openai:http://HOST:PORT/v1/MODEL "
            "(or openai:http://HOST:PORT/v1#MODEL when the model name contains '/')"
        )
    return base_url.rstrip("/"), model


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry `attempt` (1, 2, ...): base * 2**(attempt-1), capped, then
    scaled by a random factor in [0.5, 1) so that clients that failed together spread out.

    >>> 0.5 <= backoff_delay(1, 1.0, 8.0, random.Random(0)) < 1.0
    True
    >>> 4.0 <= backoff_delay(10, 1.0, 8.0, random.Random(0)) < 8.0
    True
    """
    return min(cap_s, base_s * 2 ** (attempt - 1)) * (0.5 + rng.random() / 2)


class OpenAIPolicy:
    """Samples from `{base_url}/completions` of an OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = API_KEY_ENV,
        max_concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("need max_retries >= 0, timeout_s > 0 and backoff_s >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.attempts = 0  # HTTP requests sent, retries included
        self._api_key = os.environ.get(api_key_env) or os.environ.get(FALLBACK_API_KEY_ENV)
        self._rejected_fields: set[str] = set()  # vLLM extensions this server refused
        self._context: int | None | bool = False  # False: not asked yet
        self._counts_tokens = True  # until /tokenize proves missing
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._client = httpx.Client(
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            timeout=timeout_s,
        )

    @classmethod
    def from_target(cls, target: str) -> OpenAIPolicy:
        return cls(*parse_target(target))

    @property
    def prompts_per_call(self) -> int:
        """Enough prompts per call to keep every connection busy (the server batches them)."""
        return 4 * self.max_concurrency

    @property
    def name(self) -> str:
        separator = "#" if "/" in self.model else "/"
        return f"openai:{self.base_url}{separator}{self.model}"

    def generate(self, prompts: Sequence[Prompt], n: int, params: SamplingParams) -> list[list[Generation]]:
        check_params(n, params)
        # Greedy samples are all the same (and servers refuse n > 1 at temperature 0): ask once.
        draws = 1 if params.temperature == 0 else n
        if len(prompts) <= 1:
            rows = [self._complete(prompt, draws, params) for prompt in prompts]
        else:
            rows = self._complete_all(prompts, draws, params)
        return [row * (n // draws) for row in rows]

    def close(self) -> None:
        self._client.close()

    def context_length(self) -> int | None:
        """The served model's `max_model_len` from `/v1/models` (vLLM reports it), or None."""
        if self._context is False:
            self._context = None
            listing = self._request("GET", f"{self.base_url}/models", None, missing_ok=True) or {}
            for entry in listing.get("data") or []:
                if isinstance(entry, dict) and entry.get("id") == self.model and entry.get("max_model_len"):
                    self._context = int(entry["max_model_len"])
        return self._context

    def count_prompt_tokens(self, prompts: Sequence[Prompt]) -> list[int] | None:
        """Prompt tokens as the server counts them (vLLM's `/tokenize`), or None where it cannot."""
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else None
        if root is None or not self._counts_tokens:
            return None
        counts: list[int] = []
        for prompt in prompts:
            if isinstance(prompt, ChatPrompt) and not prompt.template_from:
                body: dict[str, Any] = {"model": self.model, **_chat_fields(prompt)}
            else:
                body = {"model": self.model, "prompt": self._text(prompt),
                        SPECIAL_TOKENS_FIELD: isinstance(prompt, str)}
            answer = self._request("POST", f"{root}/tokenize", body, missing_ok=True)
            if answer is None or "count" not in answer:
                self._counts_tokens = False
                return None
            counts.append(int(answer["count"]))
        return counts

    def _complete_all(self, prompts: Sequence[Prompt], n: int, params: SamplingParams) -> list[list[Generation]]:
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            futures = [pool.submit(self._complete, prompt, n, params) for prompt in prompts]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [future for future in futures if future in done and future.exception() is not None]
            if failed:
                for future in futures:
                    future.cancel()
                raise failed[0].exception()
            return [future.result() for future in futures]

    def _complete(self, prompt: Prompt, n: int, params: SamplingParams) -> list[Generation]:
        body: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": request_seed(params.seed, prompt_key(prompt)),
        }
        if params.stop:
            body["stop"] = list(params.stop)
        extensions = {TOKEN_IDS_FIELD: True}
        if isinstance(prompt, ChatPrompt) and not prompt.template_from:
            body.update(_chat_fields(prompt))
            return self._read(self._post(body, "/chat/completions", extensions), n)
        body["prompt"] = self._text(prompt)
        if isinstance(prompt, ChatPrompt):
            extensions[SPECIAL_TOKENS_FIELD] = False
        return self._read(self._post(body, "/completions", extensions), n)

    @staticmethod
    def _text(prompt: Prompt) -> str:
        """Text as it is; a chat prompt rendered with the local tokenizer it names."""
        if isinstance(prompt, str):
            return prompt
        return render_chat(chat_tokenizer(prompt.template_from), prompt)

    def _request(self, method: str, url: str, body: dict[str, Any] | None, missing_ok: bool = False) -> dict | None:
        """A side request (model listing, token counts): the JSON, None when the server has no such
        endpoint (404, 405) and `missing_ok`; unreachable or failing is PolicyUnavailable, as for completions."""
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        failure = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(backoff_delay(attempt, self.backoff_s, self.max_backoff_s, self._rng))
            try:
                response = self._client.request(method, url, json=body, headers=headers)
            except httpx.TimeoutException:
                failure = f"no response within {self.timeout_s:g} s"
                continue
            except httpx.TransportError as error:
                failure = describe_transport_error(error)
                continue
            if response.status_code in (404, 405) and missing_ok:
                return None
            if response.status_code == 429 or response.status_code >= 500:
                failure = f"HTTP {response.status_code} {one_line(response.text)}"
                continue
            if response.status_code >= 400:
                raise PolicyUnavailable(
                    f"policy endpoint {self.base_url} refused {url.rsplit('/', 1)[-1]}: HTTP {response.status_code} "
                    f"{one_line(response.text)}{self._hint(response.status_code)}"
                )
            try:
                return response.json()
            except ValueError:
                return None
        verb = "unreachable" if failure and not failure.startswith("HTTP") else "kept failing"
        raise PolicyUnavailable(f"policy endpoint {self.base_url} {verb} after {self.max_retries + 1} attempts: {failure}")

    def _post(self, body: dict[str, Any], path: str = "/completions",
              extensions: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON of a successful response, retrying what may pass; PolicyUnavailable otherwise.
        `extensions` are vLLM's fields, sent until the server rejects one (then never again)."""
        url = f"{self.base_url}{path}"
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        failure, wait_s, attempt = "", 0.0, 0
        while attempt <= self.max_retries:
            if attempt:
                time.sleep(wait_s or backoff_delay(attempt, self.backoff_s, self.max_backoff_s, self._rng))
            attempt += 1
            with self._lock:
                self.attempts += 1
            sent = {name: value for name, value in (extensions or {}).items() if name not in self._rejected_fields}
            payload = {**body, **sent}
            wait_s = 0.0
            try:
                response = self._client.post(url, json=payload, headers=headers)
            except httpx.TimeoutException:
                failure = f"no response within {self.timeout_s:g} s"
                continue
            except httpx.TransportError as error:
                failure = describe_transport_error(error)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                failure = f"HTTP {response.status_code} {one_line(response.text)}"
                wait_s = retry_after(response, self.max_backoff_s)
                continue
            rejected = [name for name in sent if name in response.text]
            if response.status_code == 400 and rejected:
                self._rejected_fields.update(rejected)  # not vLLM: ask again without them, at no cost
                attempt -= 1
                continue
            if response.status_code >= 400:
                raise PolicyUnavailable(
                    f"policy endpoint {self.base_url} refused the request: HTTP {response.status_code} "
                    f"{one_line(response.text)}{self._hint(response.status_code)}"
                )
            try:
                return response.json()
            except ValueError:
                raise PolicyUnavailable(
                    f"policy endpoint {self.base_url} answered with something that is not JSON: "
                    f"{one_line(response.text)}"
                ) from None
        verb = "unreachable" if failure and not failure.startswith("HTTP") else "kept failing"
        raise PolicyUnavailable(f"policy endpoint {self.base_url} {verb} after {attempt} attempts: {failure}")

    def _hint(self, status: int) -> str:
        if status in (401, 403):
            where = "is set" if self._api_key else "is not set"
            return f" (the API key comes from ${API_KEY_ENV} or ${FALLBACK_API_KEY_ENV}, which {where})"
        if status == 404:
            return f" (is '{self.model}' the served model name, and does the URL end with the API base, e.g. /v1?)"
        return ""

    def _read(self, response: dict[str, Any], n: int) -> list[Generation]:
        try:
            choices = sorted(response["choices"], key=lambda choice: choice.get("index", 0))
            texts = [choice["text"] if "text" in choice else choice["message"]["content"] or "" for choice in choices]
        except (KeyError, TypeError):
            raise PolicyUnavailable(
                f"policy endpoint {self.base_url} returned no completions: {one_line(str(response))}"
            ) from None
        if len(choices) != n:
            raise PolicyUnavailable(f"policy endpoint {self.base_url} returned {len(choices)} completions, not n={n}")
        counts = token_counts([{**choice, "text": text} for choice, text in zip(choices, texts)],
                              (response.get("usage") or {}).get("completion_tokens"))
        return [
            Generation(text, tokens, "length" if choice.get("finish_reason") == "length" else "stop")
            for choice, text, tokens in zip(choices, texts, counts)
        ]


def _chat_fields(prompt: ChatPrompt) -> dict[str, Any]:
    """The chat-completions fields of a chat prompt: its messages, and the reply so far as an
    assistant message the server continues (vLLM's `continue_final_message`).

    >>> _chat_fields(ChatPrompt((("user", "Q?"),), "Step 1: 2\\n\\n"))["messages"][-1]
    {'role': 'assistant', 'content': 'Step 1: 2\\n\\n'}
    """
    messages = prompt.as_messages()
    if not prompt.reply:
        return {"messages": messages}
    return {"messages": [*messages, {"role": "assistant", "content": prompt.reply}],
            "add_generation_prompt": False, "continue_final_message": True}


def token_counts(choices: Sequence[dict[str, Any]], completion_tokens: int | None) -> list[int]:
    """Generated tokens per choice, by the most exact source the response offers (module docstring).

    >>> token_counts([{"text": "ab", "token_ids": [1, 2, 3]}], None)
    [3]
    >>> token_counts([{"text": "aaa"}, {"text": "a"}], 8)
    [6, 2]
    """
    exact = []
    for choice in choices:
        tokens = choice.get("token_ids") or (choice.get("logprobs") or {}).get("tokens")
        exact.append(len(tokens) if tokens is not None else None)
    if all(count is not None for count in exact):
        return exact
    if completion_tokens is None:
        return [len(choice["text"].split()) for choice in choices]
    if len(choices) == 1:
        return [completion_tokens]
    weights = [len(choice["text"]) for choice in choices]
    if not sum(weights):
        weights = [1] * len(choices)
    shares = [completion_tokens * weight / sum(weights) for weight in weights]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda index: shares[index] - counts[index], reverse=True)
    for index in by_remainder[: completion_tokens - sum(counts)]:
        counts[index] += 1
    return counts


def retry_after(response: httpx.Response, cap_s: float) -> float:
    """A 429's Retry-After in seconds (capped), or 0 when it gives none we can read."""
    try:
        return min(cap_s, max(0.0, float(response.headers.get("retry-after", "0"))))
    except ValueError:
        return 0.0


def describe_transport_error(error: httpx.TransportError) -> str:
    """'connection refused' rather than '[Errno 111] Connection refused'.

    >>> describe_transport_error(httpx.ConnectError("[Errno 111] Connection refused"))
    'connection refused'
    """
    text = re.sub(r"\[Errno -?\d+\]\s*", "", str(error)).strip()
    return one_line(text.lower() if text else type(error).__name__)


def one_line(text: str, limit: int = 200) -> str:
    """Whitespace collapsed to single spaces, cut at `limit` characters.

    >>> one_line('{"error":\\n  "bad"}')
    '{"error": "bad"}'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."

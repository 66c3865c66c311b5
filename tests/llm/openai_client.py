"""The official `openai` Python client against an attesta node's language-model routes.

Usage: python tests/llm/openai_client.py BASE_URL MODEL_CID
Prints one JSON object with what each call returned; the Rust test checks it. Exits
non-zero (with the traceback) if the client itself fails where it should not.
"""

from __future__ import annotations

import json
import sys

import openai


def main() -> None:
    base, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60)
    out: dict = {}

    models = client.models.list()
    out["models"] = [m.id for m in models.data]

    chat = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        max_tokens=12,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    choice = chat.choices[0]
    out["chat"] = {
        "content": choice.message.content,
        "role": choice.message.role,
        "finish_reason": choice.finish_reason,
        "usage": chat.usage.model_dump(),
        "logprob_tokens": len(choice.logprobs.content),
        "top_logprobs": [len(t.top_logprobs) for t in choice.logprobs.content],
        "object": chat.object,
    }

    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for c in chunk.choices:
            if c.delta.content:
                deltas.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    out["chat_stream"] = {"content": "".join(deltas), "finish_reason": finish, "usage": usage}

    comp = client.completions.create(model=model, prompt="Once upon a time", max_tokens=10, temperature=0, logprobs=2)
    out["completion"] = {
        "text": comp.choices[0].text,
        "finish_reason": comp.choices[0].finish_reason,
        "usage": comp.usage.model_dump(),
        "tokens": len(comp.choices[0].logprobs.tokens),
        "top": [len(t) for t in comp.choices[0].logprobs.top_logprobs],
    }
    pieces = []
    for chunk in client.completions.create(model=model, prompt="Once upon a time", max_tokens=10, temperature=0, stream=True):
        pieces.append(chunk.choices[0].text)
    out["completion_stream"] = "".join(pieces)

    errors = {}
    try:
        client.completions.create(model=model, prompt="x " * 600, max_tokens=10)
    except openai.BadRequestError as e:
        errors["overflow"] = {"status": e.status_code, "code": e.code, "type": e.type}
    try:
        client.chat.completions.create(model=model, messages=[], max_tokens=3)
    except openai.BadRequestError as e:
        errors["no_messages"] = {"status": e.status_code, "code": e.code, "type": e.type}
    try:
        client.completions.create(model="bafynotacid", prompt="x", max_tokens=3)
    except openai.BadRequestError as e:
        errors["bad_model"] = {"status": e.status_code, "code": e.code}
    out["errors"] = errors
    print(json.dumps(out))


if __name__ == "__main__":
    main()

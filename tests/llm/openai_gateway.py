"""The official `openai` Python client, unchanged, against the validator's gateway.

Usage: python tests/llm/openai_gateway.py GATEWAY_URL MODEL_CID OUT_DIR
Prints one JSON object with what each call returned and writes the `attesta` proof of
each answer to OUT_DIR (`<call>.proof.json`, `<call>.output.json`) for
`attesta verify receipt`; the Rust test checks both. Exits non-zero (with the traceback)
if the client itself fails where it should not.
"""

from __future__ import annotations

import json
import pathlib
import sys

import openai


def save(out_dir: pathlib.Path, name: str, attesta: dict) -> dict:
    """Writes the proof bundle and the signed output text; returns the rest of `attesta`."""
    (out_dir / f"{name}.proof.json").write_text(json.dumps(attesta["proof"]))
    # The exact bytes the receipt digests: written as received, never re-serialised.
    (out_dir / f"{name}.output.json").write_text(attesta["output"])
    return {"node": attesta["node"], "model_hash": attesta["model_hash"]}


def main() -> None:
    base, model, out_dir = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    client = openai.OpenAI(base_url=base + "/v1", api_key="gateway-key", max_retries=0, timeout=60)
    out: dict = {}
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]

    models = client.models.list()
    out["models"] = [m.model_dump() for m in models.data]

    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
    extra = chat.model_extra or {}
    out["chat"] = {
        "content": chat.choices[0].message.content,
        "object": chat.object,
        "finish_reason": chat.choices[0].finish_reason,
        "attesta": save(out_dir, "chat", extra["attesta"]),
    }

    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=12, temperature=0, stream=True
    )
    deltas, chunks, final = [], 0, None
    for chunk in stream:
        chunks += 1
        for c in chunk.choices:
            if c.delta.content:
                deltas.append(c.delta.content)
        attesta = (chunk.model_extra or {}).get("attesta")
        if attesta is not None:
            assert chunk.choices == [], chunk
            final = save(out_dir, "chat_stream", attesta)
    out["chat_stream"] = {"content": "".join(deltas), "chunks": chunks, "attesta": final}

    completion = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=0)
    out["completion"] = {
        "text": completion.choices[0].text,
        "object": completion.object,
        "attesta": save(out_dir, "completion", (completion.model_extra or {})["attesta"]),
    }

    stream = client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=8, temperature=0, stream=True
    )
    texts, final = [], None
    for chunk in stream:
        texts.extend(c.text for c in chunk.choices)
        attesta = (chunk.model_extra or {}).get("attesta")
        if attesta is not None:
            final = save(out_dir, "completion_stream", attesta)
    out["completion_stream"] = {"text": "".join(texts), "attesta": final}

    try:
        client.chat.completions.create(model="bafkreinosuchmodel", messages=messages, max_tokens=4)
        out["unknown_model"] = "answered"
    except openai.NotFoundError as e:
        out["unknown_model"] = {"status": e.status_code, "code": e.code, "param": e.param}

    try:
        client.completions.create(model=model, prompt="x " * 2000, max_tokens=8)
        out["too_long"] = "answered"
    except openai.BadRequestError as e:
        out["too_long"] = {"status": e.status_code, "code": e.code}

    print(json.dumps(out))


if __name__ == "__main__":
    main()

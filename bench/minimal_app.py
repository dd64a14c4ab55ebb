"""The tutorial's FastAPI app, ported to the current `openai` client: it only forwards.

The baseline for local throughput: the chat API adds validation, limits and error mapping
on top of this, and should cost little for it.
"""

from __future__ import annotations

from fastapi import FastAPI
from openai import AsyncOpenAI
from pydantic import BaseModel

app = FastAPI()
client = AsyncOpenAI()


class ChatRequest(BaseModel):
    """The tutorial's body."""

    message: str


@app.post("/chat")
async def chat(request: ChatRequest) -> dict[str, str | None]:
    """Forward the message and return the answer."""
    completion = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": request.message},
        ],
    )
    return {"response": completion.choices[0].message.content}
